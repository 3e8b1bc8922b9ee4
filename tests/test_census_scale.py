"""Issue 17, a season-scale census: sparse clustering of new individuals, resumable scoring, one description
per detection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leopard_reid.census import CensusError, run_census
from leopard_reid.local.store import DiskFeatures

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ sparse linkage
@pytest.mark.parametrize("linkage", ["single", "average", "complete"])
def test_sparse_linkage_equals_scikit_learn_on_a_dense_matrix(linkage):
    """Every pair an edge: the same clusters as scikit-learn's; missing pairs behave as the far distance."""
    from sklearn.cluster import AgglomerativeClustering

    from leopard_reid.census.identities import _sparse_linkage

    rng = np.random.default_rng(3)
    for trial in range(20):
        n = int(rng.integers(2, 30))
        centres = rng.integers(0, max(1, n // 3), n)
        d = np.abs(centres[:, None] - centres[None, :]) * 0.3 + rng.uniform(0, 0.35, (n, n))
        d = np.minimum((d + d.T) / 2, 1.0)
        missing = np.triu(rng.uniform(size=(n, n)) < (0.5 if trial % 2 else 0.0), 1)
        missing |= missing.T
        dense = np.where(missing, 1.0, d)
        np.fill_diagonal(dense, 0.0)
        ref = AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage=linkage,
                                      distance_threshold=0.4).fit_predict(dense)
        a, b = np.nonzero(np.triu(~missing, 1))
        got = _sparse_linkage(n, a, b, d[a, b], 0.4, linkage, 1.0)
        assert _partition(got) == _partition(ref), (trial, linkage)


def _brute_force_linkage(d, edge, flanks, threshold, linkage, far):
    """Naive agglomeration over the comparable pairs (a left-only and a right-only node are not comparable)."""
    clusters = [[i] for i in range(len(d))]
    comparable = lambda i, j: {flanks[i], flanks[j]} != {1, 2}  # noqa: E731
    while True:
        best = None
        for x in range(len(clusters)):
            for y in range(x + 1, len(clusters)):
                pairs = [(i, j) for i in clusters[x] for j in clusters[y] if comparable(i, j)]
                if not any(edge[i, j] for i, j in pairs):
                    continue
                dist = [d[i, j] if edge[i, j] else far for i, j in pairs]
                v = np.mean(dist) if linkage == "average" else max(dist)
                if best is None or v < best[0]:
                    best = (v, x, y)
        if best is None or best[0] >= threshold:
            break
        _, x, y = best
        clusters[x] += clusters.pop(y)
    labels = np.zeros(len(d), int)
    for k, c in enumerate(clusters):
        labels[c] = k
    return labels


@pytest.mark.parametrize("linkage", ["average", "complete"])
def test_flank_aware_linkage_leaves_out_pairs_of_opposite_flanks(linkage):
    """With ``flanks``, a left-only and a right-only node are neither an edge nor a missing (far) pair: the
    linkage averages (or maximises) over the comparable pairs only, as a naive agglomeration does."""
    from leopard_reid.census.identities import _sparse_linkage

    rng = np.random.default_rng(5)
    for trial in range(30):
        n = int(rng.integers(2, 14))
        flanks = rng.integers(0, 3, n)
        centres = rng.integers(0, max(1, n // 3), n)
        d = np.abs(centres[:, None] - centres[None, :]) * 0.3 + rng.uniform(0, 0.35, (n, n))
        d = np.minimum((d + d.T) / 2, 1.0)
        opposite = (flanks[:, None] * flanks[None, :]) == 2
        edge = np.triu(~opposite & (rng.uniform(size=(n, n)) < 0.7), 1)
        edge |= edge.T
        a, b = np.nonzero(np.triu(edge, 1))
        got = _sparse_linkage(n, a, b, d[a, b], 0.4, linkage, 1.0, flanks=flanks)
        ref = _brute_force_linkage(d, edge, flanks, 0.4, linkage, 1.0)
        assert _partition(got) == _partition(ref), (trial, linkage)


def test_one_flank_sightings_join_the_cluster_that_holds_both_flanks():
    """One animal: a paired-station burst showing both flanks (node 0), two left-only and two right-only
    sightings that match it and each other. Counting the opposite-flank pairs as far split the right
    sightings off (average 0.7 > 0.4); leaving them out gives one individual. Opposite flanks alone never
    join (no edge)."""
    from leopard_reid.census.identities import _sparse_linkage

    a, b = np.array([0, 0, 1, 0, 0, 3]), np.array([1, 2, 2, 3, 4, 4])
    d = np.full(6, 0.1)
    flanks = [0, 1, 1, 2, 2]
    assert _partition(_sparse_linkage(5, a, b, d, 0.4, "average", 1.0)) == {frozenset({0, 1, 2}), frozenset({3, 4})}
    assert _partition(_sparse_linkage(5, a, b, d, 0.4, "average", 1.0, flanks=flanks)) == {frozenset(range(5))}
    assert _partition(_sparse_linkage(2, np.array([], int), np.array([], int), np.array([]), 0.4, "average", 1.0,
                                      flanks=[1, 2])) == {frozenset({0}), frozenset({1})}


def _partition(labels) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for i, lab in enumerate(labels):
        groups.setdefault(int(lab), set()).add(i)
    return {frozenset(g) for g in groups.values()}


# ------------------------------------------------------------------------------------------ a small season
@pytest.fixture(scope="module")
def small_season(tmp_path_factory, embedder):
    """``synth --season``'s season (paired stations): 8 leopards x 6 sightings, half of them enrolled."""
    from leopard_reid import Gallery
    from leopard_reid.demo import write_census_season

    root = tmp_path_factory.mktemp("scale-season")
    files = write_census_season(root, n_individuals=8, sightings_per_individual=6, seed=4)
    known = pd.read_csv(files["known"])
    Gallery.build(embedder, known, root=root).save(root / "gallery.lrg")
    return {"root": root, **files, "gallery": root / "gallery.lrg"}


def test_sparse_clustering_gives_the_exhaustive_provisional_individuals(small_season, embedder, monkeypatch):
    """Acceptance (issue 17): on a small season, the sparse clustering (3 candidates per detection, so most
    pairs are never verified) finds the same provisional individuals as the exhaustive n x n clustering."""
    import leopard_reid.census.identities as ident

    seen = {}
    real = ident._cluster_new

    def both(*args, **kw):
        got = real(*args, **kw)
        ref = ident._cluster_exhaustive(*args, **{k: v for k, v in kw.items() if k != "candidates"})
        seen.update(n=len(args[0]), got=got, ref=ref, local=args[3])
        return got

    monkeypatch.setattr(ident, "_cluster_new", both)
    s = small_season
    for linkage in ("average", "single"):
        run_census(s["detections"], gallery=s["gallery"], out=s["root"] / f"out-{linkage}", sightings=s["sightings"],
                   cameras=s["cameras"], embedder=embedder, progress=False, review_images=0, linkage=linkage,
                   cluster_candidates=3)
        assert seen["n"] > 8  # more unmatched bursts than 2 x candidates: the graph is really sparse
        # the unmatched detections' keypoints are read from the census's scratch file, not held in memory
        assert seen["local"] and all(isinstance(f, DiskFeatures) for f in seen["local"].values())
        assert not list((s["root"] / f"out-{linkage}").rglob("unmatched-keypoints.bin"))  # deleted at the end
        groups = lambda c: _partition([c[g] for g in sorted(c)])  # noqa: E731
        assert groups(seen["got"]) == groups(seen["ref"]), linkage


# ------------------------------------------------------------------------------------------ describe once
@pytest.mark.parametrize("keypoints", [None, {"max_tilt": 1}])
def test_each_detection_is_described_once(small_season, embedder, tmp_path, monkeypatch, keypoints):
    """Acceptance (issue 17): matching, clustering and the review page share one keypoint extraction per
    readable detection (the gallery's exemplars are stored: none for them), made with the census's keypoint
    options (``keypoints={"max_tilt": 1}``: plain SIFT, no affine views)."""
    import functools

    import leopard_reid.local as local

    tilts = []
    real = local.extract_features

    @functools.wraps(real)  # the extractor's options are read from its signature
    def counting(*args, **kw):
        tilts.append(kw["max_tilt"])
        return real(*args, **kw)

    monkeypatch.setattr(local, "extract_features", counting)
    s = small_season
    res = run_census(s["detections"], gallery=s["gallery"], out=tmp_path / "once", sightings=s["sightings"],
                     cameras=s["cameras"], embedder=embedder, progress=False, keypoints=keypoints)
    assert res.files["review"].stat().st_size > 0 and res.counts["new"] > 0
    assert len(tilts) == len(res.detections)
    assert set(tilts) == {1 if keypoints else 2.0}


def test_unknown_keypoint_options_are_refused_before_scoring(small_season, tmp_path):
    s = small_season
    with pytest.raises(CensusError, match="keypoints: unknown keypoint option.*max_tlit"):
        run_census(s["detections"], gallery=s["gallery"], out=tmp_path / "bad", keypoints={"max_tlit": 1})
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------------------------------ resumable
def _census_cmd(s: dict, out: Path) -> list[str]:
    return [sys.executable, "-m", "leopard_reid.cli", "census", "--detections", str(s["detections"]),
            "--gallery", str(s["gallery"]), "--sightings", str(s["sightings"]), "--cameras", str(s["cameras"]),
            "--out", str(out), "--device", "cpu"]


def _outputs(out: Path) -> dict[str, bytes]:
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
             if p.is_file() and ".census-state" not in p.parts}
    return files


def test_a_killed_census_resumes_with_the_same_outputs(small_season, tmp_path):
    """Acceptance (issue 17): SIGKILL the census CLI once a chunk is saved, run it again: the finished chunks
    are read back, not scored again, and every output equals an uninterrupted run's byte for byte."""
    s = small_season
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "whole"
    done = subprocess.run(_census_cmd(s, whole), env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    n_chunks = len(list((whole / ".census-state").glob("*/chunk-*.npz")))
    assert n_chunks >= 3

    out = tmp_path / "killed"
    proc = subprocess.Popen(_census_cmd(s, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not list((out / ".census-state").glob("*/chunk-*.npz")):
            assert proc.poll() is None, "the census finished before a chunk was seen"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = {p: p.stat().st_mtime_ns for p in (out / ".census-state").glob("*/chunk-*.npz")}
    assert 1 <= len(saved) < n_chunks
    assert not (out / "matches.csv").exists()

    again = subprocess.run(_census_cmd(s, out), env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    assert f"resuming: {len(saved)} of {n_chunks} chunks already scored" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in saved} == saved  # finished chunks were not rewritten
    assert len(list((out / ".census-state").glob("*/chunk-*.npz"))) == n_chunks
    a, b = _outputs(whole), _outputs(out)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], name


def test_a_different_run_never_reuses_stale_chunks(small_season, embedder, tmp_path):
    """Other inputs or settings hash to another state folder: the old chunks are dropped, not read."""
    s = small_season
    kw = dict(gallery=s["gallery"], out=tmp_path / "o", sightings=s["sightings"], cameras=s["cameras"],
              embedder=embedder, progress=False, review_images=0)
    run_census(s["detections"], method="fused", **kw)
    first = {p.name for p in (tmp_path / "o" / ".census-state").iterdir()}
    run_census(s["detections"], method="local", new_threshold=1.0, **kw)
    second = {p.name for p in (tmp_path / "o" / ".census-state").iterdir()}
    assert len(first) == len(second) == 1 and first != second
    run_census(s["detections"], method="local", new_threshold=1.0, keypoints={"max_tilt": 1}, **kw)
    third = {p.name for p in (tmp_path / "o" / ".census-state").iterdir()}
    assert len(third) == 1 and third != second  # other keypoint options: other keypoints, other scores


def test_a_damaged_chunk_file_is_scored_again_not_fatal(tmp_path) -> None:
    from leopard_reid.census.scoring import ChunkScores
    from leopard_reid.census.state import ChunkState

    state = ChunkState.open(tmp_path, "k")
    res = ChunkScores(best=np.zeros((2, 3), np.float32), arg=np.zeros((2, 3), np.int64), valid=np.ones(2, bool),
                      errors=[], kept={0: (np.ones(4, np.float32), None)})
    state.save(0, 2, res)
    back = state.load(0, 2)
    assert back is not None and back.kept[0][1] is None and np.array_equal(back.kept[0][0], np.ones(4))
    assert state.load(0, 3) is None  # another span: the file does not describe it
    np.savez(state.path(0, 2), best=res.best)  # readable, but not a chunk (no "valid", "kept"...)
    assert state.load(0, 2) is None
    state.path(0, 2).write_bytes(b"PK\x03\x04 truncated")
    assert state.load(0, 2) is None


def test_new_individuals_are_clustered_on_pairwise_p_same():
    """Clustering compares unmatched detections two at a time: P(same) there is the calibration's pairwise
    P, never discounted for how many detections are unmatched (that correction is for a gallery's best of n)."""
    from dataclasses import replace

    from leopard_reid.calibration import DEFAULT_CALIBRATION
    from leopard_reid.census.identities import _unmatched_gallery
    from leopard_reid.local import extract_features

    from .test_local import spot_pattern, warp

    images = [warp(spot_pattern(10 + i // 2), angle=5.0 * (i % 2), seed=i) for i in range(6)]
    local = {i: extract_features(im) for i, im in enumerate(images)}
    rng = np.random.default_rng(0)
    emb = {i: (v := rng.normal(size=16).astype(np.float32)) / np.linalg.norm(v) for i in range(6)}
    cal = replace(DEFAULT_CALIBRATION, n_identities=2)  # 6 unmatched "identities" would be a larger gallery
    gallery_matcher = type("Fitted", (), {"method": "fused", "calibration_": cal})()
    bursts = [[0, 1], [2], [3], [4, 5]]
    dets, owner, m, score_block = _unmatched_gallery(list(range(4)), bursts, emb, local, ["unknown"] * 6,
                                                     gallery_matcher, shortlist=5)
    assert dets == list(range(6)) and owner.tolist() == [0, 0, 1, 2, 3, 3]
    got = score_block(list(range(6)))
    e = np.stack([emb[i] for i in dets])
    cos = (e @ e.T).astype(np.float64)
    np.fill_diagonal(cos, -np.inf)  # each detection is excluded from its own comparisons
    kp = np.maximum(m.local_.score_many([local[i] for i in dets], exclude=list(range(6))), 0.0)
    pairwise, corrected = cal.fuse(cos, kp), cal.for_identities(6).fuse(cos, kp)
    finite = np.isfinite(got)
    assert finite.sum() == 30
    np.testing.assert_allclose(got[finite], pairwise[finite], rtol=1e-6)
    assert not np.allclose(got[finite], corrected[finite])
