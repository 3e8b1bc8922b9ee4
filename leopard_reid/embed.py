"""Global embeddings: a pretrained CNN turns each crop into one L2-normalised vector.

Preprocessing comes from the backbone's pretrained config (input size, interpolation, mean, std); the whole
animal crop is resized to the input size (``crop_mode="squash"``) so no part of the coat is cut away.
Images are decoded, cropped and resized in DataLoader workers (JPEG draft mode for large frames), and the
model runs in ``channels_last`` under ``torch.inference_mode``.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .backbones import DEFAULT_BACKBONE, create_backbone, data_config, resolve_checkpoint, weights_sha256
from .io import ImageError, ImageInput, OnError, Record, as_records, load_image

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from .local import LocalFeatures

__all__ = ["Embedder", "Features"]


@dataclass
class Features:
    """What :meth:`Embedder.describe` computed for a batch of images, aligned with the input order.

    ``embeddings`` rows of failed images are NaN and ``valid`` is False there; ``errors`` names them.
    """

    names: list[str]
    embeddings: np.ndarray
    local: list[LocalFeatures] | None
    valid: np.ndarray
    errors: list[ImageError] = field(default_factory=list)
    sides: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)


class _Dataset:
    """Loads, crops and preprocesses one record per item; errors are returned, not raised."""

    def __init__(self, records: Sequence[Record], transform: Any, reduce_to: int | None, local: dict | None):
        self.records = records
        self.transform = transform
        self.reduce_to = reduce_to
        self.local = local

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[int, Any, Any, ImageError | None]:
        rec = self.records[i]
        try:
            img = load_image(rec.source, bbox=rec.bbox, reduce_to=self.reduce_to)
        except ImageError as err:  # named as the caller gave it (the CSV's path, not the resolved one)
            return i, None, None, ImageError(rec.name, err.reason)
        tensor = self.transform(img) if self.transform is not None else None
        feats = None
        if self.local is not None:
            from .local import extract_features, options_for_image

            feats = extract_features(img, **options_for_image(self.local, boxed=rec.bbox is not None))
        return i, tensor, feats, None


_WORKERS_FROM = 128  # images: below this, starting DataLoader worker processes costs more than they save


def _collate(batch: list) -> list:
    return batch


def _threaded_batches(dataset: _Dataset, batch_size: int) -> Iterator[list]:
    """The dataset's items in batches, loaded on a thread per core one batch ahead: decoding, resizing and
    SIFT release the GIL, and OpenCV's SIFT runs on one core, so while the model embeds one batch the next
    is decoded and described (the same items as a serial loop, in order)."""
    from concurrent.futures import ThreadPoolExecutor

    from ._parallel import n_threads

    n = len(dataset)
    with ThreadPoolExecutor(n_threads(None, n)) as pool:
        def submit(start: int) -> list:
            return [pool.submit(dataset.__getitem__, i) for i in range(start, min(n, start + batch_size))]

        ahead = submit(0) if n else []
        for start in range(batch_size, n + batch_size, batch_size):
            batch, ahead = ahead, (submit(start) if start < n else [])
            yield [f.result() for f in batch]


class Embedder:
    """Embed leopard crops with a pretrained CNN (timm), as L2-normalised float32 vectors.

    Parameters
    ----------
    backbone:
        A backbone name for :func:`~leopard_reid.create_backbone` (default: the embedded offline
        EfficientNet-Lite0) or a ready ``torch.nn.Module`` (used on its own device, never moved).
    checkpoint:
        A fine-tuned checkpoint (training folder or ``.safetensors``) to load into the backbone.
    batch_size:
        Images per forward pass; default 8 on a CPU, 32 on a GPU. On CPU small batches stay in cache: the
        embedded EfficientNet-Lite0 costs 8-14 ms per crop at batches of 4-16 on 2 cores, 17 ms at 32 and
        30 ms at 64 (the same embeddings).
    num_workers:
        DataLoader worker processes; ``None`` picks them for runs of 128 images or more.
    device:
        ``"cpu"``, ``"cuda"``...; default: CUDA when available.
    progress:
        Show a tqdm bar: ``None`` shows it on a terminal for runs of more than one batch.
    cache:
        A folder for an :class:`~leopard_reid.cache.EmbeddingCache`: files already embedded (same bytes,
        box, model and keypoint options) are read back instead of recomputed.

    ``describe(..., client=)`` runs on a Dask cluster (:mod:`leopard_reid.distributed`): each worker builds
    this embedder from its backbone name, checkpoint and options, so a ready module cannot be used there.
    """

    def __init__(
        self,
        backbone: str | torch.nn.Module = DEFAULT_BACKBONE,
        *,
        checkpoint: str | os.PathLike | None = None,
        batch_size: int | None = None,
        device: str | None = None,
        num_workers: int | None = None,
        progress: bool | None = None,
        cache: str | os.PathLike | None = None,
    ) -> None:
        import torch

        self._backbone_arg = None if isinstance(backbone, torch.nn.Module) else backbone  # rebuilt by Dask workers
        self._device_arg = device
        self._batch_size_arg = batch_size  # each Dask worker picks its own default for its device
        if isinstance(backbone, torch.nn.Module):
            self.model = backbone
            param = next(backbone.parameters(), None)
            own = param.device if param is not None else torch.device("cpu")
            if device is not None and torch.device(device) != own:
                raise ValueError(f"the model is on {own}, not {device}; move it yourself or leave device=None")
            self.device = own
            self.name = getattr(backbone, "default_cfg", {}).get("architecture", type(backbone).__name__)
        else:
            self.name = backbone
            if checkpoint is not None:
                self.name = resolve_checkpoint(checkpoint)[1].get("backbone", backbone)
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            self.model = create_backbone(backbone, checkpoint=checkpoint).to(self.device)
            self.model = self.model.to(memory_format=torch.channels_last)
        self.checkpoint = str(checkpoint) if checkpoint is not None else None
        self.model.eval()
        self.batch_size = batch_size if batch_size is not None else (8 if self.device.type == "cpu" else 32)
        self.num_workers = num_workers
        self.progress = progress
        self.data_config = data_config(self.model)
        self.weights_sha256 = weights_sha256(self.model)
        self._transform: Any = None
        self.cache = None
        if cache is not None:
            from .cache import EmbeddingCache

            self.cache = EmbeddingCache(cache)

    def __repr__(self) -> str:
        return f"Embedder({self.name!r}, dim={self.dim}, device={str(self.device)!r})"

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        head = getattr(self.model, "num_classes", 0)  # a fine-tuned projection head is timm's classifier
        return int(head or getattr(self.model, "num_features", 0) or self.model(self._dummy()).shape[1])

    def _dummy(self) -> torch.Tensor:
        import torch

        return torch.zeros((1, *self.data_config["input_size"]), device=self.device)

    @property
    def transform(self) -> Any:
        """The eval transform: whole crop resized to the model's input size, its mean/std."""
        if self._transform is None:
            import timm.data

            cfg = {**self.data_config, "crop_pct": 1.0, "crop_mode": "squash"}
            self._transform = timm.data.create_transform(**cfg, is_training=False)
        return self._transform

    def embed(
        self,
        images: Iterable[ImageInput] | pd.DataFrame,
        *,
        root: str | os.PathLike | None = None,
        on_error: OnError = "raise",
    ) -> np.ndarray:
        """Embed images (paths, PIL images, HxWx3 arrays, or a DataFrame with ``path`` and optional ``bbox``).

        Returns float32 ``(n, dim)`` with unit-norm rows in input order. ``on_error="skip"`` keeps going past
        unreadable images, leaves their rows NaN and warns with each file and reason.
        """
        feats = self.describe(images, root=root, on_error=on_error)
        return feats.embeddings

    def describe(
        self,
        images: Iterable[ImageInput] | pd.DataFrame,
        *,
        root: str | os.PathLike | None = None,
        local: bool | dict[str, Any] = False,
        on_error: OnError = "raise",
        client: Any = None,
    ) -> Features:
        """Embed images and, with ``local=True`` (or extractor options), extract keypoint features in the
        same pass, so each image is decoded once. See :class:`Features`.

        ``client``: a ``distributed.Client``; chunks of images are then described on its workers (which must
        see the image files at the same paths) and gathered in input order, with the same results."""
        import torch

        from .local import extractor_options

        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        records = as_records(images, root=root)
        n = len(records)
        # every extractor option resolved: the cache key then changes with any default, and typos fail here
        local_opts = extractor_options(None if local is True else local) if local else None
        if self.cache is not None:
            return self._describe_cached(records, local_opts, on_error, client)
        if client is not None:
            return self._describe_on(client, records, local_opts, on_error)
        side = min(self.data_config["input_size"][1:])
        reduce_to = side if local_opts is None else local_opts["max_side"]
        dataset = _Dataset(records, self.transform, reduce_to, local_opts)
        workers = self.num_workers
        if workers is None:
            workers = min(2, os.cpu_count() or 1) if n >= _WORKERS_FROM else 0
        if workers:
            loader: Iterable[list] = torch.utils.data.DataLoader(
                dataset, batch_size=self.batch_size, num_workers=workers, collate_fn=_collate,
            )
        else:
            loader = _threaded_batches(dataset, self.batch_size)
        dim = None
        out: np.ndarray | None = None
        local_out: list[Any] | None = [None] * n if local_opts is not None else None
        valid = np.zeros(n, dtype=bool)
        errors: list[ImageError] = []
        show = self.progress
        if show is None:
            show = sys.stderr.isatty() and n > self.batch_size
        if show:
            from tqdm.auto import tqdm
        else:
            from tqdm import tqdm

        bar = tqdm(total=n, desc="embedding", unit="img", disable=not show)
        with torch.inference_mode():
            for batch in loader:
                good = [(i, t, f) for i, t, f, e in batch if e is None]
                for _, _, _, err in batch:
                    if err is not None:
                        if on_error == "raise":
                            bar.close()
                            raise err
                        errors.append(err)
                if good:
                    x = torch.stack([t for _, t, _ in good]).to(self.device)
                    x = x.contiguous(memory_format=torch.channels_last)
                    y = torch.nn.functional.normalize(self.model(x).float(), dim=1).cpu().numpy()
                    if out is None:
                        dim = y.shape[1]
                        out = np.full((n, dim), np.nan, dtype=np.float32)
                    idx = [i for i, _, _ in good]
                    out[idx] = y
                    valid[idx] = True
                    if local_out is not None:
                        for i, _, f in good:
                            local_out[i] = f
                bar.update(len(batch))
        bar.close()
        if out is None:
            out = np.full((n, dim or self.dim), np.nan, dtype=np.float32)
        if errors:
            listing = "; ".join(str(e) for e in errors[:5]) + (" ..." if len(errors) > 5 else "")
            warnings.warn(f"skipped {len(errors)} of {n} image(s): {listing}", stacklevel=2)
        return Features(
            names=[r.name for r in records],
            embeddings=out,
            local=local_out,
            valid=valid,
            errors=errors,
            sides=[r.side for r in records],
        )

    def _describe_on(self, client: Any, records: list[Record], local_opts: dict | None, on_error: OnError) -> Features:
        """describe() on a Dask cluster; errors raised or warned here, on the client, as in one process."""
        from .distributed import describe

        show = self.progress if self.progress is not None else (sys.stderr.isatty() and len(records) > self.batch_size)
        feats = describe(self, records, local=local_opts, client=client, progress=show)
        if feats.errors:
            if on_error == "raise":
                raise feats.errors[0]
            n, errors = len(records), feats.errors
            listing = "; ".join(str(e) for e in errors[:5]) + (" ..." if len(errors) > 5 else "")
            warnings.warn(f"skipped {len(errors)} of {n} image(s): {listing}", stacklevel=3)
        return feats

    def _describe_cached(
        self, records: list[Record], local_opts: dict | None, on_error: OnError, client: Any = None,
    ) -> Features:
        """describe() through the cache: hash files, compute only the misses, store them as one shard."""
        from .cache import file_key

        assert self.cache is not None
        model_key = f"{self.weights_sha256}:{tuple(self.data_config['input_size'])}"
        keys: list[str | None] = []
        for r in records:
            try:
                keys.append(
                    file_key(r.source, model=model_key, bbox=r.bbox, local=local_opts)
                    if isinstance(r.source, (str, os.PathLike))
                    else None
                )
            except OSError:
                keys.append(None)  # unreadable: describe() reports it
        miss = [i for i, k in enumerate(keys) if k is None or k not in self.cache]
        cache, self.cache = self.cache, None
        want_local: bool | dict = False if local_opts is None else (local_opts or True)
        try:
            fresh = (self.describe([records[i] for i in miss], local=want_local, on_error=on_error, client=client)
                     if miss else None)
        finally:
            self.cache = cache
        n = len(records)
        dim = fresh.embeddings.shape[1] if fresh is not None else self.dim
        emb = np.full((n, dim), np.nan, np.float32)
        loc: list[Any] | None = [None] * n if local_opts is not None else None
        valid = np.zeros(n, bool)
        for i, k in enumerate(keys):
            if k is not None and k in cache:
                emb[i], f = cache.get(k)
                valid[i] = True
                if loc is not None:
                    loc[i] = f
        errors: list[ImageError] = []
        if fresh is not None:
            emb[miss] = fresh.embeddings
            valid[miss] = fresh.valid
            errors = fresh.errors
            if loc is not None and fresh.local is not None:
                for j, i in enumerate(miss):
                    loc[i] = fresh.local[j]
            new = [(keys[i], j) for j, i in enumerate(miss) if keys[i] is not None and fresh.valid[j]]
            cache.put(
                [k for k, _ in new],
                fresh.embeddings[[j for _, j in new]],
                [fresh.local[j] for _, j in new] if fresh.local is not None else None,
            )
        return Features(names=[r.name for r in records], embeddings=emb, local=loc, valid=valid, errors=errors,
                        sides=[r.side for r in records])
