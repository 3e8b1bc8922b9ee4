"""Fine-tuning: metric learning that adapts the pretrained CNN to rosette patterns.

:func:`fine_tune` trains a timm backbone plus a linear projection head (timm's classifier layer with
``num_classes=embedding_size``) with sub-center ArcFace or batch-hard triplet loss, validates each epoch on
held-out *individuals* (leave-one-out top-1/mAP of the global embedding, via :func:`leopard_reid.evaluate`),
keeps the best weights, stops early, and writes a checkpoint folder::

    out/model.safetensors     best weights (backbone + projection head), loadable by
                              Embedder(checkpoint=out), create_backbone(checkpoint=out), the CLI's --checkpoint
    out/config.json           backbone, num_classes, preprocessing, training config, val metrics, versions
    out/history.csv           per-epoch loss, val metrics, seconds
    out/training_curve.png    loss and val metrics per epoch
    out/last.safetensors      the last epoch's weights  } for resume=True: an interrupted run goes on from its
    out/last_state.safetensors  optimizer + loss head   } last finished epoch (no pickle anywhere on disk)
    out/last_state.json       epoch, step, history, best

Labels are identity + side when sides are known (a left flank is a different pattern from the right one).
Augmentations never flip images: a mirrored left flank is not a right flank.

Heavy libraries (torch, timm, torchvision, matplotlib) are imported inside functions, so importing this module
(and ``leopard-reid --help``) stays cheap.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import argparse

    import numpy as np
    import pandas as pd
    import torch

__all__ = ["TrainConfig", "fine_tune", "register_cli", "synthetic_pretrain", "train_transform"]

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
        return float(self.margin) if self.margin is not None else 0.3

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["aug_scale"] = list(self.aug_scale)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
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
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------------------------------------ model
def create_model(config: TrainConfig) -> torch.nn.Module:
    """The backbone (pretrained, or ``config.init_checkpoint``) with a projection head of
    ``config.embedding_size`` outputs (timm's classifier slot), preprocessing set to ``config.image_size``."""
    from .backbones import create_backbone, resolve_checkpoint

    if config.init_checkpoint:
        init_cfg = resolve_checkpoint(config.init_checkpoint)[1]
        if init_cfg.get("backbone", config.backbone) != config.backbone:
            raise ValueError(f"init_checkpoint {config.init_checkpoint} is a {init_cfg['backbone']!r} model, "
                             f"not {config.backbone!r}")
        model = create_backbone(config.backbone, checkpoint=config.init_checkpoint)
        have = int(init_cfg.get("num_classes", 0))
        if have != config.embedding_size:
            model.reset_classifier(config.embedding_size)
    else:
        model = create_backbone(config.backbone, num_classes=0)
        if config.embedding_size:
            model.reset_classifier(config.embedding_size)
    pcfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    if config.image_size:
        pcfg["input_size"] = (3, int(config.image_size), int(config.image_size))
    if "input_size" in pcfg:
        pcfg["input_size"] = tuple(int(v) for v in pcfg["input_size"])
    model.pretrained_cfg = pcfg
    return model


def _preprocessing(model: torch.nn.Module) -> dict[str, Any]:
    from .backbones import data_config

    cfg = data_config(model)
    return {
        "input_size": [int(v) for v in cfg["input_size"]],
        "mean": [float(v) for v in cfg["mean"]],
        "std": [float(v) for v in cfg["std"]],
        "interpolation": str(cfg.get("interpolation", "bicubic")),
        "crop_pct": 1.0,
        "crop_mode": "squash",
    }


def train_transform(config: TrainConfig, data_cfg: dict[str, Any]) -> Any:
    """The training augmentation for flank crops (PIL image in, normalised tensor out).

    Like the Embedder's eval transform, the whole crop is first squashed to a square; then a small random
    rotation, a random resized crop (``aug_scale`` of the area), colour jitter, greyscale (infrared night
    shots), blur and random erasing (occlusions). Never a flip: a mirrored left flank is not a right flank.
    """
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    size = int(data_cfg["input_size"][-1])
    interp = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
              "nearest": InterpolationMode.NEAREST}.get(str(data_cfg.get("interpolation")), InterpolationMode.BICUBIC)
    norm = [T.ToTensor(), T.Normalize(mean=list(data_cfg["mean"]), std=list(data_cfg["std"]))]
    if not config.augment:
        return T.Compose([T.Resize((size, size), interpolation=interp), *norm])
    big = int(round(size * 1.15))
    steps: list[Any] = [T.Resize((big, big), interpolation=interp)]
    if config.aug_rotation > 0:
        steps.append(T.RandomRotation(config.aug_rotation, interpolation=InterpolationMode.BILINEAR))
    steps.append(T.RandomResizedCrop(size, scale=config.aug_scale, ratio=(0.8, 1.25), interpolation=interp))
    if config.aug_color > 0:
        c = config.aug_color
        steps.append(T.RandomApply([T.ColorJitter(c, c, c * 0.7, min(0.05, c / 6))], p=0.8))
    if config.aug_grayscale > 0:
        steps.append(T.RandomGrayscale(p=config.aug_grayscale))
    if config.aug_blur > 0:
        k = max(3, (size // 40) | 1)
        steps.append(T.RandomApply([T.GaussianBlur(k, sigma=(0.1, 1.5))], p=config.aug_blur))
    steps.extend(norm)
    if config.aug_erasing > 0:
        steps.append(T.RandomErasing(p=config.aug_erasing, scale=(0.02, 0.12), value=0))
    return T.Compose(steps)


# ------------------------------------------------------------------------------------------------ losses
def _make_loss(config: TrainConfig, num_classes: int, dim: int) -> torch.nn.Module:
    import torch
    import torch.nn.functional as F

    class SubCenterArcFace(torch.nn.Module):
        """Additive angular margin on the target class; each class has ``k`` sub-centres (max over them)."""

        def __init__(self) -> None:
            super().__init__()
            self.k, self.num_classes = config.sub_centers, num_classes
            self.s, self.m = config.scale, config.effective_margin
            self.weight = torch.nn.Parameter(torch.randn(num_classes * self.k, dim) * 0.01)

        def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            cos = F.linear(F.normalize(emb.float(), dim=1), F.normalize(self.weight, dim=1))
            cos = cos.view(len(emb), self.num_classes, self.k).amax(2).clamp(-1 + 1e-6, 1 - 1e-6)
            target = cos.gather(1, labels[:, None])
            theta = torch.acos(target)
            # past pi - m the margin would make the logit go up again: fall back to a linear penalty
            with_margin = torch.where(theta + self.m < math.pi, torch.cos(theta + self.m),
                                      target - self.m * math.sin(self.m))
            logits = cos.scatter(1, labels[:, None], with_margin) * self.s
            return F.cross_entropy(logits, labels)

        @torch.no_grad()
        def imprint(self, means: torch.Tensor) -> None:
            """Start each class (all sub-centres) at the mean embedding of its images."""
            w = F.normalize(means.float(), dim=1).repeat_interleave(self.k, 0)
            self.weight.copy_(w + torch.randn_like(w) * (0.01 if self.k > 1 else 0.0))

    class BatchHardTriplet(torch.nn.Module):
        """Batch-hard triplet loss on cosine distance of L2-normalised embeddings (P x K batches)."""

        def __init__(self) -> None:
            super().__init__()
            self.m = config.effective_margin

        def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            e = F.normalize(emb.float(), dim=1)
            dist = 1.0 - e @ e.T
            same = labels[:, None] == labels[None, :]
            eye = torch.eye(len(e), dtype=torch.bool, device=e.device)
            pos = same & ~eye
            has = pos.any(1) & (~same).any(1)
            if not has.any():
                return (emb * 0).sum()
            hardest_pos = dist.masked_fill(~pos, -1.0).amax(1)
            hardest_neg = dist.masked_fill(same, 3.0).amin(1)
            return F.relu(hardest_pos - hardest_neg + self.m)[has].mean()

    return SubCenterArcFace() if config.loss == "arcface" else BatchHardTriplet()


# ------------------------------------------------------------------------------------------------ data
class _TrainSet:
    """Decodes each crop once (squashed to the augmentation's working size), then augments per epoch."""

    def __init__(self, records: list, labels: np.ndarray, transform: Any, work_size: int) -> None:
        self.records, self.labels, self.transform, self.work_size = records, labels, transform, work_size
        self.cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.records)

    def load(self, i: int) -> Any:
        from PIL import Image

        from .io import load_image

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


def _labels(df: pd.DataFrame, *, sides: bool) -> np.ndarray:
    """Class label per row: identity, plus the flank side where it is known."""
    import numpy as np

    ident = df["identity"].astype(str).to_numpy(dtype=object)
    if sides and "side" in df.columns:
        side = df["side"].astype(str).str.lower().to_numpy(dtype=object)
        ident = np.array([f"{i}|{s}" if s in ("left", "right") else i for i, s in zip(ident, side)], dtype=object)
    return ident


def _batches(labels: np.ndarray, config: TrainConfig, epoch: int) -> list[list[int]]:
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


def _split_val(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Hold out ``fraction`` of the individuals (all their images) for validation."""
    import numpy as np

    ids = np.array(sorted(df["identity"].astype(str).unique()), dtype=object)
    n_val = int(round(len(ids) * fraction))
    if fraction <= 0 or n_val < 2 or len(ids) - n_val < 2:
        return df.reset_index(drop=True), None
    val_ids = set(np.random.default_rng([seed, 11]).choice(ids, size=n_val, replace=False).tolist())
    is_val = df["identity"].astype(str).isin(val_ids)
    return df[~is_val].reset_index(drop=True), df[is_val].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ state I/O
def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, meta: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            import torch

            tensors[f"optim.{idx}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    opt.load_state_dict({"state": state, "param_groups": groups})


# ------------------------------------------------------------------------------------------------ helpers
def _device(config: TrainConfig) -> torch.device:
    import torch

    return torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _workers(config: TrainConfig, device: torch.device) -> int:
    if config.num_workers is not None:
        return int(config.num_workers)
    cores = os.cpu_count() or 1
    return 0 if device.type == "cpu" and cores <= 2 else min(4, max(0, cores - 1))


def _lr_factor(config: TrainConfig, step: int, total: int, per_epoch: int) -> float:
    warm = int(round(config.warmup_epochs * per_epoch))
    if warm > 0 and step < warm:
        return (step + 1) / warm
    if config.schedule == "constant" or total <= warm:
        return 1.0
    t = min(1.0, (step - warm) / max(1, total - warm))
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def _validate(model: torch.nn.Module, val_df: pd.DataFrame, root: Any, config: TrainConfig) -> dict[str, float]:
    """Leave-one-out global-embedding metrics on the held-out individuals (model left in eval mode)."""
    from .embed import Embedder
    from .evaluation import evaluate

    embedder = Embedder(model, batch_size=max(config.batch_size, 32), num_workers=config.num_workers or 0,
                        progress=False)
    feats = embedder.describe(val_df, root=root, on_error="skip")
    ev = evaluate(val_df, method="global", features=feats, embedder=embedder, root=root)
    return {"top1": ev.top1, "top5": ev.top5, "mAP": ev.mAP, "n_queries": ev.n_queries}


def _plot(history: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    ep = [h["epoch"] for h in history if h.get("loss") is not None]
    ax.plot(ep, [h["loss"] for h in history if h.get("loss") is not None], "o-", color="tab:red", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="tab:red")
    vals = [h for h in history if h.get("val_top1") is not None]
    if vals:
        ax2 = ax.twinx()
        ax2.plot([h["epoch"] for h in vals], [h["val_top1"] for h in vals], "s-", color="tab:blue", label="val top-1")
        ax2.plot([h["epoch"] for h in vals], [h["val_mAP"] for h in vals], "^--", color="tab:green", label="val mAP")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("validation (held-out individuals)")
        ax2.legend(loc="lower right")
    ax.set_title("leopard_reid fine-tuning")
    fig.tight_layout()
    fig.savefig(str(path))


def _write_history(history: list[dict[str, Any]], path: Path) -> None:
    import pandas as pd

    tmp = path.with_name(path.name + ".tmp")
    pd.DataFrame(history).to_csv(tmp, index=False)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------ training
def _config_threads(fn: Callable[..., Path]) -> Callable[..., Path]:
    """Run ``fn(config, ...)`` with ``config.threads`` torch threads, restoring the caller's setting after."""
    import functools

    @functools.wraps(fn)
    def wrapper(config: TrainConfig, *args: Any, **kwargs: Any) -> Path:
        import torch

        before = torch.get_num_threads()
        if config.threads:
            torch.set_num_threads(int(config.threads))
        try:
            return fn(config, *args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper


@_config_threads
def fine_tune(
    config: TrainConfig,
    metadata_df: pd.DataFrame | str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    out: str | os.PathLike = "leopard_reid_model",
    val: pd.DataFrame | float | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, Any], torch.nn.Module], None] | None = None,
) -> Path:
    """Fine-tune ``config.backbone`` on a labelled table and return the checkpoint folder ``out`` (see
    :func:`_fine_tune`). Seeded by ``config.seed`` on a private copy of torch's random state: the caller's
    global RNG is the same afterwards as before."""
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        return _fine_tune(config, metadata_df, root=root, out=out, val=val, resume=resume, callback=callback)


