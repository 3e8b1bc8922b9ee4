"""Local features on disk: many images' keypoints in one file, read back one image at a time.

A season's unmatched detections hold about 1.2 GB of keypoints at 10,000 detections. A census clusters
them through an index it builds block by block and verifies each detection against a shortlist of the
others, so at any moment it needs a few images' keypoints, never all of them. :class:`FeatureFile`
appends each image's features as it is described; :class:`DiskFeatures`, one per image, holds only where
they lie and reads them whenever they are asked for (a ``pread``: thread-safe, and the page cache, not the
process, holds the file). A :class:`~leopard_reid.local.LocalMatcher` fits on them and verifies them as
it does in-memory :class:`~leopard_reid.local.LocalFeatures`, with the same results.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from .features import DESCRIPTOR_DIM, LocalFeatures

__all__ = ["DiskFeatures", "FeatureFile"]

_KP_BYTES = 4 * 4  # keypoints: float32 x, y, size, angle
_ROW_BYTES = _KP_BYTES + DESCRIPTOR_DIM  # one keypoint's record: its keypoint, then its uint8 descriptor


class FeatureFile:
    """A file of local features: a scratch file written here (:meth:`create`, :meth:`append`, deleted by
    :meth:`close`), or arrays of another file read in place (:meth:`open`: a gallery file's keypoints).

    A scratch file holds each image's keypoints as one record (``n`` float32 rows of 4, then ``n`` uint8 rows
    of 128); what :meth:`append` returns reads it back. Raw arrays only, never pickle."""

    path: Path
    _fh: Any
    _scratch: bool

    @classmethod
    def create(cls, path: str | os.PathLike) -> FeatureFile:
        """A new, empty scratch file at ``path`` (an old one there is replaced), deleted by :meth:`close`."""
        self = cls()
        self.path, self._scratch, self._end = Path(path), True, 0
        self._fh = open(self.path, "w+b")  # noqa: SIM115  (held open until close)
        return self

    @classmethod
    def open(cls, path: str | os.PathLike) -> FeatureFile:
        """An existing file, read only (never deleted); see :meth:`features`."""
        self = cls()
        self.path, self._scratch = Path(path), False
        self._fh = open(self.path, "rb")  # noqa: SIM115  (held open while its features are used)
        self._end = os.fstat(self._fh.fileno()).st_size
        return self

    def append(self, features: LocalFeatures) -> DiskFeatures:
        """Write one image's features at the end of a scratch file; returns its handle."""
        kp = np.ascontiguousarray(features.keypoints, np.float32).reshape(-1, 4)
        desc = np.ascontiguousarray(features.descriptors, np.uint8).reshape(-1, DESCRIPTOR_DIM)
        if len(kp) != len(desc):
            raise ValueError(f"{len(kp)} keypoints but {len(desc)} descriptors")
        at = self._end
        _pwrite(self._fh.fileno(), kp.tobytes() + desc.tobytes(), at)
        self._end += len(kp) * _ROW_BYTES
        return DiskFeatures(self, at, at + len(kp) * _KP_BYTES, len(kp), features.image_size)

    def features(self, keypoints_at: int, descriptors_at: int, offsets: np.ndarray,
                 image_sizes: np.ndarray) -> list[DiskFeatures]:
        """Handles to many images' features packed as :func:`~leopard_reid.local.pack_features` packs them,
        the ``keypoints`` array at byte ``keypoints_at`` of the file and ``descriptors`` at ``descriptors_at``."""
        return [DiskFeatures(self, keypoints_at + _KP_BYTES * int(a), descriptors_at + DESCRIPTOR_DIM * int(a),
                             int(b - a), (int(w), int(h)))
                for a, b, (w, h) in zip(offsets[:-1], offsets[1:], image_sizes)]

    def read(self, at: int, n: int, part: str) -> np.ndarray:
        """``n`` rows of ``keypoints`` (float32 (n, 4)) or ``descriptors`` (uint8 (n, 128)) from byte ``at``."""
        dtype, width = (np.float32, 4) if part == "keypoints" else (np.uint8, DESCRIPTOR_DIM)
        size = n * width * np.dtype(dtype).itemsize
        if self._fh.closed:
            raise ValueError(f"{self.path}: the feature file is closed")
        data = _pread(self._fh.fileno(), size, at) if size else b""
        if len(data) != size:
            raise OSError(f"{self.path}: truncated at byte {at}")
        return np.frombuffer(data, dtype).reshape(n, width)

    def close(self) -> None:
        """Close the file (a scratch file is deleted); its handles can no longer be read."""
        if not self._fh.closed:
            self._fh.close()
            if self._scratch:
                self.path.unlink(missing_ok=True)

    @property
    def nbytes(self) -> int:
        """The file's size in bytes (of a scratch file: written so far)."""
        return self._end

    def __enter__(self) -> FeatureFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


_SEEK = threading.Lock()  # where os.pread/pwrite are missing (Windows), a read is a seek and a read


def _pread(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    with _SEEK:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, size)


def _pwrite(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while len(view):  # a write may take less than it is given
        if hasattr(os, "pwrite"):
            done = os.pwrite(fd, view, offset)
        else:
            with _SEEK:
                os.lseek(fd, offset, os.SEEK_SET)
                done = os.write(fd, view)
        view, offset = view[done:], offset + done


class DiskFeatures:
    """One image's local features in a :class:`FeatureFile`: the interface of
    :class:`~leopard_reid.local.LocalFeatures` (``keypoints``, ``descriptors``, ``points``, ``image_size``,
    ``len``), the arrays read from the file at each access (read-only) and never kept."""

    __slots__ = ("_desc_at", "_file", "_kp_at", "_n", "image_size")

    def __init__(self, file: FeatureFile, keypoints_at: int, descriptors_at: int, n: int,
                 image_size: tuple[int, int]) -> None:
        self._file = file
        self._kp_at = int(keypoints_at)
        self._desc_at = int(descriptors_at)
        self._n = int(n)
        self.image_size = (int(image_size[0]), int(image_size[1]))

    def __len__(self) -> int:
        return self._n

    @property
    def keypoints(self) -> np.ndarray:
        """float32 (n, 4) ``x, y, size, angle``, read from the file."""
        return self._file.read(self._kp_at, self._n, "keypoints")

    @property
    def descriptors(self) -> np.ndarray:
        """uint8 (n, 128) quantised RootSIFT, read from the file."""
        return self._file.read(self._desc_at, self._n, "descriptors")

    @property
    def points(self) -> np.ndarray:
        """float32 (n, 2) keypoint positions (x, y)."""
        return self.keypoints[:, :2]

    def load(self) -> LocalFeatures:
        """The features in memory."""
        return LocalFeatures(keypoints=self.keypoints.copy(), descriptors=self.descriptors.copy(),
                             image_size=self.image_size)
