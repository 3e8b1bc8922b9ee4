"""A census's scores on disk, chunk by chunk, so a census killed mid-season resumes where it stopped.

Each scored chunk of detections is written as it finishes into ``out/.census-state/<key>/chunk-<first>-<end>.npz``
(atomically: a temporary file renamed into place; arrays and JSON text only, never pickle), holding what
:class:`~.scoring.ChunkScores` holds: per detection the best score per known identity and its exemplar, whether
it was readable, the skipped crops' reasons, and the embedding and keypoints of every readable detection (the
rest of the census, and the review page, reuse them rather than describing a crop twice). While a run goes
on, the keypoints of the detections no known individual matched are also in one scratch file there
(``unmatched-keypoints.bin``), which clustering new individuals and the review page read a few detections at
a time; the run deletes it when it ends (a killed run leaves it, and the next run replaces it).

``key`` is a hash of everything a chunk's scores depend on: the detections (path, resolved file, size and
modification time, box, side, in order), the gallery (:meth:`~leopard_reid.Gallery.checksum`: what it holds
now), the method, the embedder (backbone and weights) and the keypoint extractor's options. A run with other
inputs or settings gets another key and never reads stale chunks; the state folders of other keys in the same
``out`` are removed when a run starts (they could only be reused by a run with exactly those inputs again). A
finished run's state is kept: a rerun with the same arguments then describes nothing again. Delete
``.census-state`` to reclaim the space (about 150 kB per detection, mostly keypoint descriptors).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import shutil
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ..embed import Embedder
    from ..gallery import Gallery
    from ..local.store import FeatureFile
    from .scoring import ChunkScores

STATE_DIR = ".census-state"
KEYPOINT_FILE = "unmatched-keypoints.bin"  # scratch: written by each run, deleted when it ends
_VERSION = 3  # bump when the chunk file layout or what a chunk's scores mean changes


def state_key(
    meta: pd.DataFrame, gallery: Gallery, embedder: Embedder, method: str, keypoints: Mapping[str, Any] | None = None
) -> str:
    """A hash of the detections, gallery, method, embedder and keypoint options (see the module docstring)."""
    from ..local import extractor_options

    h = hashlib.sha256()

    def add(obj: Any) -> None:
        h.update(json.dumps(obj, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"\0")

    add({"version": _VERSION, "method": method, "backbone": str(embedder.name),
         "weights": str(getattr(embedder, "weights_sha256", "")),
         "local": extractor_options(keypoints) if method != "global" else None})
    add({"gallery": gallery.checksum()})  # its content: a gallery changed in memory since loading is another
    for p, s, b, sd in zip(meta["path"], meta["source"], meta["bbox"], meta["side"]):
        try:
            st = os.stat(s)
            stamp = [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp = None
        add([str(p), str(Path(s).resolve()), list(b) if b is not None else None, str(sd), stamp])
    return h.hexdigest()[:24]


class ChunkState:
    """The chunk files of one census run (``out/.census-state/<key>``); :meth:`open` prepares the folder."""

    def __init__(self, out: Path, key: str) -> None:
        self.root = Path(out) / STATE_DIR
        self.dir = self.root / key

    @classmethod
    def open(cls, out: Path, key: str, *, resume: bool = True) -> ChunkState:
        """The state of the run ``key`` in ``out``, its folder created. Other keys' folders are removed (another
        run's chunks are never reused, so not kept); without ``resume`` this key's saved chunks are too."""
        state = cls(out, key)
        if state.root.is_dir():
            for other in state.root.iterdir():
                if other.is_dir() and other.name != key:
                    shutil.rmtree(other, ignore_errors=True)
        if not resume and state.dir.exists():
            shutil.rmtree(state.dir)
        state.dir.mkdir(parents=True, exist_ok=True)
        return state

    def keypoint_file(self) -> FeatureFile:
        """A new scratch file in this run's folder for the keypoints the clustering reads (:mod:`..local.store`)."""
        from ..local.store import FeatureFile

        return FeatureFile.create(self.dir / KEYPOINT_FILE)

    def path(self, start: int, stop: int) -> Path:
        return self.dir / f"chunk-{start:07d}-{stop:07d}.npz"

    def has(self, start: int, stop: int) -> bool:
        return self.path(start, stop).exists()

    def save(self, start: int, stop: int, res: ChunkScores) -> None:
        """Write a scored chunk atomically (a temporary file renamed into place)."""
        import io

        import numpy as np

        from ..files import atomic_write
        from ..local import pack_features

        rows = sorted(res.kept)
        arrays: dict[str, np.ndarray] = {
            "best": res.best, "arg": res.arg, "valid": res.valid,
            "errors": np.array(json.dumps([[e.path, e.reason] for e in res.errors])),
            "kept": np.array(rows, np.int64),
            "embeddings": (np.stack([res.kept[j][0] for j in rows]) if rows else np.zeros((0, 0), np.float32)),
        }
        local = [res.kept[j][1] for j in rows]
        arrays["has_local"] = np.array(bool(rows) and all(f is not None for f in local))
        if arrays["has_local"]:
            arrays.update({f"local_{k}": v for k, v in pack_features(local).items()})
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write(self.path(start, stop), buf.getvalue())

    def load(self, start: int, stop: int) -> ChunkScores | None:
        """A chunk saved by :meth:`save`; None if its file is unreadable (it is then scored again)."""
        import numpy as np

        from ..io import ImageError
        from ..local import unpack_features
        from .scoring import ChunkScores

        try:
            with np.load(self.path(start, stop), allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
            if len(a["valid"]) != stop - start:
                return None
            rows = [int(j) for j in a["kept"]]
            local: list[Any] = [None] * len(rows)
            if bool(a["has_local"]):
                local = unpack_features({k[len("local_"):]: v for k, v in a.items() if k.startswith("local_")})
            errors = [ImageError(p, r) for p, r in json.loads(str(a["errors"]))]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):  # unreadable, truncated, foreign
            return None
        return ChunkScores(best=a["best"], arg=a["arg"], valid=a["valid"], errors=errors,
                           kept={j: (a["embeddings"][k], local[k]) for k, j in enumerate(rows)})


