"""Tests for leopard_reid._memory: freed memory given back to the system."""

from __future__ import annotations

import sys

import pytest

from leopard_reid._memory import _malloc_trim, release_free_memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


@pytest.mark.skipif(not sys.platform.startswith("linux") or _malloc_trim() is None, reason="glibc only")
def test_freed_pages_held_by_the_allocator_are_given_back() -> None:
    """Many small blocks freed around a few survivors leave the heap's pages free but resident; trimming
    returns them (glibc keeps them otherwise)."""
    blocks = [bytearray(4000) for _ in range(60_000)]  # about 240 MB on the heap, in small chunks
    for b in blocks:
        b[::4096] = b"x" * len(b[::4096])  # touched: resident
    survivors = blocks[::200]
    del blocks
    before = _rss_bytes()
    release_free_memory()
    after = _rss_bytes()
    assert before - after > 100e6, (before, after)
    assert len(survivors) == 300