def _fine_tune(
    config: TrainConfig,
    metadata_df: pd.DataFrame | str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    out: str | os.PathLike = "leopard_reid_model",
    val: pd.DataFrame | float | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, Any], torch.nn.Module], None] | None = None,
) -> Path:
    """Fine-tune ``config.backbone`` on a labelled table (``path``, ``identity``, optional ``bbox``/``side``)
    and return the checkpoint folder ``out``.

    ``val``: a table of *other* individuals to validate on each epoch, a fraction of the individuals to hold
    out (default ``config.val_fraction``), or ``0`` for none (then the last epoch is kept). Paths of both
    tables are relative to ``root`` (default: the CSV's folder, or the working directory). ``resume=True``
    continues an interrupted run in ``out`` from its last finished epoch (same config, ``epochs`` may grow).
    ``callback(record, model)`` is called after each epoch with that epoch's history row and the model.
    """
    import numpy as np
    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    from . import __version__
    from .io import as_records, read_metadata

    if not isinstance(metadata_df, pd.DataFrame) and root is None:
        root = Path(metadata_df).resolve().parent
    df = read_metadata(metadata_df, require=("path", "identity"))
    if isinstance(val, (int, float)) or val is None:
        train_df, val_df = _split_val(df, config.val_fraction if val is None else float(val), config.seed)
    else:
        train_df = df
        val_df = read_metadata(val, require=("path", "identity"))
        overlap = set(train_df["identity"].astype(str)) & set(val_df["identity"].astype(str))
        if overlap:
            raise ValueError(f"val shares {len(overlap)} individual(s) with training, e.g. {sorted(overlap)[:3]}")
    if len(train_df) < 2:
        raise ValueError("need at least two training images")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    have_last = (out / LAST_JSON).exists()
    if have_last and not resume:
        raise FileExistsError(f"{out} holds a training run: pass resume=True to continue it, or another folder")

    torch.manual_seed(config.seed)
    device = _device(config)
    # channels_last: ~1.7x faster on CPU too, and the layout the Embedder runs (identical numerics)
    model = create_model(config).to(device).to(memory_format=torch.channels_last)
    prep = _preprocessing(model)
    size = prep["input_size"][-1]
    emb_dim = config.embedding_size or int(model.num_features)

    labels_str = _labels(train_df, sides=config.label_sides)
    classes = sorted(set(labels_str.tolist()))
    class_index = {c: i for i, c in enumerate(classes)}
    labels = np.array([class_index[c] for c in labels_str], dtype=np.int64)
    loss_fn = _make_loss(config, len(classes), emb_dim).to(device)

    head_names = {n for n, _ in model.named_parameters() if n.startswith(("classifier.", "head.fc.", "fc."))}
    backbone_params = [p for n, p in model.named_parameters() if n not in head_names]
    head_params = [p for n, p in model.named_parameters() if n in head_names] + list(loss_fn.parameters())

    def groups(params: list, lr: float) -> list[dict[str, Any]]:
        decay = [p for p in params if p.ndim >= 2]
        rest = [p for p in params if p.ndim < 2]
        return [{"params": decay, "lr": lr, "weight_decay": config.weight_decay},
                {"params": rest, "lr": lr, "weight_decay": 0.0}]

    param_groups = groups(backbone_params, config.lr) + groups(head_params, config.lr * config.head_lr_factor)
    base_lrs = [g["lr"] for g in param_groups]
    optimizer = torch.optim.AdamW(param_groups)

    records = as_records(train_df, root=root)
    dataset = _TrainSet(records, labels, train_transform(config, prep), work_size=int(round(size * 1.15)))
    per_epoch = len(_batches(labels, config, 0))
    total_steps = per_epoch * config.epochs

    def config_json(metrics: dict[str, Any] | None, epoch: int, history: list) -> str:
        return json.dumps({
            "format": FORMAT,
            "backbone": config.backbone,
            "num_classes": int(config.embedding_size),
            "embedding_size": int(emb_dim),
            "pretrained_cfg": prep,
            "train_config": config.to_dict(),
            "epoch": epoch,
            "val_metrics": metrics,
            "n_train_images": len(train_df),
            "n_train_classes": len(classes),
            "n_val_images": 0 if val_df is None else len(val_df),
            "labels": "identity+side" if config.label_sides and "side" in train_df.columns else "identity",
            "history": history,
            "library_version": __version__,
            "torch_version": torch.__version__,
            "timm_version": __import__("timm").__version__,
        }, indent=1)

    start_epoch, step, history = 1, 0, []
    best: tuple[float, float] | None = None
    best_metrics: dict[str, Any] | None = None
    best_epoch, stale = 0, 0
    if have_last:
        from safetensors.torch import load_file

        state = json.loads((out / LAST_JSON).read_text())
        saved = TrainConfig.from_dict(state["train_config"])
        if saved.replace(epochs=config.epochs, progress=config.progress, device=config.device,
                         num_workers=config.num_workers, threads=config.threads) != config:
            raise ValueError(f"{out}: resume needs the same training config (only epochs, device, workers, "
                             "threads and progress may change)")
        model.load_state_dict(load_file(str(out / LAST_WEIGHTS), device=str(device)), strict=True)
        extra = load_file(str(out / LAST_STATE), device=str(device))
        loss_fn.load_state_dict({k[5:]: v for k, v in extra.items() if k.startswith("loss.")}, strict=True)
        _load_optimizer(optimizer, extra, state["optimizer_param_groups"])
        start_epoch, step, history = state["epoch"] + 1, state["step"], state["history"]
        best = tuple(state["best"]) if state["best"] is not None else None
        best_metrics, best_epoch, stale = state["best_metrics"], state["best_epoch"], state["stale"]
    elif config.imprint and config.loss == "arcface":
        from .embed import Embedder

        emb = Embedder(model, batch_size=max(config.batch_size, 32), num_workers=config.num_workers or 0,
                       progress=False)
        feats = emb.describe(train_df, root=root, on_error="raise").embeddings
        means = torch.zeros(len(classes), emb_dim)
        np.add.at(means.numpy(), labels, feats)
        loss_fn.imprint(means.to(device))

    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    def save_best(metrics: dict[str, Any] | None, epoch: int) -> None:
        _save_tensors(model.state_dict(), out / "model.safetensors",
                      {"format": FORMAT, "epoch": str(epoch), "backbone": config.backbone})

    if not have_last and val_df is not None and config.validate_before:
        m0 = _validate(model, val_df, root, config)
        history.append({"epoch": 0, "loss": None, "lr": None, "val_top1": m0["top1"], "val_mAP": m0["mAP"],
                        "val_top5": m0["top5"], "seconds": 0.0, "cpu_seconds": 0.0, "val_seconds": None})

    show = config.progress if config.progress is not None else sys.stderr.isatty()
    bar = tqdm(total=total_steps, initial=min(step, total_steps), desc="fine-tuning", unit="step", disable=not show)
    workers = _workers(config, device)
    epoch = start_epoch - 1
    try:
        for epoch in range(start_epoch, config.epochs + 1):
            if best is not None and stale >= config.patience > 0:
                break
            t0, c0 = time.perf_counter(), time.process_time()
            model.train()
            loss_fn.train()
            torch.manual_seed(config.seed * 100_003 + epoch)
            loader = torch.utils.data.DataLoader(
                dataset, batch_sampler=_batches(labels, config, epoch), num_workers=workers,
                persistent_workers=False, pin_memory=device.type == "cuda",
            )
            losses = []
            for x, y in loader:
                factor = _lr_factor(config, step, total_steps, per_epoch)
                for g, base in zip(optimizer.param_groups, base_lrs):
                    g["lr"] = base * factor
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    emb = model(x)
                loss = loss_fn(emb.float(), y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                                   config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                step += 1
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}", refresh=False)
            train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
            rec: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else None,
                                   "lr": config.lr * _lr_factor(config, max(0, step - 1), total_steps, per_epoch),
                                   "val_top1": None, "val_mAP": None, "val_top5": None,
                                   "seconds": round(train_s, 2), "cpu_seconds": round(train_cpu, 2),
                                   "val_seconds": None}
            metrics = None
            if val_df is not None:
                tv = time.perf_counter()
                metrics = _validate(model, val_df, root, config)
                rec.update(val_top1=metrics["top1"], val_mAP=metrics["mAP"], val_top5=metrics["top5"],
                           val_seconds=round(time.perf_counter() - tv, 2))
                other = "mAP" if config.monitor == "top1" else "top1"
                key = (metrics[config.monitor], metrics[other])
                if best is None or key > best:
                    best, best_metrics, best_epoch, stale = key, metrics, epoch, 0
                    save_best(metrics, epoch)
                else:
                    stale += 1
                bar.set_postfix(epoch=epoch, loss=f"{rec['loss'] or 0:.3f}", val_top1=f"{metrics['top1']:.3f}",
                                val_mAP=f"{metrics['mAP']:.3f}")
            else:
                best_metrics, best_epoch = None, epoch
                save_best(None, epoch)
            history.append(rec)
            # the resumable state: weights, optimizer + loss head, then the JSON that names the epoch (last)
            _save_tensors(model.state_dict(), out / LAST_WEIGHTS, {"format": FORMAT, "epoch": str(epoch)})
            opt_t, opt_groups = _optimizer_tensors(optimizer)
            extra = {**opt_t, **{f"loss.{k}": v for k, v in loss_fn.state_dict().items()}}
            _save_tensors(extra, out / LAST_STATE, {"format": FORMAT, "epoch": str(epoch)})
            _write_text(out / "config.json", config_json(best_metrics, best_epoch, history))
            _write_history(history, out / HISTORY)
            _plot(history, out / CURVE)
            _write_text(out / LAST_JSON, json.dumps({
                "format": FORMAT, "epoch": epoch, "step": step, "history": history,
                "best": list(best) if best is not None else None, "best_metrics": best_metrics,
                "best_epoch": best_epoch, "stale": stale, "train_config": config.to_dict(),
                "optimizer_param_groups": opt_groups,
                "classes": classes,
            }, indent=1))
            if callback is not None:
                callback(rec, model)
    finally:
        bar.close()
    if not (out / "model.safetensors").exists():  # epochs=0, or resumed after the last epoch: save as is
        save_best(None, epoch)
        _write_text(out / "config.json", config_json(best_metrics, best_epoch, history))
    return out


