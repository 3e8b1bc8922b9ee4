"""Matching queries against a gallery: global shortlist, keypoint verification, calibrated fusion.

Three methods, selectable everywhere (``match``, ``evaluate``, the CLI):

* ``global``: cosine similarity of CNN embeddings (fast, weak on real coats);
* ``local``: HotSpotter-style one-vs-many LNBNN vote over RootSIFT keypoints, then RANSAC verification of
  a shortlist (the pattern-level evidence that makes re-identification work);
* ``fused`` (default): both, combined by a logistic calibration into P(same individual), the score that
  decides "known" versus "new".

When flank sides are known, a left flank is only compared with left (or unknown) flanks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .gallery import Gallery, GalleryError, top_identities
from .io import ImageInput, OnError, as_records

if TYPE_CHECKING:
    from .embed import Embedder, Features
    from .local import LocalMatcher

__all__ = ["METHODS", "Calibration", "Matcher", "PairScores", "calibrate", "fit_fusion", "match", "pair_features"]

Method = Literal["global", "local", "fused"]
METHODS: tuple[str, ...] = ("global", "local", "fused")
DEFAULT_METHOD: Method = "fused"


@dataclass(frozen=True)
class Calibration:
    """Logistic map from (cosine, keypoint score) to P(same individual), and the new-individual threshold.

    ``probability = sigmoid(intercept + coef[0] * cosine + coef[1] * log1p(local_score))``. A query whose best
    probability is below ``threshold`` is called a new individual. The rates are leave-one-out estimates
    from the data it was fitted on (None for the built-in default).
    """

    coef: tuple[float, float]
    intercept: float
    threshold: float = 0.5
    uncertain_band: tuple[float, float] = (0.25, 0.75)
    false_new_rate: float | None = None
    false_match_rate: float | None = None
    auroc: float | None = None
    n_pairs: int = 0
    source: str = "default"
    method: str = "fused"

    def probability(self, cosine: np.ndarray, local: np.ndarray) -> np.ndarray:
        z = self.intercept + self.coef[0] * np.asarray(cosine) + self.coef[1] * np.log1p(np.maximum(local, 0))
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def fuse(self, cosine: np.ndarray, local: np.ndarray) -> np.ndarray:
        """P(same) of scored pairs: where ``cosine`` is finite (a pair that may be compared), -inf elsewhere."""
        mask = np.isfinite(cosine)
        return np.where(mask, self.probability(np.where(mask, cosine, 0.0), np.where(mask, local, 0.0)), -np.inf)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        d = dict(d)
        d["coef"] = tuple(d["coef"])
        d["uncertain_band"] = tuple(d.get("uncertain_band", (0.25, 0.75)))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


#: Set by hand between what ``calibrate`` fits on synthetic coats (where keypoints alone separate
#: perfectly) and on the real leopardtrails crops (where a wrong individual often gets a few verified
#: correspondences): P(same) = 0.5 at a keypoint score of about 5 for a cosine of 0.5. Real galleries should
#: fit their own with ``leopard_reid.calibrate`` (or ``leopard-reid calibrate``).
DEFAULT_CALIBRATION = Calibration(coef=(2.0, 4.5), intercept=-9.0, source="default")


@dataclass
class PairScores:
    """Per-exemplar scores for a batch of queries; ``-inf`` marks excluded or other-flank exemplars."""

    cosine: np.ndarray
    local: np.ndarray | None
    final: np.ndarray
    method: str = DEFAULT_METHOD
    extras: dict[str, Any] = field(default_factory=dict)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


class Matcher:
    """Scores queries against a gallery with the chosen method.

    ``Matcher(method="fused").fit(gallery)`` builds the keypoint index once; :meth:`scores` then scores
    any number of query batches. ``calibration`` defaults to the gallery's own (see :func:`calibrate`),
    else the built-in default.
    """

    def __init__(
        self,
        *,
        method: Method = DEFAULT_METHOD,
        shortlist: int = 20,
        side_aware: bool = True,
        calibration: Calibration | None = None,
        local_options: dict[str, Any] | None = None,
    ) -> None:
        _check_method(method)
        self.method = method
        self.shortlist = shortlist
        self.side_aware = side_aware
        self.calibration = calibration
        self.local_options = local_options or {}

    def fit(self, gallery: Gallery) -> Matcher:
        """Index the gallery (keypoints too, unless ``method="global"``); returns self."""
        if not len(gallery):
            raise GalleryError("the gallery is empty")
        self.gallery_ = gallery
        self.embeddings_ = gallery.embeddings
        self.labels_ = gallery.labels
        self.sides_ = gallery.sides
        self.local_: LocalMatcher | None = None
        if self.method != "global":
            feats = gallery.local
            if feats is None:
                raise GalleryError(
                    f"method {self.method!r} needs keypoint features, but this gallery was built without them; "
                    "rebuild it with local=True or use method='global'"
                )
            from .local import LocalMatcher

            opts = {"shortlist": self.shortlist, **self.local_options}
            self.local_ = LocalMatcher(**opts).fit(feats, labels=list(self.labels_))
        cal = self.calibration
        if cal is None and gallery.calibration:
            cal = Calibration.from_dict(gallery.calibration)
        self.calibration_ = cal or DEFAULT_CALIBRATION
        return self

    def _allowed(self, sides: Sequence[str]) -> np.ndarray | None:
        if not self.side_aware:
            return None
        q = np.asarray(sides, dtype=object)[:, None]
        g = self.sides_[None, :]
        return (q == "unknown") | (g == "unknown") | (q == g)

    def scores(self, features: Features, *, exclude: Sequence[int | None] | None = None) -> PairScores:
        """Score each valid query of ``features`` against every exemplar (rows of failed images are -inf)."""
        n, m = len(features), len(self.labels_)
        q = np.nan_to_num(features.embeddings.astype(np.float32))
        cosine = q @ self.embeddings_.T if m else np.zeros((n, 0), np.float32)
        cosine = cosine.astype(np.float64)
        mask = np.ones((n, m), dtype=bool)
        mask[~features.valid] = False
        allowed = self._allowed(features.sides or ["unknown"] * n)
        if allowed is not None:
            mask &= allowed
        if exclude is not None:
            for i, e in enumerate(exclude):
                if e is not None:
                    mask[i, e] = False
        cos_masked = np.where(mask, cosine, -np.inf)
        local = None
        if self.method != "global":
            assert self.local_ is not None
            if features.local is None:
                raise ValueError("the queries were described without keypoint features (local=True)")
            k = min(self.shortlist, m)
            cand = np.argpartition(-cos_masked, k - 1, axis=1)[:, :k] if k else np.zeros((n, 0), int)
            idx = np.flatnonzero(features.valid)
            from .local import LocalFeatures

            empty = LocalFeatures(np.zeros((0, 4), np.float32), np.zeros((0, 128), np.uint8), (1, 1))
            qfeats = [features.local[i] if features.local[i] is not None else empty for i in idx]
            local = np.zeros((n, m), dtype=np.float64)
            if len(idx):
                ex = [exclude[i] for i in idx] if exclude is not None else None
                cands = [[int(c) for c in cand[i] if mask[i, c]] for i in idx]
                local[idx] = self.local_.score_many(qfeats, exclude=ex, candidates=cands)
            local = np.where(mask, np.maximum(local, 0.0), -np.inf)
        if self.method == "global":
            final = cos_masked
        elif self.method == "local":
            final = local
        else:
            final = self.calibration_.fuse(cos_masked, local)
        return PairScores(cosine=cos_masked, local=local, final=final, method=self.method)

    def rank(self, scores: PairScores, *, top_k: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k identities per query from :meth:`scores`: ``(identities, scores, exemplar_indices)``."""
        s = scores.final
        return top_identities(s, self.embeddings_, self.labels_, top_k=top_k, scores=[(slice(0, len(s)), s)])

    def threshold(self, new_threshold: float | None) -> float | None:
        """The new-individual threshold in use: the one given, the calibrated one, or None."""
        if new_threshold is not None:
            return float(new_threshold)
        if self.method == "fused" or self.calibration_.method == self.method:
            return self.calibration_.threshold
        return None


