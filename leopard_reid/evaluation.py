"""Leave-one-out evaluation on a labelled metadata table.

Protocol (the one used for every figure this project reports): every image whose identity has at least one
other image is a query; the gallery is all other images (single-image identities stay in as distractors);
identities are ranked by their best exemplar. Reported: top-1, top-5, mAP (over gallery images), the CMC
curve, and counts. With known flank sides, a query is only compared with the same (or unknown) side.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .calibration import DEFAULT_CALIBRATION, Calibration, choose_threshold, select_fusion
from .gallery import Gallery
from .io import read_metadata
from .matching import DEFAULT_METHOD, Matcher, Method, PairScores, check_method

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .embed import Embedder, Features

__all__ = [
    "Evaluation",
    "OpenSetEvaluation",
    "evaluate",
    "evaluate_open_set",
    "leave_one_out_scores",
    "rank_metrics",
    "suspect_duplicates",
]


@dataclass
class Evaluation:
    """Results of :func:`evaluate`. ``per_query`` has one row per query with the true identity's rank."""

    method: str
    top1: float
    top5: float
    mAP: float
    cmc: np.ndarray
    n_queries: int
    n_identities: int
    n_images: int
    seconds: float
    per_query: pd.DataFrame = field(repr=False)
    n_failed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the CLI's ``--json``)."""
        return {
            "method": self.method,
            "top1": round(self.top1, 4),
            "top5": round(self.top5, 4),
            "mAP": round(self.mAP, 4),
            "n_queries": self.n_queries,
            "n_identities": self.n_identities,
            "n_images": self.n_images,
            "n_failed": self.n_failed,
            "seconds": round(self.seconds, 2),
            "cmc": [round(float(v), 4) for v in self.cmc[:20]],
        }

    def __repr__(self) -> str:
        """Short: the method and headline metrics (not the CMC array or the per-query table)."""
        return (f"Evaluation(method={self.method!r}, top1={self.top1:.3f}, top5={self.top5:.3f}, mAP={self.mAP:.3f}, "
                f"n_queries={self.n_queries})")

    def plot(self, *, max_rank: int = 20) -> Figure:
        """The CMC curve (:func:`leopard_reid.viz.plot_cmc`) as a matplotlib figure; the backend is left alone."""
        from .viz import plot_cmc

        return plot_cmc(self, max_rank=max_rank)

    def __str__(self) -> str:
        return (
            f"{self.method}: top-1 {self.top1:.3f}, top-5 {self.top5:.3f}, mAP {self.mAP:.3f} "
            f"({self.n_queries} queries, {self.n_identities} identities, {self.n_images} images, "
            f"{self.seconds:.1f} s)"
        )


