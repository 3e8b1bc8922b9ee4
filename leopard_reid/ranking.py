"""Search kernels: blocked query-by-exemplar scores, reduced to a ranking of identities.

A gallery holds several exemplars per identity; a query is ranked against identities by its best exemplar.
:class:`IdentityGroups` does that reduction without a Python loop over identities, and is shared by
:func:`top_identities`, the census and the Dask workers so all group exemplars and break ties the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

__all__ = ["IdentityGroups", "search_scores", "top_identities"]


def search_scores(
    query: np.ndarray, gallery: np.ndarray, *, block_size: int | None = None
) -> Iterable[tuple[slice, np.ndarray]]:
    """Yield ``(rows, scores)`` blocks of ``query @ gallery.T``.

    A block holds at most a quarter of the gallery's own size in scores (and at most 16 M), so searching
    never needs much more memory than the gallery itself.
    """
    n = max(1, gallery.shape[0])
    budget = max(1 << 18, min(1 << 24, gallery.size // 4))
    step = block_size or max(1, budget // n)
    for start in range(0, query.shape[0], step):
        rows = slice(start, min(start + step, query.shape[0]))
        yield rows, query[rows] @ gallery.T


class IdentityGroups:
    """The exemplars of each identity, to reduce per-exemplar scores to per-identity ones (best exemplar).

    ``names`` are the identities, sorted: column ``k`` of :meth:`best` is ``names[k]``. Shared by
    :func:`top_identities` and the census, so both group exemplars and break ties the same way.
    """

    def __init__(self, labels: np.ndarray) -> None:
        codes, uniques = pd.factorize(pd.Series(labels, dtype=object), sort=True)
        self.names: np.ndarray = uniques.to_numpy(dtype=object)
        self._order = np.argsort(codes, kind="stable")  # exemplars by identity, gallery order within one
        self._starts = np.flatnonzero(np.r_[True, np.diff(codes[self._order]) != 0])
        self._sizes = np.diff(np.r_[self._starts, len(self._order)])

    def __len__(self) -> int:
        return len(self.names)

    def best(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(n, n_identities)`` best score per identity and the exemplar index achieving it.

        Like ``max`` and ``argmax`` over each identity's exemplars (the first exemplar wins a tie, a NaN
        wins its identity), without a Python loop over identities.
        """
        s = scores[:, self._order]
        best = np.maximum.reduceat(s, self._starts, axis=1)
        at_best = (s == np.repeat(best, self._sizes, axis=1)) | np.isnan(s)
        first = np.minimum.reduceat(np.where(at_best, np.arange(s.shape[1]), s.shape[1]), self._starts, axis=1)
        return best, self._order[first]


def top_identities(
    query: np.ndarray,
    gallery: np.ndarray,
    labels: np.ndarray,
    *,
    top_k: int = 5,
    block_size: int | None = None,
    scores: Iterable[tuple[slice, np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k identities per query by best exemplar score, blocked.

    Returns ``(identities, scores, exemplar_indices)``, each ``(n_queries, k)`` with ``k = min(top_k,
    n_identities)``. ``scores`` may supply precomputed score blocks (e.g. fused scores) instead of cosine.
    """
    groups = IdentityGroups(labels)
    n_ids = len(groups)
    k = min(top_k, n_ids)
    nq = query.shape[0]
    out_ids = np.empty((nq, k), dtype=np.int64)
    out_scores = np.empty((nq, k), dtype=np.float32)
    out_ex = np.empty((nq, k), dtype=np.int64)
    blocks = scores if scores is not None else search_scores(query, gallery, block_size=block_size)
    for rows, s in blocks:
        per_id, per_ex = groups.best(s)
        if k < n_ids:
            part = np.argpartition(-per_id, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(n_ids), per_id.shape).copy()
        part_scores = np.take_along_axis(per_id, part, axis=1)
        o = np.argsort(-part_scores, axis=1, kind="stable")
        top = np.take_along_axis(part, o, axis=1)
        out_ids[rows] = top
        out_scores[rows] = np.take_along_axis(part_scores, o, axis=1)
        out_ex[rows] = np.take_along_axis(per_ex, top, axis=1)
    return groups.names[out_ids], out_scores, out_ex
