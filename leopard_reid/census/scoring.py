"""Scoring detections against the gallery: :class:`ChunkScores` and :func:`score_chunk`, the unit of work of a
census (run in this process or on a Dask worker by :mod:`leopard_reid.distributed`), and the check of a
new-individual threshold against the method's score scale. :func:`_score_detections` is the pipeline's
scoring stage: every detection, chunk by chunk, with progress.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._memory import release_free_memory
from .results import CensusError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..embed import Embedder
    from ..gallery import Gallery
    from ..io import ImageError


@dataclass
class ChunkScores:
    """A chunk of detections scored against the gallery: what the census keeps of it (small, picklable)."""

    best: np.ndarray  # (n, identities) best score per identity
    arg: np.ndarray  # (n, identities) the exemplar achieving it
    valid: np.ndarray
    errors: list[ImageError]
    # chunk row -> (embedding, keypoints) of every readable detection: clustering new individuals and the
    # review page reuse them (a crop is described once per census)
    kept: dict[int, tuple[np.ndarray, Any]]


def score_chunk(
    embedder: Embedder, matcher: Any, by_identity: Any, recs: list[Any], *, keypoints: Mapping[str, Any] | None = None
) -> ChunkScores:
    """Describe a chunk of detection records and score it against the fitted matcher. A pure function of its
    records (the unit of work of a census, in one process or on a Dask worker); every readable detection's
    features are kept. ``keypoints``: extractor options for the detections (default: the library's)."""
    import numpy as np

    from ..io import quiet_warnings

    with quiet_warnings():  # skipped crops go to errors.csv (a Dask worker may score chunks on several threads)
        local = (dict(keypoints) if keypoints else True) if matcher.method != "global" else False
        feats = embedder.describe(recs, local=local, on_error="skip")
    n, k = len(recs), len(by_identity)
    res = ChunkScores(best=np.full((n, k), -np.inf, np.float32), arg=np.zeros((n, k), np.int64),
                      valid=feats.valid.copy(), errors=list(feats.errors), kept={})
    if not feats.valid.any():
        return res
    ps = matcher.scores(feats)
    best, arg = by_identity.best(np.where(np.isfinite(ps.final), ps.final, -np.inf))  # a NaN never wins
    res.best[:], res.arg[:] = best, arg
    for j in np.flatnonzero(feats.valid):
        res.kept[int(j)] = (feats.embeddings[j].copy(), feats.local[j] if feats.local is not None else None)
    return res


#: The score range of each method, for checking a threshold before anything is scored.
_SCALES = {"fused": (0.0, 1.0), "global": (-1.0, 1.0), "local": (0.0, math.inf)}


def _check_threshold(method: str, threshold: float | None) -> None:
    if method not in _SCALES:
        raise CensusError(f"unknown method {method!r}; choose one of {', '.join(_SCALES)}")
    if threshold is None:
        return
    lo, hi = _SCALES[method]
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and lo <= threshold <= hi):
        scale = {"fused": "a probability P(same) between 0 and 1", "global": "a cosine between -1 and 1",
                 "local": "a keypoint score >= 0"}[method]
        raise CensusError(f"new_threshold {threshold!r} is off the {method} method's scale ({scale})")


def below_threshold(best: Any, thr: float) -> Any:
    """Where a best score (a detection's, or a burst's pooled) calls for a new individual: not at or above the
    threshold (a NaN or -inf score included). The scoring stage keeps these detections' keypoints in memory
    and the decision stage clusters these bursts: one rule for both."""
    import numpy as np

    return ~(np.asarray(best) >= thr)


def _say(text: str) -> None:
    import sys

    print(text, file=sys.stderr, flush=True)


#: Detections per saved chunk (at most; ``chunk_size`` when smaller): here a census resumes at most this many
#: detections before where it stopped. On Dask the chunks are sized for the workers (``chunk_size_for``).
SAVE_EVERY = 16


@dataclass(frozen=True)
class MatcherSettings:
    """What the census keeps of the gallery's fitted matcher once every detection is scored: its method,
    calibration and shortlist (clustering new individuals fits a matcher of its own with them). The fitted
    matcher itself would hold the gallery's index through clustering and the review page: about 1 GB of
    kd-trees for the 1.94 M descriptors of a 10k season's gallery."""

    method: str
    calibration_: Any
    shortlist: int


