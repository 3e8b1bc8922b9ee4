"""The training loop: :func:`fine_tune` in stages (tables, build, restore or imprint, epochs, save).

Each epoch sets the learning rate per step (linear warm-up, then cosine to ``min_lr_ratio``), trains, validates
on held-out individuals, keeps the best weights and writes the resumable state, so an interrupted run goes
on from its last finished epoch.  :func:`synthetic_pretrain` runs it on a generated coat population.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint import load_optimizer, optimizer_tensors, plot_history, save_tensors, write_history, write_text
from .config import CURVE, FORMAT, HISTORY, LAST_JSON, LAST_STATE, LAST_WEIGHTS, TrainConfig
from .data import TrainSet, class_labels, epoch_batches, split_individuals
from .losses import make_loss
from .model import create_model, preprocessing, train_transform

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

__all__ = ["fine_tune", "synthetic_pretrain"]


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
    from ..embed import Embedder
    from ..evaluation import evaluate

    embedder = Embedder(model, batch_size=max(config.batch_size, 32), num_workers=config.num_workers or 0,
                        progress=False)
    feats = embedder.describe(val_df, root=root, on_error="skip")
    ev = evaluate(val_df, method="global", features=feats, embedder=embedder, root=root)
    return {"top1": ev.top1, "top5": ev.top5, "mAP": ev.mAP, "n_queries": ev.n_queries}


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


@dataclass
class _Run:
    """What the stages of one fine-tuning run share: its tables, model, optimiser and progress so far."""

    config: TrainConfig
    out: Path
    root: Any
    train_df: pd.DataFrame
    val_df: pd.DataFrame | None
    device: torch.device
    model: torch.nn.Module
    prep: dict[str, Any]
    emb_dim: int
    classes: list[str]
    labels: np.ndarray
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    base_lrs: list[float]
    dataset: TrainSet
    per_epoch: int
    total_steps: int
    start_epoch: int = 1
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: tuple[float, float] | None = None
    best_metrics: dict[str, Any] | None = None
    best_epoch: int = 0
    stale: int = 0


def _tables(
    config: TrainConfig, metadata_df: Any, root: Any, val: Any
) -> tuple[pd.DataFrame, pd.DataFrame | None, Any]:
    """The training and validation tables (``val``: a table, a fraction of individuals, or None) and root."""
    import pandas as pd

    from ..io import read_metadata

    if not isinstance(metadata_df, pd.DataFrame) and root is None:
        root = Path(metadata_df).resolve().parent
    df = read_metadata(metadata_df, require=("path", "identity"))
    if isinstance(val, (int, float)) or val is None:
        train_df, val_df = split_individuals(df, config.val_fraction if val is None else float(val), config.seed)
    else:
        train_df = df
        val_df = read_metadata(val, require=("path", "identity"))
        overlap = set(train_df["identity"].astype(str)) & set(val_df["identity"].astype(str))
        if overlap:
            raise ValueError(f"val shares {len(overlap)} individual(s) with training, e.g. {sorted(overlap)[:3]}")
    if len(train_df) < 2:
        raise ValueError("need at least two training images")
    return train_df, val_df, root


def _build(config: TrainConfig, train_df: pd.DataFrame, val_df: pd.DataFrame | None, root: Any, out: Path) -> _Run:
    """Seed, then create the model, loss head, optimiser (two lr groups, no decay on biases/norms), dataset."""
    import numpy as np
    import torch

    from ..io import as_records

    torch.manual_seed(config.seed)
    device = _device(config)
    # channels_last: ~1.7x faster on CPU too, and the layout the Embedder runs (identical numerics)
    model = create_model(config).to(device).to(memory_format=torch.channels_last)
    prep = preprocessing(model)
    size = prep["input_size"][-1]
    emb_dim = config.embedding_size or int(model.num_features)

    labels_str = class_labels(train_df, sides=config.label_sides)
    classes = sorted(set(labels_str.tolist()))
    class_index = {c: i for i, c in enumerate(classes)}
    labels = np.array([class_index[c] for c in labels_str], dtype=np.int64)
    loss_fn = make_loss(config, len(classes), emb_dim).to(device)

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
    dataset = TrainSet(records, labels, train_transform(config, prep), work_size=int(round(size * 1.15)))
    per_epoch = len(epoch_batches(labels, config, 0))
    return _Run(config=config, out=out, root=root, train_df=train_df, val_df=val_df, device=device, model=model,
                prep=prep, emb_dim=emb_dim, classes=classes, labels=labels, loss_fn=loss_fn, optimizer=optimizer,
                base_lrs=base_lrs, dataset=dataset, per_epoch=per_epoch, total_steps=per_epoch * config.epochs)


def _config_json(run: _Run) -> str:
    """``config.json``: how the best weights were made (backbone, preprocessing, config, metrics, versions)."""
    import torch

    from .. import __version__

    config, train_df = run.config, run.train_df
    return json.dumps({
        "format": FORMAT,
        "backbone": config.backbone,
        "num_classes": int(config.embedding_size),
        "embedding_size": int(run.emb_dim),
        "pretrained_cfg": run.prep,
        "train_config": config.to_dict(),
        "epoch": run.best_epoch,
        "val_metrics": run.best_metrics,
        "n_train_images": len(train_df),
        "n_train_classes": len(run.classes),
        "n_val_images": 0 if run.val_df is None else len(run.val_df),
        "labels": "identity+side" if config.label_sides and "side" in train_df.columns else "identity",
        "history": run.history,
        "library_version": __version__,
        "torch_version": torch.__version__,
        "timm_version": __import__("timm").__version__,
    }, indent=1)


def _restore(run: _Run) -> None:
    """Continue from ``out``'s last finished epoch: weights, optimiser, loss head and progress."""
    from safetensors.torch import load_file

    config, out, device = run.config, run.out, run.device
    state = json.loads((out / LAST_JSON).read_text())
    saved = TrainConfig.from_dict(state["train_config"])
    if saved.replace(epochs=config.epochs, progress=config.progress, device=config.device,
                     num_workers=config.num_workers, threads=config.threads) != config:
        raise ValueError(f"{out}: resume needs the same training config (only epochs, device, workers, "
                         "threads and progress may change)")
    run.model.load_state_dict(load_file(str(out / LAST_WEIGHTS), device=str(device)), strict=True)
    extra = load_file(str(out / LAST_STATE), device=str(device))
    run.loss_fn.load_state_dict({k[5:]: v for k, v in extra.items() if k.startswith("loss.")}, strict=True)
    load_optimizer(run.optimizer, extra, state["optimizer_param_groups"])
    run.start_epoch, run.step, run.history = state["epoch"] + 1, state["step"], state["history"]
    run.best = tuple(state["best"]) if state["best"] is not None else None
    run.best_metrics, run.best_epoch, run.stale = state["best_metrics"], state["best_epoch"], state["stale"]


