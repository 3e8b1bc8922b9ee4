"""The ``train`` command: fine-tune the CNN on labelled photos (see :mod:`leopard_reid.train`).

Only argparse at import time: the training package (and torch) is imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_OK, EXIT_USAGE


def register(subparsers: Any) -> None:
    """Add ``leopard-reid train`` (called by :func:`leopard_reid.cli.build_parser`)."""
    from ..train.config import TrainConfig  # cheap: no torch at import time

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
    """Fine-tune (after an optional synthetic pre-training) and print where the checkpoint is."""
    from ..train import TrainConfig, fine_tune, synthetic_pretrain
    from ..train.config import LAST_JSON

    if not args.metadata and not args.synthetic_pretrain:
        print("leopard-reid train: give --metadata CSV and/or --synthetic-pretrain N", file=sys.stderr)
        return EXIT_USAGE
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
            return EXIT_OK
        config = config.replace(init_checkpoint=str(ckpt))
    from ..io import read_metadata

    csv = Path(args.metadata)
    root = Path(args.root) if args.root else csv.resolve().parent
    ckpt = fine_tune(config, read_metadata(csv, require=("path", "identity")), root=root, out=out,
                     resume=args.resume)
    _report(ckpt)
    return EXIT_OK


def _report(folder: Path) -> None:
    """One line: the checkpoint folder, its epoch and validation metrics."""
    cfg = json.loads((folder / "config.json").read_text())
    m = cfg.get("val_metrics") or {}
    val = f", val top-1 {m['top1']:.3f}, mAP {m['mAP']:.3f}" if m else ""
    print(f"{folder}: epoch {cfg.get('epoch')}{val} (use --checkpoint {folder})")
