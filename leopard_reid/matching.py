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

import json
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .calibration import DEFAULT_CALIBRATION, Calibration
from .gallery import Gallery, GalleryError, top_identities
from .io import ImageInput, OnError, as_records

if TYPE_CHECKING:
    from .embed import Embedder, Features
    from .local import LocalMatcher

__all__ = ["METHODS", "Matcher", "PairScores", "match"]

Method = Literal["global", "local", "fused"]
METHODS: tuple[str, ...] = ("global", "local", "fused")
DEFAULT_METHOD: Method = "fused"


@dataclass
class PairScores:
    """Per-exemplar scores for a batch of queries; ``-inf`` marks excluded or other-flank exemplars."""

    cosine: np.ndarray
    local: np.ndarray | None
    final: np.ndarray
    method: str = DEFAULT_METHOD
    extras: dict[str, Any] = field(default_factory=dict)


def check_method(method: str) -> None:
    """Raise ``ValueError`` naming the choices unless ``method`` is one of :data:`METHODS`."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


class Matcher:
    """Scores queries against a gallery with the chosen method.

    ``Matcher(method="fused").fit(gallery)`` builds the keypoint index once; :meth:`scores` then scores
    any number of query batches. ``calibration`` defaults to the gallery's own (see :func:`calibrate`),
    else the built-in default. With ``size_correction`` (the default), fused P(same) in a gallery of more
    identities than the calibration was fitted on has its odds discounted in proportion
    (:meth:`Calibration.for_identities`); ``size_correction=False`` gives the calibration's pairwise P.
    """

    def __init__(
        self,
        *,
        method: Method = DEFAULT_METHOD,
        shortlist: int = 20,
        side_aware: bool = True,
        calibration: Calibration | None = None,
        local_options: dict[str, Any] | None = None,
        size_correction: bool = True,
    ) -> None:
        check_method(method)
        self.method = method
        self.shortlist = shortlist
        self.side_aware = side_aware
        self.calibration = calibration
        self.local_options = local_options or {}
        self.size_correction = size_correction

    def fit(self, gallery: Gallery) -> Matcher:
        """Index the gallery (keypoints too, unless ``method="global"``); returns self."""
        if not len(gallery):
            raise GalleryError("the gallery is empty")
        self.gallery_ = gallery
        self.embeddings_ = gallery.embeddings
        self.labels_ = gallery.labels
        self.n_identities_ = len(set(self.labels_.tolist()))
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
        if cal is not None and self.method == "fused" and cal.method != "fused":
            raise ValueError(
                f"a calibration fitted for method {cal.method!r} cannot decide fused P(same): its threshold is on "
                f"the {cal.method} score's scale; calibrate with method='fused'"
            )
        if cal is None:
            stored = gallery.calibration_for(self.method)
            cal = Calibration.from_dict(stored) if stored else None
            if stored and stored.get("stale"):
                warnings.warn(f"the gallery's {self.method} calibration predates changes to its exemplars "
                              f"({stored['stale']}): run leopard-reid calibrate again", stacklevel=2)
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
            cal = self.calibration_.for_identities(self.n_identities_) if self.size_correction else self.calibration_
            final = cal.fuse(cos_masked, local)
        return PairScores(cosine=cos_masked, local=local, final=final, method=self.method)

    def rank(self, scores: PairScores, *, top_k: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k identities per query from :meth:`scores`: ``(identities, scores, exemplar_indices)``."""
        s = scores.final
        return top_identities(s, self.embeddings_, self.labels_, top_k=top_k, scores=[(slice(0, len(s)), s)])

    def threshold(self, new_threshold: float | None) -> float | None:
        """The new-individual threshold in use: the one given, the calibrated one, or None."""
        if new_threshold is not None:
            return float(new_threshold)
        if self.calibration_.method == self.method:  # a calibration decides only the method it was fitted for
            return self.calibration_.threshold
        return None


