"""Does fine-tuning help?  Global-embedding top-1 before/after on held-out synthetic individuals.

    python benchmarks/bench_train.py                      # 60x6 train (seed 101), 5 epochs, 30x4 test (seed 202)
    python benchmarks/bench_train.py --leopardtrails      # also evaluate on /work/shared/data/leopardtrails
    python benchmarks/bench_train.py --data /tmp/bt       # keep/reuse the generated images there
    python benchmarks/bench_train.py --device cuda --workers 4   # on a GPU machine

Protocol: :func:`leopard_reid.synthetic.generate` draws a training population (``--train-individuals`` x
``--train-sightings``, seed ``--train-seed``) and a test population of *different* individuals (another seed).
:func:`leopard_reid.train.fine_tune` trains on the first (by default on all its individuals, last epoch kept;
``--val-fraction`` holds some out for per-epoch validation and best-epoch selection). Defaults: ArcFace,
512-d projection head, 224 px input (pretrained size), batch 16, AdamW lr 1e-3 (head 1e-2), cosine.
Both the ImageNet weights (``Embedder()``) and the fine-tuned checkpoint (``Embedder(checkpoint=...)``)
are scored with ``leopard_reid.evaluate(test_csv, method="global")``: leave-one-out, label = identity,
side-aware (a query is compared with same-side images), top-1 by best exemplar. Seconds per epoch are
wall-clock training seconds (validation separate) on this machine's CPU, with 2 torch threads by default
(on a quiet 2-core CPU one step of batch 16 took 0.7 s with 2 threads, 1.2 s with 1; on a CPU shared with
other jobs, 2 OpenMP threads were slower: pass ``--threads 1`` there). ``--head-lr-factor``,
``--warmup-epochs``, ``--min-lr-ratio``, ``--margin``, ``--scale``, ``--sub-centers`` override TrainConfig.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LEOPARDTRAILS = Path("/work/shared/data/leopardtrails/metadata.csv")


def population(folder: Path, n: int, k: int, seed: int):
    from leopard_reid.io import read_metadata
    from leopard_reid.synthetic import generate

    csv = folder / "metadata.csv"
    if csv.exists():
        df = read_metadata(csv, require=("path", "identity"))
        if df["identity"].nunique() == n and len(df) == n * k:
            return df, 0.0
    t = time.perf_counter()
    df = generate(folder, n_individuals=n, sightings_per_individual=k, seed=seed)
    return df, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-individuals", type=int, default=60)
    ap.add_argument("--train-sightings", type=int, default=6)
    ap.add_argument("--train-seed", type=int, default=101)
    ap.add_argument("--test-individuals", type=int, default=30)
    ap.add_argument("--test-sightings", type=int, default=4)
    ap.add_argument("--test-seed", type=int, default=202)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--loss", choices=("arcface", "triplet"), default="arcface")
    ap.add_argument("--embedding-size", type=int, default=512)
    ap.add_argument("--image-size", type=int, default=0, help="0: the backbone's pretrained size (224)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--head-lr-factor", type=float, default=None, help="head lr = lr x this (default: TrainConfig's)")
    ap.add_argument("--warmup-epochs", type=float, default=None, help="linear warmup (default: TrainConfig's)")
    ap.add_argument("--min-lr-ratio", type=float, default=None, help="cosine floor (default: TrainConfig's)")
    ap.add_argument("--margin", type=float, default=None, help="ArcFace margin in rad (default: the loss's)")
    ap.add_argument("--scale", type=float, default=None, help="ArcFace scale (default: TrainConfig's)")
    ap.add_argument("--sub-centers", type=int, default=None, help="ArcFace sub-centres per class")
    ap.add_argument("--val-fraction", type=float, default=0.0,
                    help="individuals held out for per-epoch validation (0: train on all, keep the last epoch)")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads (2 on a quiet 2-core CPU; 1 can be faster when the CPU is busy)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="torch device for training and embedding (cpu, cuda)")
    ap.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    ap.add_argument("--data", default=None, help="folder for the generated images (default: a temporary one)")
    ap.add_argument("--out", default=None, help="checkpoint folder (default: inside --data)")
    ap.add_argument("--leopardtrails", action="store_true", help="also score leopardtrails before/after")
    ap.add_argument("--json", default=None, help="write the summary here too")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from leopard_reid.embed import Embedder
    from leopard_reid.evaluation import evaluate
    from leopard_reid.train import TrainConfig, fine_tune

    tmp = None
    if args.data is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_train_")
        data = Path(tmp.name)
    else:
        data = Path(args.data)
    train_dir = data / f"train_{args.train_individuals}x{args.train_sightings}_s{args.train_seed}"
    test_dir = data / f"test_{args.test_individuals}x{args.test_sightings}_s{args.test_seed}"
    train_df, gen_train = population(train_dir, args.train_individuals, args.train_sightings, args.train_seed)
    test_df, gen_test = population(test_dir, args.test_individuals, args.test_sightings, args.test_seed)
    print(f"data: train {len(train_df)} images ({gen_train:.0f} s), test {len(test_df)} images ({gen_test:.0f} s)",
          flush=True)

    def score(embedder: Embedder, csv: Path) -> dict:
        ev = evaluate(csv, method="global", embedder=embedder)
        return {"top1": round(ev.top1, 4), "top5": round(ev.top5, 4), "mAP": round(ev.mAP, 4),
                "n_queries": ev.n_queries}

    base = Embedder(device=args.device, num_workers=args.workers, progress=False)
    before = score(base, test_dir / "metadata.csv")
    print(f"ImageNet weights, test: {before}", flush=True)

    extra = {k: v for k, v in (("head_lr_factor", args.head_lr_factor), ("warmup_epochs", args.warmup_epochs),
                                ("min_lr_ratio", args.min_lr_ratio), ("margin", args.margin),
                                ("scale", args.scale), ("sub_centers", args.sub_centers)) if v is not None}
    config = TrainConfig(
        **extra,
        epochs=args.epochs, loss=args.loss, embedding_size=args.embedding_size, image_size=args.image_size or None,
        batch_size=args.batch_size, lr=args.lr, val_fraction=args.val_fraction, seed=args.seed, device=args.device,
        threads=args.threads, num_workers=args.workers, patience=0, progress=sys.stderr.isatty(),
    )
    out = Path(args.out) if args.out else data / f"ckpt_{args.loss}_{int(time.time())}"
    t0, c0 = time.perf_counter(), time.process_time()
    folder = fine_tune(config, train_df, root=train_dir, out=out)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    cfg = json.loads((folder / "config.json").read_text())
    epochs = [h for h in cfg["history"] if h["epoch"] > 0]
    for h in cfg["history"]:
        print(f"  epoch {h['epoch']}: loss {h['loss'] if h['loss'] is None else round(h['loss'], 3)}, "
              f"val top-1 {h['val_top1']}, val mAP {h['val_mAP'] and round(h['val_mAP'], 3)}, "
              f"train {h['seconds']} s (process CPU {h['cpu_seconds']} s), val {h['val_seconds']} s", flush=True)
    tuned = Embedder(checkpoint=folder, device=args.device, num_workers=args.workers, progress=False)
    after = score(tuned, test_dir / "metadata.csv")
    print(f"fine-tuned (best epoch {cfg['epoch']}), test: {after}", flush=True)
    summary = {
        "train": f"{args.train_individuals}x{args.train_sightings} seed {args.train_seed}",
        "test": f"{args.test_individuals}x{args.test_sightings} seed {args.test_seed}",
        "config": config.to_dict(),
        "before_top1": before["top1"], "after_top1": after["top1"],
        "gain_top1": round(after["top1"] - before["top1"], 4),
        "before": before, "after": after, "best_epoch": cfg["epoch"],
        "seconds_per_epoch": [h["seconds"] for h in epochs],
        "cpu_seconds_per_epoch": [h["cpu_seconds"] for h in epochs],
        "val_seconds_per_epoch": [h["val_seconds"] for h in epochs],
        "fine_tune_wall_s": round(wall, 1), "fine_tune_process_cpu_s": round(cpu, 1),
        "torch_threads": args.threads, "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(), "checkpoint": str(folder),
    }
    if args.leopardtrails and LEOPARDTRAILS.exists():
        summary["leopardtrails_before"] = score(base, LEOPARDTRAILS)
        summary["leopardtrails_after"] = score(tuned, LEOPARDTRAILS)
        print(f"leopardtrails: before {summary['leopardtrails_before']}, after {summary['leopardtrails_after']}")
    sec = summary["seconds_per_epoch"]
    print(f"top-1 before {before['top1']:.3f} -> after {after['top1']:.3f} "
          f"(gain {summary['gain_top1']:+.3f}); {sum(sec) / max(1, len(sec)):.0f} s/epoch train "
          f"(torch threads {args.threads}, load average {summary['load_average'][0]:.1f})")
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    if tmp is not None and args.out is None:
        print("(checkpoint was in a temporary folder: pass --data/--out to keep it)")
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
