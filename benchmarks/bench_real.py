"""The development benchmark for matching defaults: every set, every method, and a plain baseline, in one run.

    .venv/bin/python benchmarks/bench_real.py [--pilanesberg DIR] [--leopardtrails DIR] [--wild-seeds 0 1]
        [--foreground unboxed|true|false]

Sets (each skipped when absent):

* ``leopardtrails``: 139 real forehead crops of Sri Lankan leopards (``../shared/data/leopardtrails``);
* ``pilanesberg``: 34 real photos of 7 African leopards (whole animals, mixed views); not redistributable,
  so pass the folder of a local copy holding ``metadata.csv`` (``path,identity``), see DEVELOPERS.md;
* ``wild-S``: the synthetic generator's wild-photo mode (whole animals in scenes shared between animals,
  mixed views, watermarks, info bars), seed ``S``, generated into a temporary folder.

Per set it prints leave-one-out top-1 / top-5 / mAP and seconds for ``global``, ``local``, ``fused`` (the
library's :func:`leopard_reid.evaluate`, one description of the images shared by the three) and for the
independent HotSpotter-style RootSIFT LNBNN baseline (``baseline_lnbnn.py``), then the mean over sets.

The rule for changing a matching default: it must raise the mean over the sets without lowering any set by
more than noise (one query on these small sets).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_lnbnn import lnbnn_scores, rootsift_features  # noqa: E402

import leopard_reid as lr  # noqa: E402
from leopard_reid.evaluation import rank_metrics  # noqa: E402
from leopard_reid.synthetic import generate  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared/data/leopardtrails"
METHODS = ("global", "local", "fused")


def baseline(meta: pd.DataFrame, root: Path) -> dict[str, float]:
    """Leave-one-out top-1 / top-5 / mAP(identity-level: n/a) of the independent baseline."""
    t0 = time.perf_counter()
    descs = [rootsift_features(str(root / p)) for p in meta["path"]]
    labels = meta["identity"].astype(str).to_numpy()
    scores = lnbnn_scores(descs, labels)
    queries = np.array([i for i in range(len(labels)) if (labels == labels[i]).sum() > 1])
    ranks, aps = rank_metrics(scores[queries], labels, queries)
    return {"top1": float(np.mean(ranks <= 1)), "top5": float(np.mean(ranks <= 5)), "mAP": float(aps.mean()),
            "n": len(queries), "sec": time.perf_counter() - t0}


def run_set(name: str, csv: Path, *, embedder: lr.Embedder, local: bool | dict = True) -> list[dict]:
    meta = lr.read_metadata(csv, require=("path", "identity"))
    root = csv.parent
    t0 = time.perf_counter()
    feats = embedder.describe(meta, root=root, local=local, on_error="skip")
    t_describe = time.perf_counter() - t0
    rows = []
    for method in METHODS:
        ev = lr.evaluate(meta, method=method, embedder=embedder, root=root, features=feats)
        rows.append({"set": name, "method": method, "top1": ev.top1, "top5": ev.top5, "mAP": ev.mAP,
                     "n": ev.n_queries, "sec": ev.seconds + (t_describe if method != "global" else 0.0)})
    b = baseline(meta, root)
    rows.append({"set": name, "method": "baseline LNBNN", **b})
    return rows


def dev_sets(
    leopardtrails: Path | None, pilanesberg: Path | None, wild_seeds: list[int], tmp: Path, *,
    wild_individuals: int = 30,
) -> list[tuple[str, Path]]:
    """(name, metadata.csv) of the development sets: the real folders that hold a metadata.csv, and a synthetic
    wild-mode set generated under ``tmp`` per seed."""
    sets = [(name, folder / "metadata.csv") for name, folder in
            (("leopardtrails", leopardtrails), ("pilanesberg", pilanesberg))
            if folder is not None and (folder / "metadata.csv").exists()]
    for seed in wild_seeds if "wild" in inspect.signature(generate).parameters else []:
        out = tmp / f"wild{seed}"
        generate(out, n_individuals=wild_individuals, seed=seed, wild=True)
        sets.append((f"wild-{seed}", out / "metadata.csv"))
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--leopardtrails", type=Path, default=SHARED)
    ap.add_argument("--pilanesberg", type=Path, default=None, help="folder with metadata.csv (path,identity)")
    ap.add_argument("--wild-seeds", type=int, nargs="*", default=[0], help="synthetic wild-mode sets to generate")
    ap.add_argument("--wild-individuals", type=int, default=30)
    ap.add_argument("--foreground", choices=("unboxed", "true", "false"), default="unboxed",
                    help="keypoints only on the animal's foreground map: for photos without a box (the library's "
                         "default), for every photo, or never")
    args = ap.parse_args()

    embedder = lr.Embedder()
    tmp = tempfile.TemporaryDirectory()
    sets = dev_sets(args.leopardtrails, args.pilanesberg, args.wild_seeds, Path(tmp.name),
                    wild_individuals=args.wild_individuals)
    local = {"foreground": {"true": True, "false": False}.get(args.foreground, args.foreground)}
    rows = []
    for name, csv in sets:
        print(f"... {name}", file=sys.stderr, flush=True)
        rows += run_set(name, csv, embedder=embedder, local=local)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 160)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    mean = table.groupby("method", sort=False)[["top1", "top5", "mAP"]].mean()
    print("\nmean over sets:")
    print(mean.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