def synthetic_pretrain(
    config: TrainConfig,
    out: str | os.PathLike,
    *,
    n_individuals: int = 200,
    sightings_per_individual: int = 6,
    seed: int = 12345,
    data_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> Path:
    """Pre-train on a synthetic coat population (:func:`leopard_reid.synthetic.generate`), teaching pattern
    sensitivity before any real label exists. Images go to ``data_dir`` (default ``out/synthetic_data``; reused
    when its ``metadata.csv`` exists). Returns the checkpoint folder, e.g. for ``TrainConfig.init_checkpoint``."""
    from .io import read_metadata
    from .synthetic import generate

    out = Path(out)
    data = Path(data_dir) if data_dir is not None else out / "synthetic_data"
    if (data / "metadata.csv").exists():
        df = read_metadata(data / "metadata.csv")
    else:
        df = generate(data, n_individuals=n_individuals, sightings_per_individual=sightings_per_individual,
                      seed=seed, progress=bool(config.progress))
    return fine_tune(config, df, root=data, out=out, resume=resume)


# ------------------------------------------------------------------------------------------------ CLI
def register_cli(subparsers: Any) -> None:
    """Add ``leopard-reid train`` (called by :func:`leopard_reid.cli.build_parser`)."""
    d = TrainConfig()
    p = subparsers.add_parser("train", help="fine-tune the CNN on labelled photos (metric learning)")
    p.add_argument("--metadata", default=None, help="CSV with path,identity[,bbox,side] (optional with "
                   "--synthetic-pretrain)")
    p.add_argument("--root", default=None, help="folder the CSV's paths are relative to (default: the CSV's folder)")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--backbone", default=d.backbone)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--loss", choices=("arcface", "triplet"), default=d.loss)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--embedding-size", type=int, default=d.embedding_size, help="projection size (0: backbone's)")
    p.add_argument("--image-size", type=int, default=None, help="default: the backbone's pretrained input size")
    p.add_argument("--margin", type=float, default=None)
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="individuals held out for validation")
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=None)
    p.add_argument("--workers", type=int, default=None, help="data loader processes")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is faster on a busy CPU)")
    p.add_argument("--init-checkpoint", default=None, help="start from this fine-tuned checkpoint")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--synthetic-pretrain", type=int, default=0, metavar="N",
                   help="first pre-train on N synthetic individuals (into OUT/synthetic_pretrain)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    if not args.metadata and not args.synthetic_pretrain:
        print("leopard-reid train: give --metadata CSV and/or --synthetic-pretrain N", file=sys.stderr)
        return 2
    config = TrainConfig(
        backbone=args.backbone, epochs=args.epochs, loss=args.loss, batch_size=args.batch_size, lr=args.lr,
        embedding_size=args.embedding_size, image_size=args.image_size, margin=args.margin,
        val_fraction=args.val_fraction, patience=args.patience, seed=args.seed, device=args.device,
        num_workers=args.workers, threads=args.threads, init_checkpoint=args.init_checkpoint,
    )
    out = Path(args.out)
    if args.synthetic_pretrain:
        target = out / "synthetic_pretrain" if args.metadata else out
        ckpt = synthetic_pretrain(config, target, n_individuals=args.synthetic_pretrain, seed=args.seed,
                                  resume=args.resume and (target / LAST_JSON).exists())
        _report(ckpt)
        if not args.metadata:
            return 0
        config = config.replace(init_checkpoint=str(ckpt))
    from .io import read_metadata

    csv = Path(args.metadata)
    root = Path(args.root) if args.root else csv.resolve().parent
    ckpt = fine_tune(config, read_metadata(csv, require=("path", "identity")), root=root, out=out,
                     resume=args.resume)
    _report(ckpt)
    return 0


def _report(folder: Path) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    m = cfg.get("val_metrics") or {}
    val = f", val top-1 {m['top1']:.3f}, mAP {m['mAP']:.3f}" if m else ""
    print(f"{folder}: epoch {cfg.get('epoch')}{val} (use --checkpoint {folder})")
