from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import leopard_reid as lr
from leopard_reid.match import Calibration, Matcher, _best_threshold


@pytest.fixture(scope="module")
def split(population, embedder):
    """Gallery of every flank's first sighting; queries are the second sightings."""
    root, meta = population
    first = meta.groupby(["identity", "side"]).cumcount() == 0
    gallery = lr.Gallery.build(embedder, meta[first], root=root)
    return root, gallery, meta[~first].reset_index(drop=True)


def test_public_api_is_exported():
    for name in ("create_backbone", "Embedder", "Gallery", "match", "evaluate", "calibrate"):
        assert name in lr.__all__ and getattr(lr, name) is not None


def test_fused_match_ranks_true_identity_first(split, embedder):
    root, gallery, queries = split
    result = lr.match(queries, gallery, embedder=embedder, root=root, top_k=3)
    top = result[result["rank"] == 1].set_index("query")
    truth = queries.set_index("path")["identity"]
    assert (top["identity"] == truth.loc[top.index]).mean() >= 0.9
    assert set(result.columns) >= {"query", "rank", "identity", "score", "exemplar", "decision"}
    assert result["score"].between(0, 1).all()
    assert (top["decision"] == "match").mean() >= 0.8


def test_local_beats_global_on_synthetic_coats(split, embedder):
    root, gallery, queries = split
    truth = queries.set_index("path")["identity"]
    acc = {}
    for method in ("global", "local"):
        r = lr.match(queries, gallery, embedder=embedder, root=root, method=method, top_k=1)
        acc[method] = (r.set_index("query")["identity"] == truth.loc[r["query"]].to_numpy()).mean()
    assert acc["local"] > acc["global"]
    assert acc["local"] >= 0.9


def test_left_flank_never_matches_right(split, embedder):
    root, gallery, queries = split
    result = lr.match(queries, gallery, embedder=embedder, root=root, top_k=5)
    sides = gallery.metadata.set_index("path")["side"]
    qsides = queries.set_index("path")["side"]
    assert (sides.loc[result["exemplar"]].to_numpy() == qsides.loc[result["query"]].to_numpy()).all()


def test_save_load_round_trip_gives_identical_matches(split, embedder, tmp_path):
    root, gallery, queries = split
    before = lr.match(queries.head(4), gallery, embedder=embedder, root=root)
    gallery.save(tmp_path / "g.safetensors")
    after = lr.match(queries.head(4), lr.Gallery.load(tmp_path / "g.safetensors"), embedder=embedder, root=root)
    pd.testing.assert_frame_equal(before, after)


def test_never_seen_individual_is_called_new(population, embedder):
    root, meta = population
    known = meta[meta["identity"] != "L-001"]
    gallery = lr.Gallery.build(embedder, known, root=root)
    result = lr.match(meta[meta["identity"] == "L-001"], gallery, embedder=embedder, root=root, top_k=1)
    assert (result["decision"] == "new").all()


def test_global_method_works_without_keypoints(population, embedder):
    root, meta = population
    gallery = lr.Gallery.build(embedder, meta, root=root, local=False)
    r = lr.match(meta.head(2), gallery, embedder=embedder, root=root, method="global", top_k=1)
    assert (r["identity"].to_numpy() == meta.head(2)["identity"].to_numpy()).all()  # itself is in the gallery
    with pytest.raises(lr.GalleryError, match="keypoint"):
        Matcher(method="fused").fit(gallery)


def test_mismatched_backbone_gallery_is_refused(split, embedder):
    _, gallery, queries = split
    other = lr.Gallery.from_embeddings(gallery.embeddings, gallery.labels, backbone="x", weights_sha256="0" * 16)
    with pytest.raises(lr.GalleryError, match="backbone"):
        lr.match(queries.head(1), other, embedder=embedder)


def test_calibrate_fits_threshold_with_rates(population, embedder):
    root, meta = population
    gallery = lr.Gallery.build(embedder, meta, root=root)
    cal = lr.calibrate(gallery)
    assert 0 < cal.threshold < 1 and cal.auroc > 0.8
    assert 0 <= cal.false_new_rate <= 1 and 0 <= cal.false_match_rate <= 1
    gallery.calibration = cal.to_dict()
    assert Calibration.from_dict(gallery.calibration) == cal
    assert Matcher().fit(gallery).calibration_ == cal


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown method"):
        Matcher(method="magic")


def test_probability_is_monotone():
    cal = Calibration(coef=(4.0, 2.0), intercept=-6.0)
    p = cal.probability(np.array([0.1, 0.5, 0.5]), np.array([0.0, 0.0, 20.0]))
    assert p[0] < p[1] < p[2]


def test_threshold_rule_splits_a_clean_gap_and_honours_max_false_match():
    known, new = np.array([0.6, 0.9, 0.7]), np.array([0.1, 0.4, 0.2, -np.inf])
    assert _best_threshold(known, new, default=0.5) == pytest.approx(0.5)  # midway, not on a score
    known, new = np.array([0.3, 0.6, 0.9]), np.array([0.2, 0.5, 0.8])
    assert _best_threshold(known, new, default=0.5) == pytest.approx(0.25)  # balanced-error ties go low
    assert _best_threshold(known, new, max_false_match=0.0, default=0.5) == pytest.approx(0.85)
    assert _best_threshold(np.array([-np.inf]), np.zeros(0), default=0.5) == 0.5
