"""The fine-tuning configuration (:class:`TrainConfig`) and the names of the files a run writes.

One frozen-in-JSON record defines a run, so a checkpoint folder says how it was made and ``resume`` can
refuse a changed configuration.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["CURVE", "FORMAT", "HISTORY", "LAST_JSON", "LAST_STATE", "LAST_WEIGHTS", "TrainConfig"]

FORMAT = "leopard_reid.fine_tune/1"
LAST_WEIGHTS = "last.safetensors"
LAST_STATE = "last_state.safetensors"
LAST_JSON = "last_state.json"
HISTORY = "history.csv"
CURVE = "training_curve.png"


@dataclass
class TrainConfig:
    """Everything that defines a fine-tuning run (JSON round-trip: :meth:`to_json` / :meth:`from_json`).

    ``margin=None`` picks the loss's default (ArcFace 0.3 rad, triplet 0.3 in cosine distance).
    ``embedding_size=0`` uses the backbone's pooled features directly (no projection head).
    ``image_size=None`` takes the input size of the model's pretrained config.
    ``val_fraction`` of the *individuals* is held out when :func:`fine_tune` gets no ``val`` table.
    ``num_workers=None``: 0 on a CPU with at most 2 cores, else up to 4 loader processes.
    ``threads``: torch CPU threads while training (``None``: leave torch's setting). On a CPU shared with
    other jobs, 1 thread can be several times faster than 2 (OpenMP threads wait on each other).
    """

    backbone: str = "efficientnet_lite0"
    init_checkpoint: str | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-4
    head_lr_factor: float = 10.0
    weight_decay: float = 1e-4
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    loss: Literal["arcface", "triplet"] = "arcface"
    margin: float | None = None
    scale: float = 30.0
    sub_centers: int = 1
    imprint: bool = True
    samples_per_label: int = 4
    embedding_size: int = 512
    image_size: int | None = None
    augment: bool = True
    aug_scale: tuple[float, float] = (0.5, 1.0)
    aug_rotation: float = 10.0
    aug_color: float = 0.3
    aug_blur: float = 0.3
    aug_grayscale: float = 0.2
    aug_erasing: float = 0.25
    label_sides: bool = True
    val_fraction: float = 0.2
    validate_before: bool = True
    monitor: Literal["top1", "mAP"] = "top1"
    patience: int = 3
    grad_clip: float = 5.0
    seed: int = 0
    device: str | None = None
    amp: bool = True
    num_workers: int | None = None
    threads: int | None = None
    progress: bool | None = None

    def __post_init__(self) -> None:
        if self.loss not in ("arcface", "triplet"):
            raise ValueError(f"loss must be 'arcface' or 'triplet', not {self.loss!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', not {self.schedule!r}")
        if self.monitor not in ("top1", "mAP"):
            raise ValueError(f"monitor must be 'top1' or 'mAP', not {self.monitor!r}")
        if self.epochs < 0 or self.batch_size < 2 or self.embedding_size < 0 or self.sub_centers < 1:
            raise ValueError("need epochs >= 0, batch_size >= 2, embedding_size >= 0, sub_centers >= 1")
        if self.image_size is not None and self.image_size < 32:
            raise ValueError("image_size must be at least 32")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")
        self.aug_scale = (float(self.aug_scale[0]), float(self.aug_scale[1]))
        if not 0.0 < self.aug_scale[0] <= self.aug_scale[1] <= 1.0:
            raise ValueError("aug_scale must be (low, high) with 0 < low <= high <= 1")

    @property
    def effective_margin(self) -> float:
        """The margin used: ``margin``, or 0.3 (both losses' default) when it is None."""
        return float(self.margin) if self.margin is not None else 0.3

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (``aug_scale`` as a list)."""
        d = dataclasses.asdict(self)
        d["aug_scale"] = list(self.aug_scale)
        return d

    def to_json(self) -> str:
        """The config as JSON (sorted keys), as stored in ``config.json`` and the resumable state."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown fields raise ``ValueError`` (a config from a newer version)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        d = dict(d)
        if "aug_scale" in d:
            d["aug_scale"] = tuple(d["aug_scale"])
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (checked like a new config)."""
        return dataclasses.replace(self, **changes)
