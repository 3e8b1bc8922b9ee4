"""A season of 10,000 detections on the CPU: time per detection and peak memory of ``run_census``.

    python benchmarks/bench_census_scale.py                         # 10,000 detections
    python benchmarks/bench_census_scale.py --detections 1000       # a quick look

Generating 10,000 distinct synthetic camera-trap frames takes longer than the census itself, so the season
is made from a smaller synthetic base (``--individuals`` x ``--sightings`` full frames, half the visits at
paired stations): every detection is its own JPEG file, a base frame shifted by a random offset and
re-encoded at a random quality, with its own time. Time and memory are what this benchmark measures;
identification quality is measured on distinct frames by ``bench_census.py`` (near-copies of a frame are
easier to cluster than new visits). Half of the base individuals are enrolled (one image per flank).

Printed: seconds per detection, peak resident memory of the process (``ru_maxrss``) and resident memory
sampled every second during the census, against the decoded size of the season's frames (what holding
every image in memory would take). Runs on CPU with the embedded default model; no network.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_census import bcubed, write_inputs  # noqa: E402

from leopard_reid import Embedder, Gallery  # noqa: E402
from leopard_reid.census import run_census  # noqa: E402
from leopard_reid.synthetic import generate  # noqa: E402


def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return 0.0
    return pages * resource.getpagesize() / 2**20


def expand(root: Path, base: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` detections as distinct files: shifted, re-encoded copies of the base frames with new times."""
    rng = np.random.default_rng(seed)
    rows = []
    (root / "season").mkdir(exist_ok=True)
    start = pd.Timestamp("2024-01-01")
    for k in range(n):
        b = base.iloc[k % len(base)]
        img = cv2.imread(str(root / b["path"]))
        h, w = img.shape[:2]
        x, y, bw, bh = json.loads(b["bbox"])
        dx = int(rng.integers(-min(x, 40), min(w - x - bw, 40) + 1))
        dy = int(rng.integers(-min(y, 20), min(h - y - bh, 20) + 1))
        img = np.roll(img, (dy, dx), axis=(0, 1))
        rel = f"season/{b['camera']}_{k:05d}.jpg"
        cv2.imwrite(str(root / rel), img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(80, 96))])
        when = start + pd.Timedelta(seconds=int(rng.integers(0, 90 * 86400)))
        rows.append({"path": rel, "identity": b["identity"], "side": b["side"], "camera": b["camera"],
                     "datetime": when.strftime("%Y-%m-%dT%H:%M:%S"), "bbox": json.dumps([x + dx, y + dy, bw, bh])})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detections", type=int, default=10_000)
    ap.add_argument("--individuals", type=int, default=60)
    ap.add_argument("--sightings", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="folder to generate into / reuse (default: temporary)")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    root = Path(args.data) if args.data else Path(tmp.name) / "season"
    t0 = time.perf_counter()
    if (root / "metadata.csv").exists():
        base = pd.read_csv(root / "metadata.csv", dtype=str)
    else:
        base = generate(root, n_individuals=args.individuals, sightings_per_individual=args.sightings,
                        seed=args.seed, frame=True, paired_fraction=0.5)
        base = base[["path", "identity", "side", "datetime", "camera", "bbox"]]
    ids = sorted(base["identity"].unique())
    known = set(ids[::2])
    enrolled = base[base["identity"].isin(known)].groupby(["identity", "side"], sort=False).head(1)
    season_file = root / f"season_{args.detections}.csv"
    if season_file.exists():
        season = pd.read_csv(season_file, dtype=str)
    else:
        season = expand(root, base.drop(index=enrolled.index).reset_index(drop=True), args.detections, args.seed)
        season.to_csv(season_file, index=False)
    md, sightings, cameras = write_inputs(root, base, season, args.seed)
    t_prep = time.perf_counter() - t0
    w, h = cv2.imread(str(root / season["path"][0])).shape[1::-1]
    decoded_gb = len(season) * w * h * 3 / 2**30

    embedder = Embedder(progress=False)
    gallery = Gallery.build(embedder, enrolled.reset_index(drop=True), root=root)
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            samples.append(rss_mb())

    rss_before = rss_mb()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = Path(tmp.name) / "census"
    res = run_census(md, gallery=gallery, out=out, sightings=sightings, cameras=cameras, embedder=embedder,
                     progress=True)
    done.set()
    sampler.join()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = res.detections.merge(season[["path", "identity"]].rename(columns={"identity": "truth"}), on="path")
    p, r, f = bcubed(table["identity"].tolist(), table["truth"].tolist())
    quarter = max(1, len(samples) // 4)
    result = {
        "detections": len(season), "distinct_base_frames": len(base), "enrolled_exemplars": len(gallery),
        "frame_size": f"{w}x{h}", "decoded_season_gb": round(decoded_gb, 2),
        "seconds_prepare": round(t_prep, 1), "seconds_census": round(res.seconds, 1),
        "seconds_per_detection": round(res.seconds / max(1, len(season)), 3),
        "rss_before_census_mb": round(rss_before), "rss_peak_mb": round(peak_mb),
        "rss_first_quarter_max_mb": round(max(samples[:quarter], default=0)),
        "rss_last_quarter_max_mb": round(max(samples[-quarter:], default=0)),
        "peak_over_decoded_season": round(peak_mb / 1024 / decoded_gb, 3),
        "decisions": table["decision"].value_counts().to_dict(), "new_individuals": res.counts["new_individuals"],
        "bcubed_f1_near_copies": round(f, 3), "errors": len(res.errors),
    }
    for k, v in result.items():
        print(f"{k:28s} {v}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