@dataclass
class _Scored:
    """The scoring stage's result: per detection and known identity, the best score and its exemplar, which
    detections could be read, and the features of the unmatched ones (for clustering new individuals)."""

    matcher: MatcherSettings
    thr: float
    lo: float  # the uncertain band [lo, hi) around thr (lo == hi == thr without a calibrated band)
    hi: float
    id_names: Any
    per_id: np.ndarray
    per_ex: np.ndarray
    valid: np.ndarray
    kept_emb: dict[int, np.ndarray]  # every readable detection's embedding
    # keypoints of the readable detections below the threshold: on disk (``keypoint_file``) with saved chunks
    kept_local: dict[int, Any]
    state: Any = None  # the saved chunks (.state.ChunkState), where the other detections' keypoints are
    spans: Any = None  # (first row, end row) of each saved chunk
    keypoint_file: Any = None  # the unmatched detections' keypoints (..local.store.FeatureFile), scratch

    def close(self) -> None:
        """Delete the scratch file of the unmatched detections' keypoints (their handles can no longer be read)."""
        if self.keypoint_file is not None:
            self.keypoint_file.close()

    def local_features(self, rows: Any) -> Any:
        """Keypoints of detections ``rows[r]`` by ``r`` (the review page's rows), described once: from memory,
        else from their saved chunk."""
        from .state import StoredFeatures

        return StoredFeatures(self.kept_local, self.state, self.spans or [], rows)


def _score_detections(
    meta: pd.DataFrame, gallery: Gallery, embedder: Embedder | None, *, from_file: bool, method: str,
    new_threshold: float | None, chunk_size: int, show: bool, lines: bool, client: Any, t0: float,
    out: Any = None, resume: bool = True, keypoints: Mapping[str, Any] | None = None,
) -> tuple[_Scored, list[ImageError]]:
    """Describe the detections in chunks (here, or on ``client``'s Dask workers) and score them against the
    gallery. Returns the scores and the skipped crops, in detection order. ``show``: a progress bar;
    ``lines``: a plain line per chunk instead (pipelines and logs). ``out``: the census folder; each scored
    chunk is then saved under ``out/.census-state`` as it finishes (:mod:`.state`) and, with ``resume``, the
    chunks a previous run with the same inputs finished are read back instead of scored again. ``keypoints``:
    extractor options for the detections."""
    from pathlib import Path

    import numpy as np
    from tqdm.auto import tqdm

    from ..embed import Embedder
    from ..gallery import IdentityGroups as _IdentityGroups
    from ..matching import Matcher

    n = len(meta)
    if embedder is None:
        embedder = Embedder(gallery.backbone or "efficientnet_lite0", progress=False)
    gallery.check_embedder(embedder)
    matcher = Matcher(method=method).fit(gallery)  # type: ignore[arg-type]
    thr, lo, hi = _thresholds(matcher, method, new_threshold)
    by_identity = _IdentityGroups(matcher.labels_)
    id_names = by_identity.names
    settings = MatcherSettings(method=matcher.method, calibration_=matcher.calibration_, shortlist=matcher.shortlist)
    sc = _Scored(matcher=settings, thr=thr, lo=lo, hi=hi, id_names=id_names,
                 per_id=np.full((n, len(id_names)), -np.inf, np.float32),
                 per_ex=np.zeros((n, len(id_names)), np.int64), valid=np.zeros(n, bool), kept_emb={}, kept_local={})
    state = None
    if out is not None and n:
        from .state import ChunkState, state_key

        state = ChunkState.open(Path(out), state_key(meta, gallery, embedder, method, keypoints), resume=resume)
        sc.keypoint_file = state.keypoint_file()
    bar = tqdm(total=n, desc="census", unit="det", disable=not show)
    sc.state = state

    def keep(start: int, res: ChunkScores) -> None:
        """Store a scored chunk: per-identity bests, and every readable detection's features."""
        idx = np.arange(start, start + len(res.valid))
        sc.per_id[idx] = res.best
        sc.per_ex[idx] = res.arg
        sc.valid[idx] = res.valid
        chunk_errors[start] = res.errors
        below = below_threshold(res.best.max(axis=1), thr) if res.best.shape[1] else np.ones(len(res.valid), bool)
        for j, (emb, loc) in res.kept.items():
            sc.kept_emb[start + j] = emb
            # keypoints are kept only where clustering may need them (a detection at or above the threshold
            # is never in an unmatched burst), and on disk with saved chunks: read as needed, a few at a time
            # (a 10k season's are about 1.2 GB); the others' are read back from their chunk file
            if loc is not None and (state is None or below[j]):
                sc.kept_local[start + j] = loc if sc.keypoint_file is None else sc.keypoint_file.append(loc)

    def finished(start: int, res: ChunkScores, *, counted: bool = False) -> None:
        """Save a scored chunk (resumable) and keep it; ``counted``: the bar already moved for it."""
        if state is not None:
            state.save(start, start + len(res.valid), res)
        keep(start, res)
        release_free_memory()  # describing and verifying free megabytes per crop into per-thread arenas
        if not counted:
            bar.update(len(res.valid))

    chunk_errors: dict[int, list[ImageError]] = {}  # by first row: errors.csv in detection order, as chunks finish
    size = min(chunk_size, SAVE_EVERY)  # a killed census loses at most one small chunk
    if client is not None:
        from ..distributed import chunk_size_for

        size = chunk_size_for(n, len(client.scheduler_info(n_workers=-1).get("workers", {})) or 1, most=chunk_size)
    starts = list(range(0, n, size))
    sc.spans = [(s, min(n, s + size)) for s in starts]
    todo = _resume(state, sc.spans, keep, bar)
    if client is not None and todo:
        from ..distributed import census_scores

        census_scores(embedder, [_records(meta.iloc[s : s + size]) for s in todo],
                      gallery=gallery, from_file=from_file, method=method, client=client, keypoints=keypoints,
                      on_result=lambda i, res: finished(todo[i], res))
    for start in todo if client is None else []:
        if lines and start:
            _say(f"census: {start}/{n} detections scored ({time.perf_counter() - t0:.0f} s)")
        part = meta.iloc[start : start + size]
        # on a terminal the bar moves per detection (keypoint extraction, per crop anyway, dominates the cost)
        step = 1 if show else size
        pieces = []
        for s in range(0, len(part), step):
            pieces.append(score_chunk(embedder, matcher, by_identity, _records(part.iloc[s : s + step]),
                                      keypoints=keypoints))
            bar.update(len(pieces[-1].valid))
        finished(start, _concat(pieces, step), counted=True)
    bar.close()
    del matcher, by_identity  # the gallery's index (about 1 GB of kd-trees at a 10k season's gallery) ...
    release_free_memory()  # ... back to the system before clustering allocates its own
    return sc, [e for s in sorted(chunk_errors) for e in chunk_errors[s]]


