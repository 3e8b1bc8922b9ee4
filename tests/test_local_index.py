"""Tests for leopard_reid.local.index: descriptor blocks and the kd-tree / IVF-PQ / exact indexes."""

from __future__ import annotations

import numpy as np
import pytest

from leopard_reid.local import LocalMatcher
from leopard_reid.local.index import descriptor_blocks, exact_knn

from .test_local import described_individuals


@pytest.fixture(scope="module")
def gallery():
    """12 synthetic individuals; one warped re-sighting of each as queries."""
    return described_individuals(12, 300, 6.0, 0.65)


def test_descriptor_blocks_keep_every_row_in_order() -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (n, 4), dtype=np.uint8) for n in (3, 0, 70, 1, 250, 9)]
    blocks = list(descriptor_blocks(arrays, rows=64))
    np.testing.assert_array_equal(np.concatenate(blocks), np.concatenate(arrays))
    assert max(len(b) for b in blocks) < 2 * 64 and len(blocks) >= 5
    assert list(descriptor_blocks([np.zeros((0, 4), np.uint8)], rows=8)) == []


def test_auto_index_compresses_a_catalogue_only(gallery) -> None:
    feats, labels, _ = gallery
    n = sum(len(f) for f in feats)
    assert LocalMatcher().fit(feats, labels).index_kind_ == "kdtree"
    assert LocalMatcher(compress_above=n - 1).fit(feats, labels).index_kind_ == "ivfpq"
    assert LocalMatcher(index="ivfpq", checks=0).fit(feats, labels).index_kind_ == "exact"
    with pytest.raises(ValueError, match="index must be one of"):
        LocalMatcher(index="hnsw")


def test_ivfpq_finds_every_individual_and_is_reproducible(gallery) -> None:
    feats, labels, queries = gallery
    m = LocalMatcher(index="ivfpq").fit(feats, labels)
    s = m.score_many(queries)
    np.testing.assert_array_equal(np.argmax(s, axis=1), np.arange(len(queries)))
    assert (s.max(axis=1) > 1.0).all()  # each best exemplar verified
    np.testing.assert_array_equal(LocalMatcher(index="ivfpq").fit(feats, labels).score_many(queries), s)


def test_ivfpq_neighbours_are_near_the_exact_ones(gallery) -> None:
    """The compressed codes still find most of the exact 5 nearest neighbours, at least as many as the
    kd-trees."""
    feats, labels, queries = gallery
    q = np.concatenate([f.descriptors for f in queries[:4]])
    exact = LocalMatcher(checks=0).fit(feats, labels)
    truth, _ = exact._knn(q, 5)
    recall = {}
    for kind in ("kdtree", "ivfpq"):
        idx, d2 = LocalMatcher(index=kind).fit(feats, labels)._knn(q, 5)
        assert (np.diff(d2, axis=1) >= 0).all()  # sorted, squared distances
        recall[kind] = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(idx, truth)])
    assert recall["ivfpq"] >= 0.6 and recall["ivfpq"] >= recall["kdtree"] - 0.05, recall


def test_exact_knn_matches_a_full_sort() -> None:
    rng = np.random.default_rng(1)
    g, q = rng.normal(size=(300, 8)).astype(np.float32), rng.normal(size=(20, 8)).astype(np.float32)
    idx, d2 = exact_knn(q, g, 4, chunk=7)
    full = ((q[:, None] - g[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1)[:, :4])
    np.testing.assert_allclose(d2, np.sort(full, axis=1)[:, :4], rtol=1e-4, atol=1e-4)


def test_ivfpq_search_in_blocks_equals_one_search(gallery, monkeypatch) -> None:
    """The IVF-PQ index is searched a bounded block of query rows at a time; the answer is faiss's for all
    rows at once."""
    import leopard_reid.local.index as index

    feats, labels, queries = gallery
    m = LocalMatcher(index="ivfpq").fit(feats, labels)
    q = m._project(np.concatenate([f.descriptors for f in queries[:3]]).astype(np.float32))
    d_all, i_all = m.index_.index.search(np.ascontiguousarray(q), 5)
    monkeypatch.setattr(index, "SEARCH_BLOCK", 97)
    assert len(q) > 3 * 97
    i_blk, d_blk = m.index_.search(q, 5)
    np.testing.assert_array_equal(i_blk, i_all)
    np.testing.assert_allclose(d_blk, np.maximum(d_all, 0.0))
