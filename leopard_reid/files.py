"""Atomic file writes: the one way the library replaces a file (galleries, caches, checkpoints, census state).

A file is written to a temporary file beside it, flushed and fsynced, then renamed over the target, so a
reader (or a run killed mid-write) sees the old file or the new one, never half of one; on any error the
temporary file is deleted and the old file stays.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_copy", "atomic_write", "fsync_dir", "replacing"]


def fsync_dir(folder: Path) -> None:
    """fsync a folder, so a rename inside it survives a power cut (a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temporary(target: Path, like: Path) -> tuple[int, str]:
    """Create ``.<target name>.<random>.tmp`` beside ``target`` with the permissions of ``like`` when it
    exists (else the umask's; never ``tempfile``'s owner-only 0600, which would hide a shared gallery)."""
    import secrets

    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        with contextlib.suppress(OSError):
            os.chmod(tmp, stat.S_IMODE(like.stat().st_mode))
        return fd, str(tmp)
    raise FileExistsError(f"{target}: cannot create a temporary file beside it")


@contextlib.contextmanager
def replacing(target: Path, like: Path | None = None) -> Iterator[BinaryIO]:
    """A temporary file beside ``target`` to write; once written it is fsynced and renamed over ``target``
    (readers see the old or the new file, never half of one), and on any error it is deleted."""
    fd, tmp = _temporary(target, target if like is None else like)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (the rename too is fsynced)."""
    with replacing(path, path) as fh:
        fh.write(data)
    fsync_dir(path.parent)


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` the same atomic way (used for the ``.bak`` of the previous version)."""
    with replacing(dst, src) as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)
