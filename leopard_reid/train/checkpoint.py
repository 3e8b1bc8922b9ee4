"""What a run writes: tensors (safetensors, atomically), optimizer state without pickle, history, curve."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import atomic_write

if TYPE_CHECKING:
    import torch

__all__ = ["load_optimizer", "optimizer_tensors", "plot_history", "save_tensors", "write_history", "write_text"]


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, meta: dict[str, str] | None = None) -> None:
    """Write tensors as safetensors (with string metadata) atomically: a crash never leaves half a file."""

    from safetensors.torch import save

    atomic_write(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta))


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically (UTF-8; temporary file, then rename)."""
    atomic_write(path, text.encode("utf-8"))


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """The optimiser's state as flat tensors plus JSON-able param groups (safetensors, no pickle)."""
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            import torch

            tensors[f"optim.{idx}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    """Inverse of :func:`optimizer_tensors`: load that state back into ``opt``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    opt.load_state_dict({"state": state, "param_groups": groups})


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Draw the training loss and validation metrics per epoch to ``path`` (no pyplot, no backend change)."""

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


def write_history(history: list[dict[str, Any]], path: Path) -> None:
    """The per-epoch history as CSV, atomically."""

    import pandas as pd

    atomic_write(path, pd.DataFrame(history).to_csv(index=False).encode("utf-8"))