def rank_metrics(scores: np.ndarray, labels: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query row of ``scores`` (n_q, n_gallery; -inf = excluded): the rank (1-based) of its true
    identity when identities are ranked by best exemplar, and the average precision over gallery images."""
    codes, uniques = pd.factorize(pd.Series(labels, dtype=object), sort=True)
    n_ids = len(uniques)
    ranks = np.empty(len(queries), dtype=np.int64)
    aps = np.empty(len(queries), dtype=np.float64)
    for r, q in enumerate(queries):
        s = scores[r]
        per_id = np.full(n_ids, -np.inf)
        np.maximum.at(per_id, codes, s)
        true = codes[q]
        # ties count against the query (pessimistic): identities scoring >= the true one rank before it
        ranks[r] = int(np.sum(per_id >= per_id[true]))
        finite = np.isfinite(s)
        rel = (codes == true) & finite
        rel[q] = False
        order = np.argsort(-np.where(finite, s, -np.inf), kind="stable")
        hits = rel[order][: int(finite.sum())]
        if hits.any():
            prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
            aps[r] = float(prec[hits].mean())
        else:
            aps[r] = 0.0
    return ranks, aps


def leave_one_out_scores(
    features: Features,
    labels: np.ndarray,
    *,
    method: Method = DEFAULT_METHOD,
    backbone: str | None = None,
    calibration: Calibration | None = None,
    side_aware: bool = True,
) -> tuple[PairScores, np.ndarray]:
    """Score every valid image against all the others. Returns ``(scores, queries)`` where ``queries`` are
    the row indices (into the valid images) of images whose identity has another image.

    ``fused`` without a ``calibration`` is fused cross-fitted (see :func:`evaluate`), so that these scores,
    not only the figures computed from them, never learned from the query's own individual.
    """
    valid = np.flatnonzero(features.valid)
    labels = np.asarray(labels, dtype=object)[valid]
    sub = _subset(features, valid)
    gallery = _gallery_of(sub, labels, backbone=backbone)
    # pairwise P, as the cross-fitted rows below are: a pair's score here does not depend on the table's size
    matcher = Matcher(method=method, calibration=calibration, side_aware=side_aware, size_correction=False).fit(gallery)
    ps = matcher.scores(sub, exclude=list(range(len(valid))))
    allowed = np.isfinite(ps.cosine)
    same = (labels[:, None] == labels[None, :]) & allowed
    np.fill_diagonal(same, False)
    queries = np.flatnonzero(same.any(1))
    if method == "fused" and calibration is None:  # the fresh gallery above carries no calibration
        ps.final = _cross_fitted_fusion(ps, labels, queries)
    return ps, queries


def _cross_fitted_fusion(ps: PairScores, labels: np.ndarray, queries: np.ndarray, n_folds: int = 5) -> np.ndarray:
    """Fused scores where each query's fusion was chosen and fitted on the other queries' identities only.

    Per fold, :func:`~leopard_reid.calibration.select_fusion` picks fused, local alone or global alone by
    cross-validated top-1 on the training identities and fits it (monotone), so the leave-one-out figure
    stays honest and the fusion is not worse than its better input. Falls back to the default calibration
    when a fold's training queries lack same- or different-individual pairs.
    """
    final = ps.final.copy()
    ids = sorted(set(labels[queries]))
    fold_of = {ident: k % n_folds for k, ident in enumerate(ids)}
    folds = np.array([fold_of[labels[q]] for q in queries])
    for k in range(n_folds):
        test, train = queries[folds == k], queries[folds != k]
        if not len(test):
            continue
        try:
            cal = select_fusion(ps, labels, train)
        except ValueError:
            cal = DEFAULT_CALIBRATION
        final[test] = cal.fuse(ps.cosine[test], ps.local[test])
    return final


def _subset(features: Features, idx: np.ndarray) -> Features:
    """Rows ``idx`` of ``features`` (valid images), with their sides (``unknown`` when none were given)."""
    from .embed import Features as _F

    sides = features.sides or ["unknown"] * len(features)
    return _F(
        names=[features.names[i] for i in idx],
        embeddings=features.embeddings[idx],
        local=[features.local[i] for i in idx] if features.local is not None else None,
        valid=np.ones(len(idx), bool),
        sides=[sides[i] for i in idx],
    )


def _gallery_of(sub: Features, labels: Sequence[str], *, backbone: str | None = None) -> Gallery:
    """A gallery of the images of ``sub`` (from :func:`_subset`) under ``labels``, with their sides."""
    meta = pd.DataFrame({"path": sub.names, "side": sub.sides})
    return Gallery.from_embeddings(sub.embeddings, list(labels), metadata=meta, backbone=backbone, local=sub.local)


def _labelled_features(
    data: str | os.PathLike | pd.DataFrame,
    *,
    method: str,
    embedder: Embedder | None,
    root: str | os.PathLike | None,
    features: Features | None,
    client: Any = None,
) -> tuple[pd.DataFrame, Features]:
    """Read a labelled table (CSV paths relative to its folder by default) and describe it unless given."""
    from .embed import Embedder

    check_method(method)
    if not isinstance(data, pd.DataFrame):
        root = root if root is not None else os.path.dirname(os.path.abspath(data))
    df = read_metadata(data, require=("path", "identity"))
    if features is None:
        embedder = embedder or Embedder()
        features = embedder.describe(df, root=root, local=method != "global", on_error="skip", client=client)
    return df, features


def _scored_table(
    data: str | os.PathLike | pd.DataFrame,
    method: Method,
    embedder: Embedder | None,
    root: str | os.PathLike | None,
    calibration: Calibration | None,
    side_aware: bool,
    features: Features | None,
    client: Any = None,
) -> tuple[pd.DataFrame, Features, np.ndarray, PairScores, np.ndarray]:
    """Read and describe a labelled table, then score every image against all the others (leave-one-out)."""
    df, features = _labelled_features(data, method=method, embedder=embedder, root=root, features=features,
                                      client=client)
    if len(features) != len(df):
        raise ValueError(f"features describe {len(features)} images, the table has {len(df)}")
    labels = df["identity"].astype(str).to_numpy(dtype=object)
    ps, queries = leave_one_out_scores(features, labels, method=method, backbone=getattr(embedder, "name", None),
                                       calibration=calibration, side_aware=side_aware)
    return df, features, labels, ps, queries


def evaluate(
    data: str | os.PathLike | pd.DataFrame,
    *,
    method: Method = DEFAULT_METHOD,
    embedder: Embedder | None = None,
    root: str | os.PathLike | None = None,
    calibration: Calibration | None = None,
    side_aware: bool = True,
    features: Features | None = None,
    client: Any = None,
) -> Evaluation:
    """Leave-one-out evaluation of ``method`` on a labelled table (``path``, ``identity``, optional
    ``bbox``/``side``) or CSV file (paths relative to ``root``, default the CSV's folder).

    ``fused`` without a ``calibration`` fits its fusion cross-validated (5 folds by identity: a query's own
    individual never trains the weights it is scored with). Unreadable images are skipped with a warning and
    counted in ``n_failed``. Pass ``features`` (from
    ``Embedder.describe(..., local=True)``) to compare methods without re-embedding. ``client``: a
    ``distributed.Client`` to describe the images on its workers (the scoring stays here).
    """

    t0 = time.perf_counter()
    df, features, labels, ps, queries = _scored_table(data, method, embedder, root, calibration, side_aware, features,
                                                      client)
    valid_idx = np.flatnonzero(features.valid)
    vlabels = labels[valid_idx]
    ranks, aps = rank_metrics(ps.final[queries], vlabels, queries)
    n_ids = len(set(vlabels))
    cmc = np.array([np.mean(ranks <= k) for k in range(1, n_ids + 1)]) if len(ranks) else np.zeros(0)
    best = np.argmax(np.where(np.isfinite(ps.final[queries]), ps.final[queries], -np.inf), axis=1)
    per_query = pd.DataFrame(
        {
            "query": [features.names[valid_idx[q]] for q in queries],
            "identity": vlabels[queries],
            "rank": ranks,
            "ap": aps,
            "best_identity": vlabels[best] if len(queries) else [],
            "best_score": ps.final[queries, best] if len(queries) else [],
        }
    )
    return Evaluation(
        method=method,
        top1=float(np.mean(ranks <= 1)) if len(ranks) else 0.0,
        top5=float(np.mean(ranks <= 5)) if len(ranks) else 0.0,
        mAP=float(aps.mean()) if len(aps) else 0.0,
        cmc=cmc,
        n_queries=len(queries),
        n_identities=n_ids,
        n_images=len(df),
        seconds=time.perf_counter() - t0,
        per_query=per_query,
        n_failed=int((~features.valid).sum()),
    )


def suspect_duplicates(
    data: str | os.PathLike | pd.DataFrame,
    *,
    method: Method = DEFAULT_METHOD,
    embedder: Embedder | None = None,
    root: str | os.PathLike | None = None,
    calibration: Calibration | None = None,
    side_aware: bool = True,
    features: Features | None = None,
    min_score: float | None = None,
    limit: int = 50,
) -> pd.DataFrame:
    """Pairs of images filed under *different* identities that match as well as photos of one animal do.

    Catalogues built by hand over years file some leopards under two codes (two parks, two catalogues, a
    renamed animal) and mislabel some photos; each such pair also counts as a miss in :func:`evaluate`.
    This lists them for a person to check, strongest first: ``path_a, identity_a, path_b, identity_b,
    score``. ``min_score`` defaults to the 10th percentile of the scores of pairs labelled as the same
    individual (as strong as nine in ten true matches; the median missed a re-filed photo once most
    true pairs scored P > 0.99); ``score`` is the method's pair score (``fused``: P(same individual)), the
    larger of the two directions. ``data``/``root``/``features`` are read as in :func:`evaluate`.
    """
    _, features, labels, ps, _ = _scored_table(data, method, embedder, root, calibration, side_aware, features)
    valid = np.flatnonzero(features.valid)
    vlabels = labels[valid]
    score = np.where(np.isfinite(ps.final), ps.final, -np.inf)
    score = np.maximum(score, score.T)
    upper = np.triu(np.ones_like(score, dtype=bool), k=1) & np.isfinite(score)
    same = vlabels[:, None] == vlabels[None, :]
    if min_score is None:
        true_scores = score[upper & same]
        min_score = float(np.quantile(true_scores, 0.1)) if len(true_scores) else float("inf")
    a, b = np.nonzero(upper & ~same & (score >= min_score))
    order = np.argsort(-score[a, b], kind="stable")[: max(0, int(limit))]
    a, b = a[order], b[order]
    out = pd.DataFrame({
        "path_a": [features.names[valid[i]] for i in a], "identity_a": vlabels[a].astype(str),
        "path_b": [features.names[valid[j]] for j in b], "identity_b": vlabels[b].astype(str),
        "score": score[a, b].astype(float),
    })
    out.attrs["min_score"] = min_score
    out.attrs["n_failed"] = int((~features.valid).sum())  # unreadable images skipped (the CLI exits 3)
    return out


@dataclass
class OpenSetEvaluation:
    """Results of :func:`evaluate_open_set`: how well the top score separates known from new individuals."""

    method: str
    split: str
    auroc: float
    top1_known: float
    threshold: float
    false_new_rate: float
    false_match_rate: float
    n_known_queries: int
    n_new_queries: int
    n_gallery: int
    scores: pd.DataFrame = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the CLI's ``evaluate --open-set --json``), without the raw scores."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items() if k != "scores"}


def evaluate_open_set(
    data: str | os.PathLike | pd.DataFrame,
    *,
    method: Method = DEFAULT_METHOD,
    split: str = "identity",
    fraction: float = 0.5,
    seed: int = 0,
    embedder: Embedder | None = None,
    root: str | os.PathLike | None = None,
    features: Features | None = None,
    threshold: float | None = None,
    client: Any = None,
) -> OpenSetEvaluation:
    """Query/gallery split for open-set checks: are never-seen individuals recognised as new?

    ``split="identity"``: a random ``fraction`` of the individuals is enrolled with their first sighting of
    each flank (by ``datetime`` when present); every other image is a query, of a known individual or of a
    new one. ``split="time"``: the gallery is every image before the median ``datetime``; queries are
    the later ones (a flank first seen later is new). Reports the AUROC of the top-1 score (known vs
    new), top-1 accuracy on known queries, and error rates at ``threshold`` (default: the method's
    calibrated one, else the balanced-error threshold on these scores, picked by :func:`calibrate`'s rule).
    ``client``: a ``distributed.Client`` to describe the images on its workers.
    """
    from sklearn.metrics import roc_auc_score

    df, features = _labelled_features(data, method=method, embedder=embedder, root=root, features=features,
                                      client=client)
    ok = features.valid
    order = df.sort_values("datetime").index if "datetime" in df.columns else df.index
    if split == "identity":
        rng = np.random.default_rng(seed)
        ids = np.array(sorted(df["identity"].unique()), dtype=object)
        known = set(rng.choice(ids, max(1, round(fraction * len(ids))), replace=False).tolist())
        sides = df["side"] if "side" in df.columns else pd.Series("unknown", index=df.index)
        ranked = df.loc[order].assign(side=sides.loc[order])
        first = ranked[ranked["identity"].isin(known)].groupby(["identity", "side"]).head(1).index
        in_gallery = df.index.isin(first)
    elif split == "time":
        if "datetime" not in df.columns:
            raise ValueError("split='time' needs a datetime column")
        t = pd.to_datetime(df["datetime"])
        in_gallery = (t < t.median()).to_numpy()
        known = set(_flank_keys(df)[in_gallery])
    else:
        raise ValueError(f"split must be 'identity' or 'time', not {split!r}")
    g_idx = np.flatnonzero(in_gallery & ok)
    q_idx = np.flatnonzero(~in_gallery & ok)
    gallery = _gallery_of(_subset(features, g_idx), df["identity"].iloc[g_idx])
    matcher = Matcher(method=method).fit(gallery)
    sub = _subset(features, q_idx)
    ids, sc, _ = matcher.rank(matcher.scores(sub), top_k=1)
    truth = df["identity"].iloc[q_idx].to_numpy(dtype=object)
    keys = _flank_keys(df)[q_idx] if split == "time" else truth
    is_known = np.array([k in known for k in keys])
    top = sc[:, 0].astype(float)
    auroc = float(roc_auc_score(is_known, top)) if is_known.any() and (~is_known).any() else float("nan")
    thr = threshold if threshold is not None else matcher.threshold(None)
    if thr is None:  # no calibrated threshold for this method: the balanced-error one (calibrate's rule)
        thr = choose_threshold(top[is_known], top[~is_known], default=0.0).threshold
    return OpenSetEvaluation(
        method=method,
        split=split,
        auroc=auroc,
        top1_known=float(np.mean(ids[is_known, 0] == truth[is_known])) if is_known.any() else float("nan"),
        threshold=float(thr),
        false_new_rate=float(np.mean(top[is_known] < thr)) if is_known.any() else float("nan"),
        false_match_rate=float(np.mean(top[~is_known] >= thr)) if (~is_known).any() else float("nan"),
        n_known_queries=int(is_known.sum()),
        n_new_queries=int((~is_known).sum()),
        n_gallery=len(g_idx),
        scores=pd.DataFrame({"query": sub.names, "identity": truth, "known": is_known, "top_identity": ids[:, 0],
                             "top_score": top}),
    )


def _flank_keys(df: pd.DataFrame) -> np.ndarray:
    """``identity`` or ``identity/side``: a flank seen before is known, the other flank is not (yet)."""
    if "side" not in df.columns:
        return df["identity"].astype(str).to_numpy(dtype=object)
    return (df["identity"].astype(str) + "/" + df["side"].astype(str)).to_numpy(dtype=object)