def _thresholds(matcher: Any, method: str, new_threshold: float | None) -> tuple[float, float, float]:
    """(threshold, low, high): known at or above the threshold; with the fused default, the calibration's
    uncertain band (widened to include the threshold) marks the decisions a person should check."""
    thr = matcher.threshold(new_threshold)
    if thr is None:
        raise ValueError(f"method {method!r} has no calibrated threshold: give new_threshold")
    if method == "fused" and new_threshold is None:
        lo, hi = matcher.calibration_.uncertain_band
        return thr, min(lo, thr), max(hi, thr)
    return thr, thr, thr


def _records(part: pd.DataFrame) -> list[Any]:
    """The detections of ``part`` as :class:`~leopard_reid.io.Record` (what describing reads)."""
    from pathlib import Path

    from ..io import Record

    return [Record(name=p, source=Path(s), bbox=tuple(b), side=sd)
            for p, s, b, sd in zip(part["path"], part["source"], part["bbox"], part["side"])]


def _resume(state: Any, spans: list[tuple[int, int]], keep: Any, bar: Any) -> list[int]:
    """Read back the chunks a previous run with the same inputs finished; returns the starts still to score."""
    todo = []
    for start, stop in spans:
        res = state.load(start, stop) if state is not None and state.has(start, stop) else None
        if res is None:
            todo.append(start)
        else:
            keep(start, res)
            bar.update(len(res.valid))
    if len(todo) < len(spans):
        _say(f"census: resuming: {len(spans) - len(todo)} of {len(spans)} chunks already scored "
             f"({state.dir}), {len(todo)} to score")
    return todo


def _concat(pieces: list[ChunkScores], step: int) -> ChunkScores:
    """One chunk's scores from consecutive pieces of ``step`` detections."""
    import numpy as np

    if len(pieces) == 1:
        return pieces[0]
    return ChunkScores(
        best=np.concatenate([p.best for p in pieces]), arg=np.concatenate([p.arg for p in pieces]),
        valid=np.concatenate([p.valid for p in pieces]), errors=[e for p in pieces for e in p.errors],
        kept={k * step + j: f for k, p in enumerate(pieces) for j, f in p.kept.items()})
