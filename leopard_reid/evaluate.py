"""Leave-one-out evaluation on a labelled metadata table.

Protocol (the one used for every figure this project reports): every image whose identity has at least one
other image is a query; the gallery is all other images (single-image identities stay in as distractors);
identities are ranked by their best exemplar. Reported: top-1, top-5, mAP (over gallery images), the CMC
curve, and counts. With known flank sides, a query is only compared with the same (or unknown) side.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .gallery import Gallery
from .io import read_metadata
from .match import DEFAULT_METHOD, Calibration, Matcher, Method, PairScores, _check_method

if TYPE_CHECKING:
    from .embed import Embedder, Features

__all__ = ["Evaluation", "evaluate", "leave_one_out_scores", "rank_metrics"]


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
    the row indices (into the valid images) of images whose identity has another image."""
    valid = np.flatnonzero(features.valid)
    labels = np.asarray(labels, dtype=object)[valid]
    sides = [features.sides[i] for i in valid] if features.sides else ["unknown"] * len(valid)
    local = [features.local[i] for i in valid] if features.local is not None else None
    meta = pd.DataFrame({"path": [features.names[i] for i in valid], "side": sides})
    gallery = Gallery.from_embeddings(
        features.embeddings[valid], list(labels), metadata=meta, backbone=backbone, local=local
    )
    from .embed import Features as _F

    sub = _F(
        names=list(meta["path"]),
        embeddings=features.embeddings[valid],
        local=local,
        valid=np.ones(len(valid), bool),
        sides=sides,
    )
    matcher = Matcher(method=method, calibration=calibration, side_aware=side_aware).fit(gallery)
    ps = matcher.scores(sub, exclude=list(range(len(valid))))
    allowed = np.isfinite(ps.cosine)
    same = (labels[:, None] == labels[None, :]) & allowed
    np.fill_diagonal(same, False)
    queries = np.flatnonzero(same.any(1))
    if method == "fused" and calibration is None and gallery.calibration is None:
        ps.final = _cross_fitted_fusion(ps, labels, queries)
    return ps, queries


def _cross_fitted_fusion(ps: PairScores, labels: np.ndarray, queries: np.ndarray, n_folds: int = 5) -> np.ndarray:
    """Fused scores where each query's fusion was fitted on the other queries' identities only.

    The fusion weights are learned from labelled pairs (as ``calibrate`` does on a gallery), but never from
    the query's own individual, so the leave-one-out figure stays honest. Falls back to the default
    calibration when a fold lacks same- or different-individual pairs.
    """
    from .match import DEFAULT_CALIBRATION, fit_fusion, pair_features

    final = ps.final.copy()
    ids = sorted(set(labels[queries]))
    fold_of = {ident: k % n_folds for k, ident in enumerate(ids)}
    folds = np.array([fold_of[labels[q]] for q in queries])
    mask = np.isfinite(ps.cosine)
    for k in range(n_folds):
        test, train = queries[folds == k], queries[folds != k]
        if not len(test):
            continue
        x, y = pair_features(ps, labels, train)
        try:
            coef, intercept = fit_fusion(x, y)
            cal = Calibration(coef=coef, intercept=intercept)
        except ValueError:
            cal = DEFAULT_CALIBRATION
        local = np.where(mask[test], ps.local[test], 0.0)
        final[test] = np.where(mask[test], cal.probability(ps.cosine[test], local), -np.inf)
    return final


def evaluate(
    data: str | os.PathLike | pd.DataFrame,
    *,
    method: Method = DEFAULT_METHOD,
    embedder: Embedder | None = None,
    root: str | os.PathLike | None = None,
    calibration: Calibration | None = None,
    side_aware: bool = True,
    features: Features | None = None,
) -> Evaluation:
    """Leave-one-out evaluation of ``method`` on a labelled table (``path``, ``identity``, optional
    ``bbox``/``side``) or CSV file (paths relative to ``root``, default the CSV's folder).

    ``fused`` without a ``calibration`` fits its fusion cross-validated (5 folds by identity: a query's own
    individual never trains the weights it is scored with). Unreadable images are skipped with a warning and
    counted in ``n_failed``. Pass ``features`` (from
    ``Embedder.describe(..., local=True)``) to compare methods without re-embedding.
    """
    from .embed import Embedder

    _check_method(method)
    t0 = time.perf_counter()
    if not isinstance(data, pd.DataFrame):
        root = root if root is not None else os.path.dirname(os.path.abspath(data))
    df = read_metadata(data, require=("path", "identity"))
    if features is None:
        embedder = embedder or Embedder()
        features = embedder.describe(df, root=root, local=method != "global", on_error="skip")
    if len(features) != len(df):
        raise ValueError(f"features describe {len(features)} images, the table has {len(df)}")
    labels = df["identity"].astype(str).to_numpy(dtype=object)
    ps, queries = leave_one_out_scores(
        features,
        labels,
        method=method,
        backbone=getattr(embedder, "name", None),
        calibration=calibration,
        side_aware=side_aware,
    )
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


def to_json(result: Evaluation) -> str:
    return json.dumps(result.to_dict())
