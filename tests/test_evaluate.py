from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import leopard_reid as lr
from leopard_reid.embed import Features
from leopard_reid.evaluation import rank_metrics


def test_rank_metrics_on_a_known_matrix():
    labels = np.array(["a", "a", "b", "c"], dtype=object)
    s = np.array(
        [
            [-np.inf, 0.2, 0.9, 0.1],  # query 0 (a): b scores higher -> true rank 2
            [0.8, -np.inf, 0.3, 0.1],  # query 1 (a): rank 1
        ]
    )
    ranks, aps = rank_metrics(s, labels, np.array([0, 1]))
    assert ranks.tolist() == [2, 1]
    np.testing.assert_allclose(aps, [0.5, 1.0])


def test_ties_count_against_the_query():
    labels = np.array(["a", "a", "b"], dtype=object)
    ranks, _ = rank_metrics(np.array([[-np.inf, 0.5, 0.5]]), labels, np.array([0]))
    assert ranks.tolist() == [2]


def test_evaluate_synthetic_methods(population, embedder):
    root, meta = population
    feats = embedder.describe(meta, root=root, local=True)
    res = {m: lr.evaluate(meta, method=m, root=root, features=feats) for m in ("global", "local", "fused")}
    for r in res.values():
        assert r.n_queries == len(meta) and r.n_identities == 8
        assert len(r.cmc) == 8 and r.cmc[0] == r.top1 and r.cmc[4] == r.top5
        assert (np.diff(r.cmc) >= 0).all() and r.mAP == pytest.approx(r.per_query["ap"].mean())
    assert res["fused"].top1 >= 0.9 and res["local"].top1 >= 0.9
    assert res["fused"].top1 > res["global"].top1
    json.dumps(res["fused"].to_dict())


def test_open_set_split_separates_known_from_new(population, embedder):
    root, meta = population
    feats = embedder.describe(meta, root=root, local=True)
    res = lr.evaluate_open_set(meta, method="fused", root=root, features=feats, seed=1)
    assert res.n_gallery == 8 and res.n_known_queries == 8 and res.n_new_queries == 16  # 4 of 8 enrolled
    assert res.auroc >= 0.9 and res.top1_known >= 0.75
    glob = lr.evaluate_open_set(meta, method="global", root=root, features=feats, seed=1)
    assert glob.auroc < res.auroc
    with pytest.raises(ValueError, match="split"):
        lr.evaluate_open_set(meta, split="random", root=root, features=feats)


def test_open_set_and_calibrate_pick_the_same_threshold():
    # two individuals of two images: cosine 0.8 within an individual, 0.2 across
    w, c = 0.8, 0.2
    gram = np.array([[1, w, c, c], [w, 1, c, c], [c, c, 1, w], [c, c, w, 1]])
    emb = np.linalg.cholesky(gram).astype(np.float32)  # rows with exactly these cosines
    meta = pd.DataFrame({"path": ["a1.jpg", "a2.jpg", "b1.jpg", "b2.jpg"], "identity": ["A", "A", "B", "B"]})
    feats = Features(names=list(meta["path"]), embeddings=emb, local=None, valid=np.ones(4, bool))
    cal = lr.calibrate(lr.Gallery.from_embeddings(emb, list(meta["identity"]), metadata=meta[["path"]]),
                       method="global")
    res = lr.evaluate_open_set(meta, method="global", features=feats)
    assert res.n_known_queries == 1 and res.n_new_queries == 2
    assert c + 0.1 < res.threshold < w - 0.1  # inside the gap, not on the lowest known score
    assert res.threshold == pytest.approx(cal.threshold, abs=1e-6) and cal.threshold == pytest.approx((w + c) / 2)
    assert res.false_new_rate == res.false_match_rate == cal.false_new_rate == cal.false_match_rate == 0.0


@pytest.mark.slow
def test_leopardtrails_default_method_beats_keypoint_baseline(leopardtrails, embedder):
    r = lr.evaluate(leopardtrails / "metadata.csv", embedder=embedder)
    assert r.n_queries == 28
    # measured 0.857 (24 of 28 queries); 0.80 lets exactly one more query miss (23 of 28): a gate on the
    # target of issue 4, not on the measurement (plain RootSIFT ratio counting reaches 0.46-0.50)
    assert r.top1 >= 0.80


def test_suspect_duplicates_finds_an_animal_filed_under_two_names(population, embedder):
    root, meta = population
    feats = embedder.describe(meta, root=root, local=True)
    clean = lr.suspect_duplicates(meta, root=root, features=feats)
    assert list(clean.columns) == ["path_a", "identity_a", "path_b", "identity_b", "score"]
    assert clean.empty  # every pair that matches like one animal is labelled as one animal
    # file one left-flank photo of L-003 under a second code, as a second catalogue would
    moved = meta.index[(meta["identity"] == "L-003") & (meta["side"] == "left")][0]
    dup = meta.copy()
    dup.loc[moved, "identity"] = "KWF-9"
    pairs = lr.suspect_duplicates(dup, root=root, features=feats)
    assert len(pairs) >= 1
    top = pairs.iloc[0]
    assert {top["identity_a"], top["identity_b"]} == {"L-003", "KWF-9"}
    assert meta.at[moved, "path"] in (top["path_a"], top["path_b"])
    assert pairs["score"].is_monotonic_decreasing and pairs.attrs["min_score"] > 0
    assert lr.suspect_duplicates(dup, root=root, features=feats, limit=0).empty


@pytest.mark.slow
def test_leopardtrails_audit_lists_cross_catalogue_codes(leopardtrails, embedder):
    pairs = lr.suspect_duplicates(leopardtrails / "metadata.csv", embedder=embedder)
    assert len(pairs) >= 3
    assert all(a != b for a, b in zip(pairs["identity_a"], pairs["identity_b"]))


def test_the_default_is_not_below_its_better_input_on_wild_photos(tmp_path, embedder):
    """Synthetic wild photos (shared trap backgrounds, watermarks, mixed views), where the CNN's cosine
    misleads: the default method ranks at least as well as the better of its two inputs."""
    meta = lr.synthetic.generate(tmp_path, wild=True, n_individuals=8, sightings_per_individual=3, seed=5)
    meta = meta[["path", "identity"]]
    feats = embedder.describe(meta, root=tmp_path, local=True)
    res = {m: lr.evaluate(meta, method=m, root=tmp_path, features=feats) for m in ("global", "local", "fused")}
    assert res["local"].top1 > res["global"].top1
    assert res["fused"].top1 >= max(res["local"].top1, res["global"].top1)
    assert res["fused"].mAP >= res["local"].mAP - 0.02


def test_evaluation_repr_is_short_and_plot_draws_the_cmc(monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    from leopard_reid.evaluation import Evaluation

    cmc = np.linspace(0.5, 1.0, 40)
    ev = Evaluation(method="fused", top1=0.5, top5=0.6, mAP=0.55, cmc=cmc, n_queries=40, n_identities=10,
                    n_images=40, seconds=1.0, per_query=pd.DataFrame({"rank": np.arange(40)}))
    text = repr(ev)
    assert text == "Evaluation(method='fused', top1=0.500, top5=0.600, mAP=0.550, n_queries=40)"
    calls = []
    monkeypatch.setattr(matplotlib, "use", lambda *a, **k: calls.append(a))
    fig = ev.plot(max_rank=10)
    (line,) = fig.axes[0].get_lines()
    assert calls == [] and np.array_equal(line.get_ydata(), cmc[:10])
    assert line.get_xdata().tolist() == list(range(1, 11))
    plt.close(fig)
