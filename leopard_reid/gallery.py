"""The gallery: known individuals, their exemplar embeddings, keypoint features and metadata, on disk safely.

A gallery is years of expert work, so its file is written like a database page:

* one ``safetensors`` file (arrays as raw little-endian tensors, metadata as JSON, nothing executable);
* a SHA-256 of every array and of the manifest, verified on load: a single flipped byte is refused;
* atomic save (temporary file, fsync, rename) under an exclusive lock, with the previous version kept as
  ``<file>.bak``; a save never silently overwrites a file changed by someone else since it was loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._safetensors import InFile, arrays_in_place, parse_header, read_checksum, read_head
from .files import atomic_copy, atomic_write
from .io import parse_bbox, parse_side
from .ranking import IdentityGroups, search_scores, top_identities

if TYPE_CHECKING:
    from .embed import Embedder, Features
    from .local import LocalFeatures

__all__ = ["FORMAT_VERSION", "Gallery", "GalleryError", "IdentityGroups", "search_scores", "top_identities"]

FORMAT_VERSION = 1
_MAGIC_KEY = "leopard_reid"
META_COLUMNS = ("identity", "path", "bbox", "side", "datetime", "camera")


class GalleryError(ValueError):
    """A gallery that cannot be loaded, saved or changed as asked; the message names the file and reason."""


def _library_version() -> str:
    from . import __version__

    return __version__


def _sha(arr: np.ndarray) -> str:
    """sha256 of the array's bytes, read in place (``tobytes`` would copy a catalogue's descriptors)."""
    return hashlib.sha256(np.ascontiguousarray(arr).data).hexdigest()


def _spec(arr: np.ndarray) -> dict[str, Any]:
    """What the manifest records of an array: its SHA-256, dtype and shape."""
    return {"sha256": _sha(arr), "dtype": str(arr.dtype), "shape": list(arr.shape)}


def _json_value(v: Any) -> Any:
    if v is None or isinstance(v, (str, bool)):
        return v
    if isinstance(v, (tuple, list, np.ndarray)):
        return [_json_value(x) for x in v]
    if isinstance(v, (np.integer, int)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if np.isnan(v) else float(v)
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return str(v)


class Gallery:
    """Known individuals with one or more exemplars each.

    Build one with :meth:`build` (images) or :meth:`from_embeddings` (vectors), edit it with :meth:`add`,
    :meth:`remove`, :meth:`rename`, :meth:`merge`, query it with :meth:`search` or
    :func:`leopard_reid.match`, and keep it with :meth:`save` / :meth:`load`.
    """

    def __init__(self, *, backbone: str | None = None, weights_sha256: str | None = None) -> None:
        self.backbone = backbone
        self.weights_sha256 = weights_sha256
        self._emb = np.zeros((0, 0), dtype=np.float32)
        self._meta = pd.DataFrame({c: pd.Series(dtype=object) for c in META_COLUMNS})
        self._local: list[LocalFeatures] | None = None
        self.calibrations: dict[str, dict[str, Any]] = {}  # one per method: see :attr:`calibration`
        self._source: tuple[str, str] | None = None  # (resolved path, checksum) last loaded or saved
        self._matchers: dict[tuple[Any, ...], Any] = {}  # fitted matchers reused by ``match`` (see matching.py)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        embedder: Embedder,
        metadata: pd.DataFrame,
        *,
        root: str | os.PathLike | None = None,
        local: bool = True,
        on_error: str = "raise",
        client: Any = None,
    ) -> Gallery:
        """Embed every row of ``metadata`` (``path``, ``identity``, optional ``bbox``, ``side``...) and keep
        keypoint features too (``local=True``) for pattern-level matching. ``client``: a
        ``distributed.Client`` to describe the images on its workers (see :meth:`Embedder.describe`)."""
        if "identity" not in metadata.columns:
            raise GalleryError("the metadata needs an 'identity' column to build a gallery")
        feats = embedder.describe(metadata, root=root, local=local, on_error=on_error,  # type: ignore[arg-type]
                                  client=client)
        gallery = cls(backbone=embedder.name, weights_sha256=embedder.weights_sha256)
        return gallery.add_described(feats, metadata)

    def add_described(self, features: Features, metadata: pd.DataFrame) -> Gallery:
        """Add the readable images of ``Embedder.describe(metadata, ...)`` (rows aligned with ``metadata``,
        which needs ``identity``); failed images are left out. Returns self."""
        keep = np.flatnonzero(features.valid)
        if not len(keep):
            return self
        rows = metadata.iloc[keep].reset_index(drop=True)
        return self.add(
            features.embeddings[keep],
            rows["identity"].astype(str).tolist(),
            metadata=rows,
            local=[features.local[i] for i in keep] if features.local is not None else None,
        )

    @classmethod
    def from_embeddings(
        cls,
        embeddings: np.ndarray,
        identities: Sequence[str],
        *,
        metadata: pd.DataFrame | None = None,
        backbone: str | None = None,
        weights_sha256: str | None = None,
        local: Sequence[LocalFeatures] | None = None,
    ) -> Gallery:
        """A gallery from precomputed embeddings (rows are L2-normalised on the way in)."""
        return cls(backbone=backbone, weights_sha256=weights_sha256).add(
            embeddings, identities, metadata=metadata, local=local
        )

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self._meta)

    def __repr__(self) -> str:
        return (
            f"Gallery({len(self.identities)} individuals, {len(self)} exemplars, backbone={self.backbone!r}, "
            f"local={'yes' if self._local is not None else 'no'})"
        )

    def _repr_html_(self) -> str:
        """Notebook display: the one-line summary above :meth:`summary`'s table (names HTML-escaped)."""
        import html

        table = self.summary().to_html(escape=True, border=0)
        return f"<div><p><code>{html.escape(repr(self))}</code></p>{table}</div>"

    def summary(self) -> pd.DataFrame:
        """Exemplars per identity and flank: one row per identity (sorted), columns ``left``, ``right``,
        ``unknown`` and ``exemplars`` (their total), so a notebook shows at a glance which animals lack a side."""
        sides = ["left", "right", "unknown"]
        counts = pd.crosstab(pd.Series(self.labels, name="identity", dtype=object),
                             pd.Series(self.sides, name="side", dtype=object))
        table = counts.reindex(index=self.identities, columns=sides, fill_value=0).astype(np.int64)
        table.columns.name = None
        table["exemplars"] = table[sides].sum(axis=1)
        return table

    def checksum(self) -> str:
        """sha256 of what the gallery holds now (arrays, metadata, calibrations, backbone), as :meth:`save`
        would record it: two galleries with equal checksums match every query alike. A gallery changed in
        memory after :meth:`load` has another checksum than its file."""
        return hashlib.sha256(self._manifest(self._array_specs()).encode()).hexdigest()

    def subset(self, identities: Iterable[str]) -> Gallery:
        """A new gallery with only the exemplars of ``identities`` (each must exist), in this gallery's order.

        Embeddings, keypoint features, metadata and calibrations are copied; the new gallery is not tied to
        this one's file (saving it needs a path). Useful to try matching against part of a population.
        """
        wanted = {str(i) for i in identities}
        for identity in sorted(wanted):
            self._require(identity)
        mask = self._meta["identity"].isin(wanted).to_numpy()
        out = Gallery(backbone=self.backbone, weights_sha256=self.weights_sha256)
        out._emb = self._emb[mask].copy()
        out._meta = self._meta[mask].reset_index(drop=True)
        out._local = None if self._local is None else [f for f, k in zip(self._local, mask) if k]
        out.calibrations = {m: dict(c) for m, c in self.calibrations.items()}
        return out

    @property
    def identities(self) -> list[str]:
        """Known individuals, sorted."""
        return sorted(set(self._meta["identity"].tolist()))

    @property
    def embeddings(self) -> np.ndarray:
        """Exemplar embeddings ``(n, dim)`` float32 (a read-only view)."""
        view = self._emb.view()
        view.flags.writeable = False
        return view

    @property
    def dim(self) -> int | None:
        """Embedding size, or None for an empty gallery."""
        return self._emb.shape[1] if len(self) else None

    @property
    def metadata(self) -> pd.DataFrame:
        """Per-exemplar metadata (a copy): ``identity, path, bbox, side, datetime, camera`` and extras."""
        return self._meta.copy()

    @property
    def local(self) -> list[LocalFeatures] | None:
        """Per-exemplar keypoint features, or None when the gallery was built without them."""
        return None if self._local is None else list(self._local)

    @property
    def labels(self) -> np.ndarray:
        """Identity of each exemplar, as an object array."""
        return self._meta["identity"].to_numpy(dtype=object)

    @property
    def sides(self) -> np.ndarray:
        """Flank of each exemplar (``left``, ``right`` or ``unknown``), as an object array."""
        return self._meta["side"].fillna("unknown").to_numpy(dtype=object)

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The calibration of the default ``fused`` method (a :class:`~leopard_reid.Calibration` dict), or None.

        Setting it stores a calibration under *its own* method (``calibrate(g, method="local").to_dict()``
        goes to ``calibrations["local"]``), so a threshold on one method's scale never decides another's."""
        return self.calibrations.get("fused")

    @calibration.setter
    def calibration(self, value: dict[str, Any] | None) -> None:
        if value is None:
            self.calibrations.pop("fused", None)
            return
        method = str(value.get("method") or "fused")
        self.calibrations[method] = dict(value)

    def calibration_for(self, method: str) -> dict[str, Any] | None:
        """The stored calibration of ``method`` (``global``, ``local`` or ``fused``), or None."""
        return self.calibrations.get(method)

    # ------------------------------------------------------------------ editing
    def check_embedder(self, embedder: Embedder) -> None:
        """Refuse an embedder whose backbone or weights differ from the ones that built this gallery."""
        if self.weights_sha256 and embedder.weights_sha256 != self.weights_sha256:
            raise GalleryError(
                f"this gallery was built with backbone {self.backbone!r} (weights {self.weights_sha256}); "
                f"the embedder is {embedder.name!r} (weights {embedder.weights_sha256}). Embeddings of "
                "different models cannot be compared: use the same backbone/checkpoint or rebuild the gallery."
            )

    def add(
        self,
        embeddings: np.ndarray,
        identities: Sequence[str],
        *,
        metadata: pd.DataFrame | None = None,
        local: Sequence[LocalFeatures] | None = None,
    ) -> Gallery:
        """Add exemplars (one row per embedding); returns self."""
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim != 2:
            raise GalleryError(f"embeddings must be 2-D (n, dim), got shape {emb.shape}")
        n = emb.shape[0]
        ids = [str(i) for i in identities]
        if len(ids) != n:
            raise GalleryError(f"{n} embeddings but {len(ids)} identities")
        if not np.isfinite(emb).all():
            raise GalleryError("embeddings contain NaN or infinite values (failed images?)")
        if len(self) and emb.shape[1] != self._emb.shape[1]:
            raise GalleryError(
                f"embeddings of dimension {emb.shape[1]} cannot join a gallery of dimension {self._emb.shape[1]} "
                f"(backbone {self.backbone!r})"
            )
        if local is not None and len(local) != n:
            raise GalleryError(f"{n} embeddings but {len(local)} local feature sets")
        if len(self) and (local is None) != (self._local is None):
            have = "has" if self._local is not None else "has no"
            raise GalleryError(f"this gallery {have} keypoint features; add exemplars the same way")
        was_empty = not len(self)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        emb = emb / np.maximum(norms, 1e-12)
        meta = pd.DataFrame(index=range(n)) if metadata is None else metadata.reset_index(drop=True).copy()
        if len(meta) != n:
            raise GalleryError(f"{n} embeddings but {len(meta)} metadata rows")
        meta["identity"] = ids
        for col in META_COLUMNS:
            if col not in meta.columns:
                meta[col] = None
        try:
            meta["side"] = [parse_side(s) for s in meta["side"]]
        except ValueError as err:
            raise GalleryError(str(err)) from None
        meta["bbox"] = pd.Series([parse_bbox(b) for b in meta["bbox"]], dtype=object)
        meta = meta[list(META_COLUMNS) + [c for c in meta.columns if c not in META_COLUMNS]]
        self._emb = emb if was_empty else np.concatenate([self._emb, emb])
        self._meta = meta if was_empty else pd.concat([self._meta, meta], ignore_index=True)
        if local is not None:
            self._local = list(local) if was_empty or self._local is None else self._local + list(local)
        self._stale_calibrations(f"{n} exemplar(s) added")
        return self

    def _stale_calibrations(self, what: str) -> None:
        """Flag every stored calibration stale: it was fitted on exemplars the gallery no longer has as such.
        :class:`~leopard_reid.matching.Matcher` warns when it uses one; ``calibrate`` stores a fresh one."""
        for cal in self.calibrations.values():
            cal["stale"] = "; ".join(filter(None, [cal.get("stale"), what]))

    @property
    def calibration_stale(self) -> bool:
        """Whether a stored calibration predates exemplars added, removed or merged since it was fitted."""
        return any(cal.get("stale") for cal in self.calibrations.values())

    def _keep(self, mask: np.ndarray) -> None:
        self._emb = self._emb[mask]
        self._meta = self._meta[mask].reset_index(drop=True)
        if self._local is not None:
            self._local = [f for f, k in zip(self._local, mask) if k]

    def _require(self, identity: str) -> None:
        if identity not in set(self._meta["identity"]):
            raise GalleryError(f"unknown identity {identity!r}")

    def remove(self, identity: str) -> Gallery:
        """Remove an individual and all its exemplars; returns self."""
        self._require(identity)
        self._keep((self._meta["identity"] != identity).to_numpy())
        self._stale_calibrations(f"{identity} removed")
        return self

    def rename(self, old: str, new: str) -> Gallery:
        """Rename an individual (refused if ``new`` exists: use :meth:`merge`); returns self."""
        self._require(old)
        if new in set(self._meta["identity"]):
            raise GalleryError(f"identity {new!r} already exists: use merge({old!r}, {new!r})")
        self._meta.loc[self._meta["identity"] == old, "identity"] = new
        return self

    def merge(self, source: str, into: str) -> Gallery:
        """Move every exemplar of ``source`` to ``into`` (both must exist); returns self."""
        self._require(source)
        self._require(into)
        self._meta.loc[self._meta["identity"] == source, "identity"] = into
        self._stale_calibrations(f"{source} merged into {into}")
        return self

    # ------------------------------------------------------------------ search
    def search(self, query_embeddings: np.ndarray, *, top_k: int = 5, block_size: int | None = None) -> pd.DataFrame:
        """Exact cosine search, ranked per identity by its best exemplar.

        Returns one row per query and rank: ``query`` (row index), ``rank``, ``identity``, ``score``,
        ``exemplar`` (path of the best exemplar) and ``exemplar_index``. Memory is bounded by blocks.
        """
        q = np.asarray(query_embeddings, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2:
            raise GalleryError(f"queries must be 1-D or 2-D (n, dim), got shape {q.shape}")
        if top_k < 1:
            raise GalleryError(f"top_k must be at least 1, not {top_k}")
        if block_size is not None and block_size < 1:
            raise GalleryError(f"block_size must be at least 1, not {block_size}")
        if not np.isfinite(q).all():
            raise GalleryError("query embeddings contain NaN or infinite values (failed images?)")
        if not len(self):
            raise GalleryError("the gallery is empty")
        if q.shape[1] != self._emb.shape[1]:
            raise GalleryError(f"query dimension {q.shape[1]} != gallery dimension {self._emb.shape[1]}")
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        ids, scores, exemplars = top_identities(q, self._emb, self.labels, top_k=top_k, block_size=block_size)
        paths = self._meta["path"].to_numpy(dtype=object)
        nq, k = ids.shape
        return pd.DataFrame(
            {
                "query": np.repeat(np.arange(nq), k),
                "rank": np.tile(np.arange(1, k + 1), nq),
                "identity": ids.ravel(),
                "score": scores.ravel(),
                "exemplar": paths[exemplars.ravel()],
                "exemplar_index": exemplars.ravel(),
            }
        )

    # ------------------------------------------------------------------ disk
    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {"embeddings": np.ascontiguousarray(self._emb)}
        if self._local is not None:
            from .local import pack_features

            for k, v in pack_features(self._local).items():
                arrays[f"local.{k}"] = np.ascontiguousarray(v)
        return arrays

    def _array_specs(self) -> dict[str, dict[str, Any]]:
        """What the manifest records of each array :meth:`_arrays` would give, the keypoints hashed exemplar by
        exemplar: never packed into one copy (a catalogue's are gigabytes, maybe read from its file)."""
        specs = {"embeddings": _spec(np.ascontiguousarray(self._emb))}
        if self._local is not None:
            from .local.features import DESCRIPTOR_DIM, packed_index

            kp, desc = hashlib.sha256(), hashlib.sha256()
            for f in self._local:
                kp.update(np.ascontiguousarray(f.keypoints, np.float32).data)
                desc.update(np.ascontiguousarray(f.descriptors, np.uint8).data)
            offsets, sizes = packed_index(self._local)
            n = int(offsets[-1])
            specs.update({
                "local.keypoints": {"sha256": kp.hexdigest(), "dtype": "float32", "shape": [n, 4]},
                "local.descriptors": {"sha256": desc.hexdigest(), "dtype": "uint8", "shape": [n, DESCRIPTOR_DIM]},
                "local.offsets": _spec(offsets),
                "local.image_sizes": _spec(sizes),
            })
        return specs

    def _manifest(self, specs: dict[str, dict[str, Any]]) -> str:
        """The manifest :meth:`save` writes, given each array's :func:`_spec`."""
        records = [{k: _json_value(v) for k, v in row.items()} for row in self._meta.to_dict("records")]
        manifest = {
            "format": "leopard_reid.gallery",
            "format_version": FORMAT_VERSION,
            "library_version": _library_version(),
            "backbone": self.backbone,
            "weights_sha256": self.weights_sha256,
            "dim": self.dim,
            "n_exemplars": len(self),
            "columns": list(self._meta.columns),
            "metadata": records,
            "calibration": self.calibration,
            "calibrations": {k: v for k, v in self.calibrations.items() if k != "fused"},
            "dtypes": {str(c): str(t) for c, t in self._meta.dtypes.items()},
            "arrays": specs,
        }
        return json.dumps(manifest, sort_keys=True, separators=(",", ":"))

    def save(self, path: str | os.PathLike, *, overwrite: bool = False, lock_timeout: float = 600.0) -> Path:
        """Write the gallery atomically; the previous file is kept as ``<path>.bak``.

        An existing file is replaced only if it is the version this gallery was loaded from (or last saved
        to), or with ``overwrite=True``; so two editors cannot silently undo each other's work. Writers take
        an exclusive lock (``<path>.lock``); the new file is written beside the old one, fsynced and renamed
        over it, so a crash at any point leaves either the old or the new gallery, never a mix.
        """
        from filelock import FileLock, Timeout
        from safetensors.numpy import save as st_save

        path = Path(path)
        if path.is_dir():
            raise GalleryError(f"{path}: is a folder; give a gallery file name")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = self._arrays()
        manifest = self._manifest({k: _spec(v) for k, v in arrays.items()})
        checksum = hashlib.sha256(manifest.encode()).hexdigest()
        data = st_save(arrays, metadata={_MAGIC_KEY: manifest, "checksum": checksum})
        try:
            with FileLock(str(path) + ".lock", timeout=lock_timeout):
                _remove_stale_temporaries(path)  # left by a writer killed mid-save (we hold the lock now)
                if path.exists() and not overwrite:
                    current = read_checksum(path)
                    if self._source != (str(path.resolve()), current):
                        raise GalleryError(
                            f"{path}: exists and is not the version this gallery was loaded from (changed by "
                            "another run, or a different gallery); load it and re-apply your changes, or "
                            "save(overwrite=True)"
                        )
                if path.exists():
                    atomic_copy(path, path.with_name(path.name + ".bak"))
                atomic_write(path, data)
        except Timeout:
            raise GalleryError(
                f"{path}: another process has been saving this gallery for over {lock_timeout:.0f} s "
                f"(lock {path}.lock); try again later"
            ) from None
        self._source = (str(path.resolve()), checksum)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, keypoints: str = "memory") -> Gallery:
        """Load and verify a gallery file; a damaged or unknown-format file is refused with the reason.

        Nothing in the file is executed (safetensors arrays + a JSON manifest). Every array's dtype, shape
        and SHA-256 and the manifest's SHA-256 are checked, and the header must be exactly as written
        (compact JSON padded with spaces), so any changed byte is detected.

        ``keypoints="disk"`` leaves the exemplars' keypoints in the file, verified as they stream past, and
        reads each exemplar's when matching needs it (:mod:`leopard_reid.local.store`): a catalogue of
        10,000 exemplars holds about 2 GB of them. The file must then stay in place while the gallery is
        used; :meth:`checksum` and :meth:`save` read every exemplar's keypoints back.
        """
        from safetensors.numpy import load as st_load

        path = Path(path)
        if keypoints not in ("memory", "disk"):
            raise ValueError(f"keypoints must be 'memory' or 'disk', not {keypoints!r}")
        if not path.exists():
            raise GalleryError(f"{path}: gallery file not found")
        if path.is_dir():
            raise GalleryError(f"{path}: is a folder, not a gallery file")
        try:
            raw = path.read_bytes() if keypoints == "memory" else read_head(path)
        except OSError as err:
            raise GalleryError(f"{path}: cannot read the gallery file ({err.strerror or err})") from None
        backup = path.with_name(path.name + ".bak")
        hint = f" (the previous version is at {backup})" if backup.exists() else ""

        def damaged(reason: str) -> GalleryError:
            return GalleryError(f"{path}: damaged or not a leopard_reid gallery: {reason}{hint}")

        try:
            header = parse_header(raw)
            meta = header.get("__metadata__")
            if not isinstance(meta, dict):
                raise KeyError("__metadata__")
            text, checksum = meta[_MAGIC_KEY], meta["checksum"]
            if not isinstance(text, str) or not isinstance(checksum, str):
                raise TypeError("manifest")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as err:
            raise damaged(f"unreadable header ({type(err).__name__}: {err})") from None
        if hashlib.sha256(text.encode()).hexdigest() != checksum:
            raise damaged("manifest checksum mismatch")
        try:
            manifest = json.loads(text)
            fmt, version = manifest.get("format"), manifest.get("format_version")
        except (ValueError, AttributeError, RecursionError) as err:
            raise damaged(f"unreadable manifest ({type(err).__name__})") from None
        if fmt != "leopard_reid.gallery":
            raise damaged(f"the manifest's format is {fmt!r}, not 'leopard_reid.gallery'")
        if version != FORMAT_VERSION:
            raise GalleryError(
                f"{path}: gallery format version {version!r} is not supported by this leopard_reid "
                f"({_library_version()}, reads format {FORMAT_VERSION}); "
                + ("upgrade leopard_reid to read it" if isinstance(version, int) and version > FORMAT_VERSION
                   else "this file was not written by a known leopard_reid")
            )
        try:
            arrays = st_load(raw) if keypoints == "memory" else arrays_in_place(path, header, len(raw), _IN_PLACE)
        except Exception as err:  # safetensors raises its own error type for malformed data
            raise damaged(f"unreadable arrays ({err})") from None
        del raw  # the arrays are copies: a catalogue's file is gigabytes
        try:
            spec = manifest["arrays"]
            if set(arrays) != set(spec) or set(header) - {"__metadata__"} != set(spec):
                raise damaged("array list does not match the manifest")
            for name, arr in arrays.items():
                want = spec[name]
                if str(arr.dtype) != want["dtype"] or list(arr.shape) != list(want["shape"]):
                    raise damaged(
                        f"array {name!r} is {arr.dtype}{list(arr.shape)}, the manifest says "
                        f"{want['dtype']}{list(want['shape'])}"
                    )
                if (arr.sha256 if isinstance(arr, InFile) else _sha(arr)) != want["sha256"]:
                    raise damaged(f"checksum mismatch in array {name!r}")
        except GalleryError:
            raise
        except (KeyError, TypeError, ValueError) as err:  # a manifest without what its arrays need
            raise damaged(f"inconsistent contents ({type(err).__name__}: {err})") from None
        try:
            g = cls._from_parts(manifest, arrays)
        except (KeyError, ValueError) as err:  # a manifest consistent in itself but not what this version writes
            raise damaged(f"inconsistent contents ({type(err).__name__}: {err})") from None
        except Exception as err:  # every checksum matched and the contents check out: a bug here, not damage
            raise GalleryError(
                f"{path}: the file is intact (every checksum matches) but this leopard_reid "
                f"({_library_version()}) failed to read it ({type(err).__name__}: {err}); please report this "
                "as a bug, with the file if you can; do not restore a backup over it"
            ) from err
        g._source = (str(path.resolve()), checksum)
        return g

    @classmethod
    def _from_parts(cls, manifest: dict[str, Any], arrays: dict[str, np.ndarray]) -> Gallery:
        g = cls(backbone=manifest["backbone"], weights_sha256=manifest["weights_sha256"])
        n = int(manifest["n_exemplars"])
        meta_df = pd.DataFrame(manifest["metadata"], columns=manifest["columns"])
        if len(meta_df) != n:
            raise ValueError(f"{len(meta_df)} metadata rows for {n} exemplars")
        meta_df["bbox"] = pd.Series(
            [tuple(int(v) for v in b) if b else None for b in meta_df["bbox"]], index=meta_df.index, dtype=object
        )
        for col, dtype in (manifest.get("dtypes") or {}).items():
            if col in meta_df.columns and col != "bbox":
                meta_df[col] = _restore_dtype(meta_df[col], dtype)
        emb = np.array(arrays["embeddings"], dtype=np.float32, copy=True)
        dim = manifest["dim"]
        if emb.ndim != 2 or emb.shape[0] != n or (n and emb.shape[1] != dim):
            raise ValueError(f"embeddings of shape {emb.shape} for {n} exemplars of dimension {dim}")
        g._emb = emb
        g._meta = meta_df
        local = {k[len("local."):]: v for k, v in arrays.items() if k.startswith("local.")}
        if local:
            g._local = _local_features(local)
            if len(g._local) != n:
                raise ValueError(f"{len(g._local)} keypoint sets for {n} exemplars")
        g.calibration = manifest.get("calibration")  # routed by its method (older files stored any method here)
        for method, cal in (manifest.get("calibrations") or {}).items():
            g.calibrations[str(method)] = dict(cal)
        return g