def match(
    images: Iterable[ImageInput] | pd.DataFrame,
    gallery: Gallery,
    *,
    embedder: Embedder | None = None,
    method: Method = DEFAULT_METHOD,
    top_k: int = 5,
    new_threshold: float | None = None,
    root: str | os.PathLike | None = None,
    on_error: OnError = "raise",
    matcher: Matcher | None = None,
    chunk_size: int = 256,
) -> pd.DataFrame:
    """Match query images against a gallery; one row per query and rank.

    Columns: ``query`` (the path as given), ``rank`` (1..k), ``identity``, ``score`` (higher = more
    similar; P(same individual) for ``fused``), ``exemplar`` (the best gallery image of that identity),
    ``cosine`` and ``local`` (the two kinds of evidence; NaN where not computed), and ``decision``
    on the rank-1 row (``match`` or ``new``, when a threshold is known: ``new_threshold``, else the
    calibrated one for ``fused``; empty on lower ranks). Queries that could not be read are skipped with
    ``on_error="skip"`` (with a warning naming each file; ``result.attrs["errors"]`` lists them as
    :class:`~leopard_reid.ImageError`), else raise :class:`~leopard_reid.ImageError`.
    """
    from .embed import Embedder

    if embedder is None:
        embedder = Embedder(gallery.backbone or "efficientnet_lite0")
    gallery.check_embedder(embedder)
    matcher = matcher or Matcher(method=method).fit(gallery)
    records = as_records(images, root=root)
    thr = matcher.threshold(new_threshold)
    paths = gallery.metadata["path"].to_numpy(dtype=object)
    frames = []
    errors = []
    for start in range(0, len(records), chunk_size):
        chunk = records[start : start + chunk_size]
        feats = embedder.describe(chunk, local=matcher.method != "global", on_error=on_error)
        errors += feats.errors
        frames.append(_rows(matcher, feats, top_k=top_k, threshold=thr, paths=paths))
    result = pd.concat(frames, ignore_index=True) if frames else _rows(matcher, None, top_k=top_k,
                                                                         threshold=thr, paths=paths)
    result.attrs["errors"] = errors
    return result