_EMBEDDERS: dict[str, Embedder] = {}


def _default_embedder(backbone: str) -> Embedder:
    """One default embedder per backbone in this process (``match`` in a loop loads the model once)."""
    from .embed import Embedder

    if backbone not in _EMBEDDERS:
        _EMBEDDERS[backbone] = Embedder(backbone)
    return _EMBEDDERS[backbone]


def _fitted_matcher(gallery: Gallery, method: str) -> Matcher:
    """A matcher fitted on ``gallery``, reused while the gallery's exemplars, names and calibration are the same
    (``match`` in a loop builds the keypoint index once; any edit of the gallery builds a fresh one)."""
    key = (method, id(gallery._emb), len(gallery), hash(tuple(gallery.labels)), hash(tuple(gallery.sides)),
           repr(gallery.calibration_for(method)))
    cache = gallery._matchers  # kept on the gallery: it goes when the gallery goes
    if key not in cache:
        cache.clear()
        cache[key] = Matcher(method=method).fit(gallery)  # type: ignore[arg-type]
    return cache[key]


#: Columns of :func:`match` (in order).
MATCH_COLUMNS = ["query", "rank", "identity", "score", "exemplar", "exemplar_index", "exemplar_bbox", "cosine",
                 "local", "decision", "reason"]


def match(
    images: Iterable[ImageInput] | pd.DataFrame,
    gallery: Gallery,
    *,
    embedder: Embedder | None = None,
    method: Method | None = None,
    top_k: int = 5,
    new_threshold: float | None = None,
    root: str | os.PathLike | None = None,
    on_error: OnError = "raise",
    matcher: Matcher | None = None,
    chunk_size: int = 256,
    client: Any = None,
) -> pd.DataFrame:
    """Match query images against a gallery; one row per query and rank, and a rank-1 row for *every* input.

    Columns (:data:`MATCH_COLUMNS`): ``query`` (the path as given), ``rank`` (1..k), ``identity``, ``score``
    (higher = more similar; P(same individual) for ``fused``), ``exemplar`` (the best gallery image of that
    identity), ``exemplar_index`` (its row in ``gallery.metadata``) and ``exemplar_bbox`` (``[x, y, w, h]``
    or empty), ``cosine`` and ``local`` (the two kinds of evidence; NaN where not computed), ``decision`` on
    the rank-1 row (``match`` or ``new`` when a threshold is known: ``new_threshold``, else the calibration
    fitted for this method; ``unreadable`` for an image that could not be read), and ``reason`` (why a
    query is new without a candidate, or why it was unreadable). A query with no comparable exemplar (a right
    flank against a gallery of left flanks) gets one row, ``new``, with the reason. Unreadable queries raise
    :class:`~leopard_reid.ImageError`, or with ``on_error="skip"`` get their row (with a warning, and
    ``result.attrs["errors"]``). ``matcher``: a :class:`Matcher` fitted on ``gallery`` (its method must
    agree with ``method``); by default one is fitted once per gallery and method and reused, as is the
    default embedder of the gallery's backbone. ``client``: a ``distributed.Client`` to describe each chunk of
    queries on its workers (scoring stays here).
    """
    if not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be a whole number >= 1, not {top_k!r}")
    if matcher is not None:
        if method is not None and method != matcher.method:
            raise ValueError(f"method={method!r} disagrees with the given matcher's method {matcher.method!r}")
        if getattr(matcher, "gallery_", None) is not gallery:
            raise ValueError("the given matcher was not fitted on this gallery: use Matcher(...).fit(gallery)")
    method = method or (matcher.method if matcher is not None else DEFAULT_METHOD)  # type: ignore[assignment]
    check_method(method)  # type: ignore[arg-type]
    records = as_records(images, root=root)  # a bad table is refused before any model is loaded
    if embedder is None:
        embedder = _default_embedder(gallery.backbone or "efficientnet_lite0")
    gallery.check_embedder(embedder)
    matcher = matcher or _fitted_matcher(gallery, method)  # type: ignore[arg-type]
    thr = matcher.threshold(new_threshold)
    meta = gallery.metadata
    frames = []
    errors = []
    for start in range(0, len(records), chunk_size):
        chunk = records[start : start + chunk_size]
        feats = embedder.describe(chunk, local=matcher.method != "global", on_error=on_error, client=client)
        errors += feats.errors
        frames.append(_rows(matcher, feats, chunk, top_k=top_k, threshold=thr, meta=meta))
    result = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {c: pd.Series(dtype=object) for c in MATCH_COLUMNS})
    result.attrs["errors"] = errors
    return result