def _restore_dtype(col: pd.Series, dtype: str) -> pd.Series:
    """Give a metadata column back the dtype it was saved with (object, text, datetimes, numbers, booleans),
    when that is possible without changing a value; otherwise keep what JSON gave."""
    try:
        if dtype == "object":
            return col.astype(object)
        if dtype.startswith("datetime64"):
            return pd.to_datetime(col, format="ISO8601").astype(dtype)
        target = pd.api.types.pandas_dtype(dtype)
        if isinstance(target, pd.StringDtype) or dtype in ("bool", "boolean", "Int64", "float64", "float32"):
            return col.astype(target)
        if dtype in ("int64", "int32") and not col.isna().any():
            return col.astype(target)
    except (ValueError, TypeError, OverflowError):
        pass
    return col


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files of ``path`` left by a killed writer (only called while holding the lock)."""
    for name in (path.name, path.name + ".bak"):
        for tmp in path.parent.glob(f".{name}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()


_IN_PLACE = ("local.keypoints", "local.descriptors")  # what ``Gallery.load(keypoints="disk")`` leaves in the file


def _local_features(local: dict[str, Any]) -> list[Any]:
    """A gallery file's packed keypoints as exemplars' features: in memory, or read from the file in place."""
    from .local import unpack_features

    kp, desc = local["keypoints"], local["descriptors"]
    if not isinstance(desc, InFile):
        return unpack_features(local)
    from .local.features import check_packed
    from .local.store import FeatureFile

    offsets = np.asarray(local["offsets"], np.int64)
    sizes = np.asarray(local["image_sizes"], np.int64).reshape(-1, 2)
    check_packed(offsets, sizes, kp.shape[0], desc.shape[0])
    return FeatureFile.open(desc.path).features(kp.at, desc.at, offsets, sizes)
