"""Accuracy and time per matching method (global / local / fused) on real and synthetic leopards.

    python benchmarks/bench_match.py [--leopardtrails DIR] [--individuals 40] [--sightings 4]

Leave-one-out top-1 / top-5 / mAP for each method from one feature-extraction pass per data set, the
open-set AUROC (half of the synthetic individuals enrolled, the rest must be called new), and the per-query
cost of the default method against a gallery. ``fused`` fits its fusion cross-validated by identity.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "leopardtrails"


def run(name: str, meta: pd.DataFrame, root: Path, embedder) -> None:
    import leopard_reid as lr

    t = time.perf_counter()
    feats = embedder.describe(meta, root=root, local=True, on_error="skip")
    t_feat = time.perf_counter() - t
    print(f"\n{name}: {len(meta)} images, {meta['identity'].nunique()} identities; features {t_feat:.1f} s "
          f"({t_feat / len(meta):.2f} s/image)")
    print(f"{'method':<8}{'top-1':>7}{'top-5':>7}{'mAP':>7}{'queries':>9}{'score s':>9}{'total s':>9}")
    for method in ("global", "local", "fused"):
        r = lr.evaluate(meta, method=method, root=root, features=feats)
        print(f"{method:<8}{r.top1:>7.3f}{r.top5:>7.3f}{r.mAP:>7.3f}{r.n_queries:>9}{r.seconds:>9.1f}"
              f"{r.seconds + t_feat:>9.1f}")
    return feats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leopardtrails", default=str(SHARED))
    ap.add_argument("--individuals", type=int, default=40)
    ap.add_argument("--sightings", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import leopard_reid as lr
    from leopard_reid.io import read_metadata
    from leopard_reid.synthetic import generate

    embedder = lr.Embedder(progress=False)
    lt = Path(args.leopardtrails)
    if (lt / "metadata.csv").exists():
        run("leopardtrails (real forehead crops)", read_metadata(lt / "metadata.csv"), lt, embedder)
    else:
        print(f"{lt} not found: skipping the real data")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        meta = generate(tmp, n_individuals=args.individuals, sightings_per_individual=args.sightings, seed=args.seed)
        print(f"\ngenerated {len(meta)} synthetic sightings in {time.perf_counter() - t:.1f} s")
        feats = run(f"synthetic {args.individuals} x {args.sightings}", meta, Path(tmp), embedder)
        print("\nopen set (half the individuals enrolled, one sighting per flank; others must be new):")
        for method in ("global", "local", "fused"):
            o = lr.evaluate_open_set(meta, method=method, root=tmp, features=feats)
            print(f"{method:<8} AUROC {o.auroc:.3f}  top-1 known {o.top1_known:.3f}  false new {o.false_new_rate:.3f}"
                  f"  false match {o.false_match_rate:.3f}  (threshold {o.threshold:.3g})")
        first = meta.groupby(["identity", "side"]).cumcount() == 0
        gallery = lr.Gallery.build(embedder, meta[first], root=tmp)
        queries = meta[~first].head(40)
        t = time.perf_counter()
        lr.match(queries, gallery, embedder=embedder, root=tmp)
        dt = time.perf_counter() - t
        print(f"\nmatch (fused) {len(queries)} queries vs {len(gallery)} exemplars: {dt / len(queries):.3f} s/query "
              "including embedding and keypoint extraction")


if __name__ == "__main__":
    main()
