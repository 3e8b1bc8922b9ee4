"""One way to spread work over threads: :func:`thread_map`, for the numpy / OpenCV work that releases the GIL
(the keypoint index searches, pairwise verification)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def n_threads(n_jobs: int | None, n_items: int) -> int:
    """Threads to use for ``n_items`` pieces of work: ``n_jobs`` (None: every core), never more than the pieces."""
    return max(1, min(n_jobs or os.cpu_count() or 1, n_items))


def thread_map(fn: Callable[[T], R], items: Sequence[T], n_jobs: int | None) -> list[R]:
    """``[fn(x) for x in items]``, in order, on up to ``n_jobs`` threads (one thread: in this one, no pool)."""
    n = n_threads(n_jobs, len(items))
    if n == 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(fn, items))