def _rows(
    matcher: Matcher, feats: Features | None, *, top_k: int, threshold: float | None, paths: np.ndarray
) -> pd.DataFrame:
    cols = ["query", "rank", "identity", "score", "exemplar", "cosine", "local", "decision"]
    if feats is None or not feats.valid.any():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    ps = matcher.scores(feats)
    ids, sc, ex = matcher.rank(ps, top_k=top_k)
    rows = []
    for i in np.flatnonzero(feats.valid):
        decision = None
        if threshold is not None:
            decision = "match" if sc[i, 0] >= threshold else "new"
        for r in range(ids.shape[1]):
            if not math.isfinite(sc[i, r]):
                continue
            j = ex[i, r]
            rows.append(
                {
                    "query": feats.names[i],
                    "rank": r + 1,
                    "identity": ids[i, r],
                    "score": float(sc[i, r]),
                    "exemplar": paths[j],
                    "cosine": float(ps.cosine[i, j]),
                    "local": float(ps.local[i, j]) if ps.local is not None else float("nan"),
                    "decision": decision if r == 0 else None,
                }
            )
    return pd.DataFrame(rows, columns=cols)


def calibrate(
    gallery: Gallery,
    *,
    method: Method = DEFAULT_METHOD,
    max_false_match: float | None = None,
    shortlist: int = 20,
) -> Calibration:
    """Fit the fusion and the new-individual threshold on a labelled gallery, leave-one-out.

    Each exemplar whose identity has another exemplar is a query: pairs with its top candidates (same or
    different individual) fit the logistic fusion; then each query is scored twice, with its identity
    present (a known animal) and with all its other exemplars removed (a new animal), which gives the
    threshold (balanced error, or the lowest with false-match rate <= ``max_false_match``) and its
    expected false-new / false-match rates. Store the result with ``gallery.calibration = cal.to_dict()``.
    """
    from sklearn.metrics import roc_auc_score

    from .embed import Features

    _check_method(method)
    n = len(gallery)
    labels = gallery.labels
    matcher = Matcher(method=method, shortlist=shortlist).fit(gallery)
    feats = Features(
        names=list(gallery.metadata["path"].astype(str)),
        embeddings=gallery.embeddings.copy(),
        local=gallery.local,
        valid=np.ones(n, bool),
        sides=list(gallery.sides),
    )
    ps = matcher.scores(feats, exclude=list(range(n)))
    same = labels[:, None] == labels[None, :]
    queries = np.flatnonzero(same.sum(1) > 1)
    if len(queries) < 2:
        raise GalleryError("calibration needs at least two identities with two or more exemplars")
    coef, intercept = DEFAULT_CALIBRATION.coef, DEFAULT_CALIBRATION.intercept
    n_pairs = 0
    if method == "fused":
        x, y = pair_features(ps, labels, queries, shortlist=shortlist)
        n_pairs = len(y)
        coef, intercept = fit_fusion(x, y)
        # re-fuse the stored evidence; keypoint scoring is not repeated
        ps.final = Calibration(coef=coef, intercept=intercept).fuse(ps.cosine, ps.local)
    final = ps.final
    known = np.array([np.max(final[i]) for i in queries])
    new = np.array([np.max(np.where(same[i], -np.inf, final[i])) for i in queries])
    y_true = np.r_[np.ones(len(known)), np.zeros(len(new))]
    s_all = np.r_[known, new]
    auroc = float(roc_auc_score(y_true, s_all))
    best_t = _best_threshold(known, new, max_false_match=max_false_match, default=0.5)
    fnr, fmr = float(np.mean(known < best_t)), float(np.mean(new >= best_t))
    lo = float(np.quantile(new, 0.5)) if len(new) else best_t
    hi = float(np.quantile(known, 0.5)) if len(known) else best_t
    return Calibration(
        coef=coef,
        intercept=intercept,
        threshold=best_t,
        uncertain_band=(min(lo, best_t), max(hi, best_t)),
        false_new_rate=fnr,
        false_match_rate=fmr,
        auroc=auroc,
        n_pairs=n_pairs,
        source=f"calibrate(method={method!r}) on {n} exemplars",
        method=method,
    )


