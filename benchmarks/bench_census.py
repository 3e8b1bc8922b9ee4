"""Census end to end on a synthetic season: half the individuals enrolled, half new; B-cubed F1 of identities.

    python benchmarks/bench_census.py                          # 24 individuals x 6 sightings, seed 0
    python benchmarks/bench_census.py --individuals 40 --sightings 4 --json
    python benchmarks/bench_census.py --sides left            # a single-flank survey
    python benchmarks/bench_census.py --paired-fraction 0     # no paired stations

Protocol:

1. ``synthetic.generate(frame=True, paired_fraction=0.5)``: full camera-trap frames with the animal's bbox,
   camera station and datetime; half the visits also photograph the other flank from the station's
   second camera a few seconds later (Amur leopard surveys pair their cameras);
2. a MegaDetector batch-format JSON (``detection_categories`` + normalised ``[x, y, w, h]`` boxes) from the
   bbox column, plus a decoy low-confidence animal box and a "person" box per tenth image (must be dropped),
   a sightings CSV (path, camera, datetime, side) and a cameras CSV (random x, y per camera);
3. enroll the first sighting of each flank of the even-numbered half of the individuals (embedded model,
   keypoints, the built-in calibration);
4. ``run_census`` on every other sighting (the season);
5. B-cubed precision / recall / F1 of the census identities (known names and provisional ``NEW-xxxx``)
   against the truth, twice: per *individual* (the target) and per *flank* (identity + side). Left and
   right flanks of a new individual have different patterns; only a simultaneous paired-station visit
   links them (the census then gives both one provisional id), so without paired stations the
   individual-level recall has a ceiling below 1 that the flank-level figure does not.

Only local files are used (no network). Runs on CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leopard_reid import Embedder, Gallery  # noqa: E402
from leopard_reid.census import run_census  # noqa: E402
from leopard_reid.synthetic import generate  # noqa: E402


def bcubed(pred: list[str], truth: list[str]) -> tuple[float, float, float]:
    """B-cubed precision, recall and F1 of a clustering ``pred`` against ``truth`` (item-averaged)."""
    pred_a, truth_a = np.asarray(pred, dtype=object), np.asarray(truth, dtype=object)
    same_p = pred_a[:, None] == pred_a[None, :]
    same_t = truth_a[:, None] == truth_a[None, :]
    both = (same_p & same_t).sum(1)
    p = float(np.mean(both / same_p.sum(1)))
    r = float(np.mean(both / same_t.sum(1)))
    return p, r, 2 * p * r / (p + r) if p + r else 0.0


def write_inputs(root: Path, df: pd.DataFrame, season: pd.DataFrame, seed: int) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(seed)
    images = []
    for k, (path, box) in enumerate(zip(season["path"], season["bbox"])):
        w, h = Image.open(root / path).size
        x, y, bw, bh = json.loads(box)
        dets = [{"category": "1", "conf": round(float(rng.uniform(0.6, 0.99)), 3),
                 "bbox": [round(x / w, 4), round(y / h, 4), round(bw / w, 4), round(bh / h, 4)]}]
        if k % 10 == 0:  # decoys the census must drop
            dets.append({"category": "1", "conf": 0.05, "bbox": [0.0, 0.0, 0.2, 0.2]})
            dets.append({"category": "2", "conf": 0.9, "bbox": [0.7, 0.1, 0.2, 0.5]})
        images.append({"file": path, "detections": dets})
    md = root / "md.json"
    md.write_text(json.dumps({"info": {"format_version": "1.4"}, "detection_categories": {
        "1": "animal", "2": "person", "3": "vehicle"}, "images": images}))
    sightings = root / "sightings.csv"
    season[["path", "camera", "datetime", "side"]].to_csv(sightings, index=False)
    cams = sorted(df["camera"].unique())
    cameras = root / "cameras.csv"
    pd.DataFrame({"camera": cams, "x": rng.uniform(0, 10000, len(cams)).round(1),
                  "y": rng.uniform(0, 10000, len(cams)).round(1)}).to_csv(cameras, index=False)
    return md, sightings, cameras


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--individuals", type=int, default=24)
    ap.add_argument("--sightings", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="folder to generate into / reuse (default: temporary)")
    ap.add_argument("--sides", default="left,right", help="flanks photographed: left,right (default) or left")
    ap.add_argument("--paired-fraction", type=float, default=0.5,
                    help="share of visits that photograph both flanks at a paired station (default 0.5)")
    ap.add_argument("--linkage", default="average", choices=("average", "single", "complete"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    root = Path(args.data) if args.data else Path(tmp.name) / "season"
    t0 = time.perf_counter()
    meta = root / "metadata.csv"
    if meta.exists():
        df = pd.read_csv(meta, dtype=str)
    else:
        df = generate(root, n_individuals=args.individuals, sightings_per_individual=args.sightings,
                      seed=args.seed, frame=True, sides=tuple(args.sides.split(",")),
                      paired_fraction=args.paired_fraction if "," in args.sides else 0.0)
        df = df[["path", "identity", "side", "datetime", "camera", "bbox"]]
    t_gen = time.perf_counter() - t0
    ids = sorted(df["identity"].unique())
    known_ids = set(ids[::2])
    enrolled = df[df["identity"].isin(known_ids)].groupby(["identity", "side"], sort=False).head(1)
    season = df.drop(index=enrolled.index).reset_index(drop=True)
    md, sightings, cameras = write_inputs(root, df, season, args.seed)

    embedder = Embedder(progress=False)
    t0 = time.perf_counter()
    gallery = Gallery.build(embedder, enrolled.reset_index(drop=True), root=root)
    t_enroll = time.perf_counter() - t0
    out = Path(tmp.name) / "census"
    res = run_census(md, gallery=gallery, out=out, sightings=sightings, cameras=cameras, embedder=embedder,
                     linkage=args.linkage)
    table = res.detections.merge(season[["path", "identity", "side"]].rename(
        columns={"identity": "truth", "side": "truth_side"}), on="path", how="left")
    p, r, f = bcubed(table["identity"].tolist(), table["truth"].tolist())
    fp, fr, ff = bcubed((table["identity"] + "/" + table["side"]).tolist(),
                        (table["truth"] + "/" + table["truth_side"]).tolist())
    known_rows = table["truth"].isin(known_ids)
    correct_known = float((table.loc[known_rows, "identity"] == table.loc[known_rows, "truth"]).mean())
    false_known = float(table.loc[~known_rows, "identity"].isin(known_ids).mean())
    result = {
        "individuals": len(ids), "enrolled_individuals": len(known_ids), "enrolled_exemplars": len(enrolled),
        "season_detections": len(season), "census_rows": len(table),
        "bcubed_precision": round(p, 4), "bcubed_recall": round(r, 4), "bcubed_f1": round(f, 4),
        "flank_bcubed_precision": round(fp, 4), "flank_bcubed_recall": round(fr, 4), "flank_bcubed_f1": round(ff, 4),
        "known_detections_correct": round(correct_known, 4), "new_detections_given_known_id": round(false_known, 4),
        "decisions": table["decision"].value_counts().to_dict(), "new_individuals": res.counts["new_individuals"],
        "errors": len(res.errors), "seconds_generate": round(t_gen, 1), "seconds_enroll": round(t_enroll, 1),
        "seconds_census": round(res.seconds, 1), "seconds_per_detection": round(res.seconds / max(1, len(table)), 3),
        "linkage": args.linkage, "sides": args.sides, "paired_fraction": args.paired_fraction,
        "flank_linked_detections": int((table["flank_link"] != "").sum()),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:32s} {v}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
