"""A season at scale on the CPU: identification quality, seconds per detection and peak memory of ``run_census``,
against the plain per-detection loop a user could write.

    python benchmarks/bench_census_scale.py --sizes 200 1000          # what the issue-17 table reports
    python benchmarks/bench_census_scale.py --sizes 4000 10000 --data /big/disk/scale
    python benchmarks/bench_census_scale.py --sizes 1000 --max-tilt 2 1   # affine views vs plain SIFT

Every detection is a distinct synthetic camera-trap frame (``synthetic.generate(frame=True,
paired_fraction=0.5)``: many individuals, ``--sightings`` visits each, half the visits at paired stations
photographing both flanks): no re-encoded copies, so clustering the new individuals is as hard as in
``bench_census.py``. About ``size / 6`` individuals are generated; the even-numbered half are enrolled (the
first sighting of each flank), every other frame is the season.

Per size, in separate child processes (so ``ru_maxrss`` is each one's own peak):

* ``census``: :func:`run_census` on the season (fused method, the review page written); B-cubed precision,
  recall and F1 of its identities (known names and ``NEW-xxxx``) per individual, the share of enrolled
  animals' detections named correctly, seconds per detection and peak RSS;
* ``baseline``: the loop a user could write: for each detection open the image, crop the box, 1,000 SIFT
  keypoints (``cv2.SIFT_create(nfeatures=1000)``) made RootSIFT, and an embedding with the same timm model
  (``leopard_reid.Embedder``, one crop at a time). Description only: no matching, no clustering, no files.

``--max-tilt``: the census's ``keypoints={"max_tilt": T}`` per row (default: the library's; 1 is plain SIFT).
``ratio`` is census / baseline seconds per detection (the census also matches, clusters, writes the capture
histories and the review page; its keypoints are affine-view RootSIFT). Frames are generated once into
``--data`` (default: a temporary folder) and reused. Runs on CPU with the embedded default model; no network.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def prepare(root: Path, size: int, seed: int, sightings: int) -> dict[str, str]:
    """Generate (or reuse) a season of about ``size`` distinct detections; enroll half the individuals."""
    from bench_census import write_inputs

    from leopard_reid import Embedder, Gallery
    from leopard_reid.synthetic import generate

    root.mkdir(parents=True, exist_ok=True)
    files = {"root": str(root), "md": str(root / "md.json"), "sightings": str(root / "sightings.csv"),
             "cameras": str(root / "cameras.csv"), "gallery": str(root / "gallery.lrg"),
             "truth": str(root / "season.csv")}
    if Path(files["gallery"]).exists():
        return files
    # generate(): a visit at a paired station is two frames; about 1.5 frames per sighting, 1/6 enrolled
    n_ind = max(4, round(size / (sightings * 1.5 * 0.9)))
    df = generate(root, n_individuals=n_ind, sightings_per_individual=sightings, seed=seed, frame=True,
                  paired_fraction=0.5, n_cameras=max(12, n_ind // 3))
    df = df[["path", "identity", "side", "datetime", "camera", "bbox"]]
    ids = sorted(df["identity"].unique())
    known = set(ids[::2])
    enrolled = df[df["identity"].isin(known)].groupby(["identity", "side"], sort=False).head(1)
    season = df.drop(index=enrolled.index).reset_index(drop=True)
    write_inputs(root, df, season, seed)
    season.assign(known=season["identity"].isin(known)).to_csv(files["truth"], index=False)
    Gallery.build(Embedder(progress=False), enrolled.reset_index(drop=True), root=root).save(files["gallery"])
    return files


def child_census(files: dict[str, str], out: str, tilt: float | None = None) -> dict:
    from bench_census import bcubed

    from leopard_reid import Embedder
    from leopard_reid.census import run_census

    embedder = Embedder(progress=False)
    t0 = time.perf_counter()
    res = run_census(files["md"], gallery=files["gallery"], out=out, sightings=files["sightings"],
                     cameras=files["cameras"], embedder=embedder, progress=False, resume=False,
                     keypoints=None if tilt is None else {"max_tilt": tilt})
    seconds = time.perf_counter() - t0
    truth = pd.read_csv(files["truth"], dtype={"known": bool})
    table = res.detections.merge(truth[["path", "identity", "known"]].rename(columns={"identity": "truth"}),
                                 on="path", how="left")
    p, r, f = bcubed(table["identity"].tolist(), table["truth"].tolist())
    known = table["known"].to_numpy(bool)
    return {"detections": len(table), "bcubed_p": p, "bcubed_r": r, "bcubed_f1": f,
            "known_correct": float((table["identity"][known] == table["truth"][known]).mean()),
            "new_individuals": res.counts["new_individuals"], "true_individuals": int(truth["identity"].nunique()),
            "seconds": seconds, "s_per_det": seconds / max(1, len(table)),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_baseline(files: dict[str, str]) -> dict:
    """The plain loop: open, crop, 1,000 RootSIFT keypoints, embed; one detection at a time."""
    import cv2
    from PIL import Image

    from leopard_reid import Embedder

    embedder = Embedder(progress=False)
    md = json.loads(Path(files["md"]).read_text())
    root = Path(files["root"])
    sift = cv2.SIFT_create(nfeatures=1000)
    n = 0
    t0 = time.perf_counter()
    for entry in md["images"]:
        for det in entry["detections"]:
            if det["category"] != "1" or det["conf"] < 0.2:
                continue
            img = Image.open(root / entry["file"]).convert("RGB")
            w, h = img.size
            x, y, bw, bh = det["bbox"]
            crop = img.crop((int(x * w), int(y * h), int((x + bw) * w), int((y + bh) * h)))
            gray = cv2.cvtColor(np.asarray(crop), cv2.COLOR_RGB2GRAY)
            kps, desc = sift.detectAndCompute(gray, None)
            if desc is not None:  # RootSIFT: L1-normalise, square root
                desc = np.sqrt(desc / (np.abs(desc).sum(1, keepdims=True) + 1e-7))
            embedder.embed([np.asarray(crop)])
            n += 1
    seconds = time.perf_counter() - t0
    return {"detections": n, "seconds": seconds, "s_per_det": seconds / max(1, n),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(kind: str, files: dict[str, str], out: str, tilt: float | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--files", json.dumps(files), "--out", out]
    cmd += ["--max-tilt", str(tilt)] if tilt is not None else []
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{kind} child failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 1000], help="season sizes (detections, about)")
    ap.add_argument("--sightings", type=int, default=6, help="visits per individual")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="folder to generate the seasons into / reuse (default: temporary)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the plain per-detection loop")
    ap.add_argument("--keep", default=None,
                    help="folder to keep the census outputs in (census-SIZE-TILT, with their resumable state)")
    ap.add_argument("--max-tilt", type=float, nargs="+", default=[None],
                    help="the census's keypoint max_tilt, one row each (default: the library's; 1: plain SIFT)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--files", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        files = json.loads(args.files)
        res = child_census(files, args.out, args.max_tilt[0]) if args.child == "census" else child_baseline(files)
        print(json.dumps(res))
        return

    tmp = tempfile.TemporaryDirectory()
    data = Path(args.data) if args.data else Path(tmp.name)
    head = (f"{'size':>6} {'tilt':>4} {'dets':>6} {'ind':>5} {'new':>5} {'B3 P':>6} {'B3 R':>6} {'B3 F1':>6} "
            f"{'known ok':>8} {'s/det':>7} {'RSS MB':>7} {'base s/det':>10} {'base RSS':>8} {'ratio':>6} {'prep s':>7}")
    rows = []
    for size in args.sizes:
        t0 = time.perf_counter()
        files = prepare(data / f"season-{size}-seed{args.seed}", size, args.seed, args.sightings)
        t_prep = time.perf_counter() - t0
        b = run_child("baseline", files, "") if not args.no_baseline else None
        for tilt in args.max_tilt:
            c = run_child("census", files, str(Path(args.keep or tmp.name) / f"census-{size}-{tilt}"), tilt)
            row = (f"{size:>6} {'lib' if tilt is None else f'{tilt:g}':>4} {c['detections']:>6} "
                   f"{c['true_individuals']:>5} {c['new_individuals']:>5} {c['bcubed_p']:>6.3f} {c['bcubed_r']:>6.3f} "
                   f"{c['bcubed_f1']:>6.3f} {c['known_correct']:>8.3f} {c['s_per_det']:>7.3f} {c['peak_rss_mb']:>7.0f} "
                   + (f"{b['s_per_det']:>10.3f} {b['peak_rss_mb']:>8.0f} {c['s_per_det'] / b['s_per_det']:>6.2f} "
                      if b else f"{'-':>10} {'-':>8} {'-':>6} ")
                   + f"{t_prep:>7.0f}")
            rows.append(row)
            print(head, *rows, sep="\n", flush=True)
            print(flush=True)
    tmp.cleanup()


if __name__ == "__main__":
    main()
