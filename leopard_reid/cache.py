"""An on-disk embedding cache, so re-running a season embeds only the images it has not seen.

Keys are the SHA-256 of the file's bytes plus the backbone's weight fingerprint, the box and the keypoint
options: a renamed file still hits, an edited one misses. Each run appends one shard
(``shard-*.npz``, ``allow_pickle=False``, written atomically); nothing is ever rewritten in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .files import replacing

if TYPE_CHECKING:
    from .local import LocalFeatures

__all__ = ["EmbeddingCache", "file_key"]


def file_key(path: str | os.PathLike, *, model: str, bbox: Any, local: dict | None) -> str:
    """Cache key of one crop: content hash + model fingerprint + box + keypoint options."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    extra = json.dumps([model, list(bbox) if bbox else None, local], sort_keys=True)
    return hashlib.sha256(h.digest() + extra.encode()).hexdigest()[:32]


class EmbeddingCache:
    """A folder of shards mapping crop keys to embeddings (and keypoint features)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._index: dict[str, tuple[Path, int]] = {}
        self._loaded: dict[Path, dict[str, np.ndarray]] = {}
        for shard in sorted(self.folder.glob("shard-*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as z:
                    keys = z["keys"]
            except (OSError, ValueError, KeyError):
                continue  # a damaged shard is ignored: its crops are simply embedded again
            for i, k in enumerate(keys.tolist()):
                self._index[k] = (shard, i)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def _shard(self, path: Path) -> dict[str, np.ndarray]:
        if path not in self._loaded:
            with np.load(path, allow_pickle=False) as z:
                self._loaded[path] = {k: z[k] for k in z.files}
        return self._loaded[path]

    def get(self, key: str) -> tuple[np.ndarray, LocalFeatures | None]:
        """The cached embedding (and keypoint features, when they were stored) of ``key``."""
        path, i = self._index[key]
        z = self._shard(path)
        local = None
        if "local.offsets" in z:
            from .local import LocalFeatures

            lo, hi = int(z["local.offsets"][i]), int(z["local.offsets"][i + 1])
            w, h = (int(v) for v in z["local.image_sizes"][i])
            local = LocalFeatures(z["local.keypoints"][lo:hi].copy(), z["local.descriptors"][lo:hi].copy(), (w, h))
        return z["embeddings"][i], local

    def put(self, keys: list[str], embeddings: np.ndarray, local: list[LocalFeatures] | None = None) -> None:
        """Store a batch as one new shard (atomic)."""
        if not keys:
            return
        arrays: dict[str, np.ndarray] = {"keys": np.array(keys), "embeddings": np.asarray(embeddings, np.float32)}
        if local is not None:
            from .local import pack_features

            arrays.update({f"local.{k}": v for k, v in pack_features(local).items()})
        name = self.folder / f"shard-{uuid.uuid4().hex}.npz"
        with replacing(name) as fh:
            np.savez(fh, **arrays)
        for i, k in enumerate(keys):
            self._index[k] = (name, i)