def _imprint(run: _Run) -> None:
    """Start each ArcFace class centre at the mean pretrained embedding of its training images."""
    import numpy as np
    import torch

    from ..embed import Embedder

    config = run.config
    emb = Embedder(run.model, batch_size=max(config.batch_size, 32), num_workers=config.num_workers or 0,
                   progress=False)
    feats = emb.describe(run.train_df, root=run.root, on_error="raise").embeddings
    means = torch.zeros(len(run.classes), run.emb_dim)
    np.add.at(means.numpy(), run.labels, feats)
    run.loss_fn.imprint(means.to(run.device))


def _save_best(run: _Run, epoch: int) -> None:
    """The current weights become ``model.safetensors``."""
    save_tensors(run.model.state_dict(), run.out / "model.safetensors",
                 {"format": FORMAT, "epoch": str(epoch), "backbone": run.config.backbone})


def _train_epoch(run: _Run, epoch: int, bar: Any, workers: int, amp: tuple[bool, Any, Any]) -> list[float]:
    """One pass over the epoch's batches (learning rate set per step); the batch losses."""
    import torch

    config, model, optimizer, device = run.config, run.model, run.optimizer, run.device
    use_amp, amp_dtype, scaler = amp
    model.train()
    run.loss_fn.train()
    torch.manual_seed(config.seed * 100_003 + epoch)
    loader = torch.utils.data.DataLoader(
        run.dataset, batch_sampler=epoch_batches(run.labels, config, epoch), num_workers=workers,
        persistent_workers=False, pin_memory=device.type == "cuda",
    )
    losses = []
    for x, y in loader:
        factor = _lr_factor(config, run.step, run.total_steps, run.per_epoch)
        for g, base in zip(optimizer.param_groups, run.base_lrs):
            g["lr"] = base * factor
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            emb = model(x)
        loss = run.loss_fn(emb.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                           config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        run.step += 1
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}", refresh=False)
    return losses


