"""Training data: labels (identity, plus flank side), per-epoch batches, the held-out individuals, crops."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .config import TrainConfig

__all__ = ["TrainSet", "class_labels", "epoch_batches", "split_individuals"]


class TrainSet:
    """Decodes each crop once (squashed to the augmentation's working size), then augments per epoch."""

    def __init__(self, records: list, labels: np.ndarray, transform: Any, work_size: int) -> None:
        self.records, self.labels, self.transform, self.work_size = records, labels, transform, work_size
        self.cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.records)

    def load(self, i: int) -> Any:
        """Crop ``i`` decoded once and cached, shrunk to the augmentation's working size."""

        from PIL import Image

        from ..io import load_image

        img = self.cache.get(i)
        if img is None:
            rec = self.records[i]
            img = load_image(rec.source, bbox=rec.bbox, reduce_to=self.work_size)
            if max(img.size) > self.work_size:  # keep the aspect; the transform squashes to a square
                scale = self.work_size / min(img.size)
                if scale < 1:
                    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                                     Image.BICUBIC)
            self.cache[i] = img
        return img

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.transform(self.load(i)), int(self.labels[i])


def class_labels(df: pd.DataFrame, *, sides: bool) -> np.ndarray:
    """Class label per row: identity, plus the flank side where it is known."""
    import numpy as np

    ident = df["identity"].astype(str).to_numpy(dtype=object)
    if sides and "side" in df.columns:
        side = df["side"].astype(str).str.lower().to_numpy(dtype=object)
        ident = np.array([f"{i}|{s}" if s in ("left", "right") else i for i, s in zip(ident, side)], dtype=object)
    return ident


def epoch_batches(labels: np.ndarray, config: TrainConfig, epoch: int) -> list[list[int]]:
    """Index batches for one epoch (seeded by seed and epoch): a shuffle for ArcFace, P x K for triplet."""
    import numpy as np

    rng = np.random.default_rng([config.seed, epoch, 7])
    n, bs = len(labels), min(config.batch_size, len(labels))
    if config.loss == "arcface":
        order = rng.permutation(n)
        batches = [order[i : i + bs].tolist() for i in range(0, n, bs)]
    else:
        k = max(2, config.samples_per_label)
        groups: dict[Any, list[int]] = {}
        for i, lab in enumerate(labels):
            groups.setdefault(lab, []).append(i)
        chunks = []
        for idx in groups.values():
            idx = rng.permutation(idx).tolist()
            chunks += [idx[j : j + k] for j in range(0, len(idx), k)]
        chunks = [chunks[j] for j in rng.permutation(len(chunks))]
        batches, cur = [], []
        for c in chunks:
            if cur and len(cur) + len(c) > bs:
                batches.append(cur)
                cur = []
            cur = cur + c
        if cur:
            batches.append(cur)
    if len(batches) > 1 and len(batches[-1]) < 2:  # BatchNorm refuses a batch of one
        batches[-2] += batches.pop()
    return [b for b in batches if len(b) >= 2]


def split_individuals(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Hold out ``fraction`` of the individuals (all their images) for validation."""
    import numpy as np

    ids = np.array(sorted(df["identity"].astype(str).unique()), dtype=object)
    n_val = int(round(len(ids) * fraction))
    if fraction <= 0 or n_val < 2 or len(ids) - n_val < 2:
        return df.reset_index(drop=True), None
    val_ids = set(np.random.default_rng([seed, 11]).choice(ids, size=n_val, replace=False).tolist())
    is_val = df["identity"].astype(str).isin(val_ids)
    return df[~is_val].reset_index(drop=True), df[is_val].reset_index(drop=True)
