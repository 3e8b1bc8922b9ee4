"""The model being fine-tuned: backbone plus projection head, its preprocessing, the training augmentation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .config import TrainConfig

__all__ = ["create_model", "preprocessing", "train_transform"]


def create_model(config: TrainConfig) -> torch.nn.Module:
    """The backbone (pretrained, or ``config.init_checkpoint``) with a projection head of
    ``config.embedding_size`` outputs (timm's classifier slot), preprocessing set to ``config.image_size``."""
    from ..backbones import create_backbone, resolve_checkpoint

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


def preprocessing(model: torch.nn.Module) -> dict[str, Any]:
    """The model's eval preprocessing as written to ``config.json`` (the whole crop squashed, no centre crop)."""

    from ..backbones import data_config

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