def _error_reasons(feats: Features, records: Sequence[Any]) -> list[str]:
    """The reason each unreadable input of ``feats`` failed (matched to its error by path, else in order)."""
    by_path = {str(e.path): e.reason for e in feats.errors}
    unmatched = iter([e.reason for e in feats.errors])
    reasons = []
    for i in np.flatnonzero(~feats.valid):
        src = records[i].source if i < len(records) else None
        reason = by_path.get(str(src)) or by_path.get(str(feats.names[i]))
        reasons.append(reason or next(unmatched, "could not be read"))
    return reasons


def _no_candidate_reason(matcher: Matcher, side: str) -> str:
    if matcher.side_aware and side in ("left", "right"):
        return (f"no comparable exemplar: the gallery has no {side} (or unknown) flank, and left and right "
                "coats are different patterns")
    return "no comparable exemplar in the gallery"


def _rows(
    matcher: Matcher, feats: Features, records: Sequence[Any], *, top_k: int, threshold: float | None,
    meta: pd.DataFrame,
) -> pd.DataFrame:
    """The result rows of one chunk, in input order: top-k per readable query, one row per other input."""
    paths = meta["path"].to_numpy(dtype=object)
    boxes = meta["bbox"].tolist()
    n = len(feats)
    per_query: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    for i, reason in zip(np.flatnonzero(~feats.valid), _error_reasons(feats, records)):
        per_query[i].append(_row(feats.names[i], decision="unreadable", reason=reason))
    if feats.valid.any():
        ps = matcher.scores(feats)
        ids, sc, ex = matcher.rank(ps, top_k=top_k)
        sides = feats.sides or ["unknown"] * n
        for i in np.flatnonzero(feats.valid):
            decision = None
            if threshold is not None:
                decision = "match" if sc[i, 0] >= threshold else "new"
            for r in range(ids.shape[1]):
                if not math.isfinite(sc[i, r]):
                    continue
                j = int(ex[i, r])
                per_query[i].append(_row(
                    feats.names[i], rank=r + 1, identity=ids[i, r], score=float(sc[i, r]), exemplar=paths[j],
                    exemplar_index=j, exemplar_bbox=json.dumps(list(boxes[j])) if boxes[j] is not None else "",
                    cosine=float(ps.cosine[i, j]),
                    local=float(ps.local[i, j]) if ps.local is not None else float("nan"),
                    decision=decision if r == 0 else None,
                ))
            if not per_query[i]:
                per_query[i].append(_row(feats.names[i], decision="new",
                                         reason=_no_candidate_reason(matcher, str(sides[i]))))
    rows = [r for q in per_query for r in q]
    return pd.DataFrame(rows, columns=MATCH_COLUMNS)


def _row(query: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"query": query, "rank": 1, "identity": None, "score": float("nan"), "exemplar": None,
                           "exemplar_index": -1, "exemplar_bbox": "", "cosine": float("nan"),
                           "local": float("nan"), "decision": None, "reason": ""}
    row.update(values)
    return row


#: Fewest leave-one-out queries (photos with a second photo of the same individual and flank) a fusion is fitted
#: on; below this the built-in default stays in use (a fit on a handful of pairs made things worse).
