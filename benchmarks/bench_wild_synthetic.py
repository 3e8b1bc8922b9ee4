"""How hard is the synthetic wild-photo set for the plain RootSIFT LNBNN baseline, and why?

    python benchmarks/bench_wild_synthetic.py --seed 0 [--out DIR] [--keypoints]

Generates ``synthetic.generate(DIR, wild=True, seed=S)`` (30 individuals x 5 photos) unless ``DIR`` already
holds a ``truth.json``, then runs ``baseline_lnbnn`` leave-one-out (identity-level top-1 over images whose
identity has another image) and breaks the result down with the generator's ground truth: per view and
site kind, for queries with and without another photo of the same coat (same flank, or face), and the
share of wrong answers taken from the query's own site (background wins). ``--keypoints`` also reports the
share of the baseline's keypoints that fall on the animal (a second SIFT pass with the same settings).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from baseline_lnbnn import lnbnn_scores, rootsift_features  # noqa: E402

from leopard_reid.synthetic import generate  # noqa: E402


def _on_animal(path: Path, mask_path: Path) -> float:
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    s = 800 / max(gray.shape)  # as rootsift_features
    gray = cv2.resize(gray, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    pts = np.array([k.pt for k in cv2.SIFT_create(nfeatures=1000).detect(gray, None)]).reshape(-1, 2) / s
    if not len(pts):
        return float("nan")
    xs = np.clip(pts[:, 0].astype(int), 0, mask.shape[1] - 1)
    ys = np.clip(pts[:, 1].astype(int), 0, mask.shape[0] - 1)
    return float((mask[ys, xs] > 0).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="set folder (default: a temporary one)")
    ap.add_argument("--keypoints", action="store_true", help="share of keypoints on the animal")
    args = ap.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="wild_"))
    t0 = time.perf_counter()
    if not (root / "truth.json").exists():
        generate(root, wild=True, seed=args.seed)
    t_gen = time.perf_counter() - t0
    meta = pd.read_csv(root / "metadata.csv")
    truth = json.loads((root / "truth.json").read_text())
    t = [truth[p] for p in meta["path"]]
    t0 = time.perf_counter()
    scores = lnbnn_scores([rootsift_features(str(root / p)) for p in meta["path"]], meta["identity"])
    t_base = time.perf_counter() - t0

    lab = meta["identity"].to_numpy()
    coat = np.array(["face" if r["view"] == "face" else r["side"] for r in t], dtype=object)
    rows = []
    for i in range(len(lab)):
        if (lab == lab[i]).sum() < 2:
            continue
        w = int(np.argmax(scores[i]))
        same_coat = bool(((lab == lab[i]) & (coat == coat[i]) & (np.arange(len(lab)) != i)).any())
        rows.append({"view": t[i]["view"], "site": t[i]["site"], "same_coat": same_coat, "hit": lab[w] == lab[i],
                     "winner_site": t[w]["camera"] == t[i]["camera"]})
    d = pd.DataFrame(rows)
    print(f"{root}: {len(meta)} photos, {meta['identity'].nunique()} individuals; generated in {t_gen:.1f} s")
    print(f"baseline top-1 {d['hit'].mean():.3f} over {len(d)} queries ({t_base:.0f} s)")
    print(d.groupby(["same_coat", "view", "site"])["hit"].agg(top1="mean", n="size").round(3).to_string())
    miss = d[~d["hit"]]
    print(f"wrong answers from the query's own site: {miss['winner_site'].mean():.2f} "
          f"(right answers: {d[d['hit']]['winner_site'].mean():.2f})")
    if args.keypoints:
        share = pd.Series([_on_animal(root / p, root / r["mask"]) for p, r in zip(meta["path"], t, strict=True)])
        key = pd.Series([f"{r['view']}/{r['site']}" for r in t])
        print("share of baseline keypoints on the animal:")
        print(share.groupby(key).mean().round(2).to_string())


if __name__ == "__main__":
    main()
