"""Tests for leopard_reid._parallel: the one thread map the keypoint search and verification share."""

from __future__ import annotations

import os
import threading

import pytest

from leopard_reid._parallel import n_threads, thread_map


@pytest.mark.parametrize("n_jobs", [1, 2, 3, None])
def test_thread_map_keeps_the_order_of_the_items(n_jobs) -> None:
    items = list(range(50))
    assert thread_map(lambda x: x * x, items, n_jobs) == [x * x for x in items]
    assert thread_map(lambda x: x, [], n_jobs) == []


def test_thread_map_runs_on_the_threads_asked_for() -> None:
    barrier = threading.Barrier(2, timeout=10)  # both items must be in flight at once, or this times out

    def meet(x: int) -> str:
        barrier.wait()
        return threading.current_thread().name

    names = thread_map(meet, [0, 1], 2)
    assert len(set(names)) == 2 and threading.current_thread().name not in names
    assert thread_map(lambda x: threading.current_thread().name, [0, 1], 1) == [threading.current_thread().name] * 2


def test_n_threads_is_bounded_by_the_work() -> None:
    assert n_threads(8, 3) == 3
    assert n_threads(2, 0) == 1
    assert n_threads(None, 10_000) == (os.cpu_count() or 1)  # None: every core
