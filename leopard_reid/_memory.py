"""Giving freed memory back to the operating system between the blocks of a long computation."""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any


@functools.cache
def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; absent from musl
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Return the C allocator's free pages to the system (glibc's ``malloc_trim(0)``; elsewhere nothing).

    Verification's temporary arrays (megabytes per pair, on several threads) are freed into glibc's
    per-thread arenas, which keep the pages: resident memory then creeps well above what is in use through a
    season's clustering. Trimming between blocks changes no result and no setting (unlike ``mallopt`` or
    ``MALLOC_ARENA_MAX``), and costs milliseconds."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
