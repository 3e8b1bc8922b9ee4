"""Tests for leopard_reid.local.store: local features on disk, read back one image at a time."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from leopard_reid.local import LocalFeatures, LocalMatcher
from leopard_reid.local.store import DiskFeatures, FeatureFile

from .test_local import described_individuals


@pytest.fixture(scope="module")
def described():
    """8 synthetic individuals; one warped re-sighting of each as queries."""
    return described_individuals(8, 500, 5.0, 0.7)


def _on_disk(file: FeatureFile, feats: list[LocalFeatures]) -> list[DiskFeatures]:
    return [file.append(f) for f in feats]


def test_features_read_back_exactly_and_the_file_is_deleted_on_close(tmp_path, described) -> None:
    feats, _, _ = described
    empty = LocalFeatures(np.zeros((0, 4), np.float32), np.zeros((0, 128), np.uint8), (7, 5))
    with FeatureFile.create(tmp_path / "kp.bin") as file:
        handles = _on_disk(file, [feats[0], empty, feats[1]])
        assert file.nbytes == (len(feats[0]) + len(feats[1])) * (16 + 128)
        for h, f in zip(handles, [feats[0], empty, feats[1]]):
            assert len(h) == len(f) and h.image_size == f.image_size
            np.testing.assert_array_equal(h.keypoints, f.keypoints)
            np.testing.assert_array_equal(h.descriptors, f.descriptors)
            np.testing.assert_array_equal(h.points, f.points)
            loaded = h.load()
            assert isinstance(loaded, LocalFeatures) and loaded.descriptors.flags.writeable
        assert not handles[0].descriptors.flags.writeable  # a read gives the file's bytes, not a shared array
        assert (tmp_path / "kp.bin").exists()
    assert not (tmp_path / "kp.bin").exists()
    with pytest.raises(ValueError, match="closed"):
        handles[0].descriptors  # noqa: B018


def test_reads_from_many_threads_agree(tmp_path, described) -> None:
    feats, _, _ = described
    with FeatureFile.create(tmp_path / "kp.bin") as file:
        handles = _on_disk(file, feats)
        bad = []

        def read(k: int) -> None:
            for _ in range(20):
                i = (k + _) % len(feats)
                if not np.array_equal(handles[i].descriptors, feats[i].descriptors):
                    bad.append(i)

        threads = [threading.Thread(target=read, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert bad == []


@pytest.mark.parametrize("index", ["kdtree", "ivfpq"])
def test_a_matcher_on_disk_features_scores_as_in_memory(tmp_path, described, index) -> None:
    """A LocalMatcher fitted on (and verifying against) features on disk, queried with features on disk,
    gives exactly the scores of the in-memory features, and still finds every individual."""
    feats, labels, queries = described
    ref = LocalMatcher(index=index).fit(feats, labels).score_many(queries)
    with FeatureFile.create(tmp_path / "kp.bin") as file:
        disk = LocalMatcher(index=index).fit(_on_disk(file, feats), labels)
        got = disk.score_many(_on_disk(file, queries))
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(np.argmax(got, axis=1), np.arange(len(queries)))