def _best_threshold(
    known: np.ndarray, new: np.ndarray, *, max_false_match: float | None = None, default: float
) -> float:
    """The new-individual threshold from the top scores of queries whose individual is known and of new ones.

    Candidates are the lowest finite score and the midpoints between consecutive distinct ones (a clean gap
    is split down the middle, not placed on a score); the pick has the lowest balanced error, or with
    ``max_false_match`` the lowest false-new rate among those within it; ties go to the lowest. A query is
    called known when its score is ``>=`` the threshold. ``default`` when no score is finite. Shared by
    :func:`calibrate` and :func:`~leopard_reid.evaluate_open_set` so both report the same rule.
    """
    known, new = np.asarray(known, dtype=np.float64), np.asarray(new, dtype=np.float64)
    s_all = np.r_[known, new]
    u = np.unique(s_all[np.isfinite(s_all)])
    cands = np.r_[u[:1], (u[1:] + u[:-1]) / 2] if len(u) > 1 else u
    best_t, best_err = float(cands[0]) if len(cands) else default, math.inf
    for t in cands:
        fnr, fmr = float(np.mean(known < t)), float(np.mean(new >= t))
        if max_false_match is not None:
            if fmr <= max_false_match and fnr < best_err:
                best_t, best_err = float(t), fnr
        elif (fnr + fmr) / 2 < best_err:
            best_t, best_err = float(t), (fnr + fmr) / 2
    return best_t


def pair_features(
    scores: PairScores, labels: np.ndarray, queries: np.ndarray, *, shortlist: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Training pairs for the fusion: each query with its top candidates (by keypoint score and by cosine)
    and all its true matches. Returns ``x`` = (cosine, log1p(local)) per pair and ``y`` = same individual."""
    x, y, _ = _query_pairs(scores, labels, queries, shortlist=shortlist)
    return x, y


def _query_pairs(
    scores: PairScores, labels: np.ndarray, queries: np.ndarray, *, shortlist: int = 20
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pair_features` plus the query (row of ``scores``) of each pair, in the order of ``queries``:
    computed once, the pairs of any subset of the queries are a row mask (cross-fitting needs no rescoring)."""
    labels = np.asarray(labels, dtype=object)
    xs, ys, owners = [], [], []
    for i in queries:
        valid = np.isfinite(scores.cosine[i])
        same = (labels == labels[i]) & valid
        same[i] = False
        by_local = np.argsort(-np.where(valid, scores.local[i], -np.inf))[:shortlist]
        by_cos = np.argsort(-scores.cosine[i])[:shortlist]
        pairs = np.unique(np.r_[by_local, by_cos, np.flatnonzero(same)])
        pairs = pairs[valid[pairs] & (pairs != i)]
        xs.append(np.c_[scores.cosine[i, pairs], np.log1p(np.maximum(scores.local[i, pairs], 0))])
        ys.append(same[pairs])
        owners.append(np.full(len(pairs), i, dtype=np.int64))
    if not xs:
        return np.zeros((0, 2)), np.zeros(0, bool), np.zeros(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(owners)


def fit_fusion(x: np.ndarray, y: np.ndarray) -> tuple[tuple[float, float], float]:
    """Logistic regression of same/different on (cosine, log1p(local)); returns ``(coef, intercept)``."""
    from sklearn.linear_model import LogisticRegression

    if y.all() or not y.any():
        raise GalleryError("calibration needs both same- and different-individual pairs")
    lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000).fit(x, y)
    return (float(lr.coef_[0, 0]), float(lr.coef_[0, 1])), float(lr.intercept_[0])