def _judge_epoch(run: _Run, rec: dict[str, Any], epoch: int, bar: Any) -> None:
    """Validate (if there is a validation table), keep the best weights, count epochs without progress."""
    config = run.config
    if run.val_df is None:
        run.best_metrics, run.best_epoch = None, epoch
        _save_best(run, epoch)
        return
    tv = time.perf_counter()
    metrics = _validate(run.model, run.val_df, run.root, config)
    rec.update(val_top1=metrics["top1"], val_mAP=metrics["mAP"], val_top5=metrics["top5"],
               val_seconds=round(time.perf_counter() - tv, 2))
    other = "mAP" if config.monitor == "top1" else "top1"
    key = (metrics[config.monitor], metrics[other])
    if run.best is None or key > run.best:
        run.best, run.best_metrics, run.best_epoch, run.stale = key, metrics, epoch, 0
        _save_best(run, epoch)
    else:
        run.stale += 1
    bar.set_postfix(epoch=epoch, loss=f"{rec['loss'] or 0:.3f}", val_top1=f"{metrics['top1']:.3f}",
                    val_mAP=f"{metrics['mAP']:.3f}")


def _save_state(run: _Run, epoch: int) -> None:
    """The resumable state: weights, optimizer + loss head, then the JSON that names the epoch (last)."""
    out = run.out
    save_tensors(run.model.state_dict(), out / LAST_WEIGHTS, {"format": FORMAT, "epoch": str(epoch)})
    opt_t, opt_groups = optimizer_tensors(run.optimizer)
    extra = {**opt_t, **{f"loss.{k}": v for k, v in run.loss_fn.state_dict().items()}}
    save_tensors(extra, out / LAST_STATE, {"format": FORMAT, "epoch": str(epoch)})
    write_text(out / "config.json", _config_json(run))
    write_history(run.history, out / HISTORY)
    plot_history(run.history, out / CURVE)
    write_text(out / LAST_JSON, json.dumps({
        "format": FORMAT, "epoch": epoch, "step": run.step, "history": run.history,
        "best": list(run.best) if run.best is not None else None, "best_metrics": run.best_metrics,
        "best_epoch": run.best_epoch, "stale": run.stale, "train_config": run.config.to_dict(),
        "optimizer_param_groups": opt_groups,
        "classes": run.classes,
    }, indent=1))


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
    import torch
    from tqdm.auto import tqdm

    train_df, val_df, root = _tables(config, metadata_df, root, val)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    have_last = (out / LAST_JSON).exists()
    if have_last and not resume:
        raise FileExistsError(f"{out} holds a training run: pass resume=True to continue it, or another folder")

    run = _build(config, train_df, val_df, root, out)
    if have_last:
        _restore(run)
    elif config.imprint and config.loss == "arcface":
        _imprint(run)

    use_amp = config.amp and run.device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    if not have_last and val_df is not None and config.validate_before:
        m0 = _validate(run.model, val_df, root, config)
        run.history.append({"epoch": 0, "loss": None, "lr": None, "val_top1": m0["top1"], "val_mAP": m0["mAP"],
                            "val_top5": m0["top5"], "seconds": 0.0, "cpu_seconds": 0.0, "val_seconds": None})

    show = config.progress if config.progress is not None else sys.stderr.isatty()
    bar = tqdm(total=run.total_steps, initial=min(run.step, run.total_steps), desc="fine-tuning", unit="step",
               disable=not show)
    workers = _workers(config, run.device)
    epoch = run.start_epoch - 1
    try:
        for epoch in range(run.start_epoch, config.epochs + 1):
            if run.best is not None and run.stale >= config.patience > 0:
                break
            t0, c0 = time.perf_counter(), time.process_time()
            losses = _train_epoch(run, epoch, bar, workers, (use_amp, amp_dtype, scaler))
            train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
            rec: dict[str, Any] = {
                "epoch": epoch, "loss": float(np.mean(losses)) if losses else None,
                "lr": config.lr * _lr_factor(config, max(0, run.step - 1), run.total_steps, run.per_epoch),
                "val_top1": None, "val_mAP": None, "val_top5": None,
                "seconds": round(train_s, 2), "cpu_seconds": round(train_cpu, 2), "val_seconds": None}
            _judge_epoch(run, rec, epoch, bar)
            run.history.append(rec)
            _save_state(run, epoch)
            if callback is not None:
                callback(rec, run.model)
    finally:
        bar.close()
    if not (out / "model.safetensors").exists():  # epochs=0, or resumed after the last epoch: save as is
        _save_best(run, epoch)
        write_text(out / "config.json", _config_json(run))
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
    from ..io import read_metadata
    from ..synthetic import generate

    out = Path(out)
    data = Path(data_dir) if data_dir is not None else out / "synthetic_data"
    if (data / "metadata.csv").exists():
        df = read_metadata(data / "metadata.csv")
    else:
        df = generate(data, n_individuals=n_individuals, sightings_per_individual=sightings_per_individual,
                      seed=seed, progress=bool(config.progress))
    return fine_tune(config, df, root=data, out=out, resume=resume)