class StoredFeatures(Mapping):
    """Keypoints of detections by position in ``rows`` (census row numbers): ``memory`` where the census kept
    them, else read from the chunk ``state`` saved them in (a few chunks cached). Nothing is described again;
    a detection with neither (unreadable) is absent."""

    def __init__(self, memory: Mapping[int, Any], state: ChunkState | None,
                 spans: Sequence[tuple[int, int]], rows: Sequence[int]) -> None:
        self.memory = memory
        self.state = state
        self.spans = list(spans)
        self.firsts = [a for a, _ in self.spans]
        self.rows = [int(i) for i in rows]
        self._chunks: OrderedDict[int, Any] = OrderedDict()

    def _stored(self, i: int) -> Any:
        if self.state is None or not self.spans:
            return None
        k = bisect.bisect_right(self.firsts, i) - 1
        if k < 0 or not self.spans[k][0] <= i < self.spans[k][1]:
            return None
        if k not in self._chunks:
            self._chunks[k] = self.state.load(*self.spans[k])
            while len(self._chunks) > 4:
                self._chunks.popitem(last=False)
        self._chunks.move_to_end(k)
        res = self._chunks[k]
        kept = res.kept.get(i - self.spans[k][0]) if res is not None else None
        return kept[1] if kept is not None else None

    def __getitem__(self, r: int) -> Any:
        if not 0 <= r < len(self.rows):
            raise KeyError(r)
        i = self.rows[r]
        f = self.memory.get(i)
        if f is None:
            f = self._stored(i)
        if f is None:
            raise KeyError(r)
        return f

    def __iter__(self):  # noqa: ANN204
        return iter(range(len(self.rows)))

    def __len__(self) -> int:
        return len(self.rows)
