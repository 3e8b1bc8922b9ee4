"""Scale-out on Dask: describe throughput and a census on a local 2-worker cluster vs one process.

    python benchmarks/bench_dask.py                              # 64 images, season 12 x 6
    python benchmarks/bench_dask.py --images 96 --individuals 24 --sightings 6 --json

Measured in one run, on the same synthetic images (camera-trap frames with the animal's box; describe = decode,
crop, embed and RootSIFT keypoints, as enroll and census do):

1. describe, the default single-process path (``Embedder()``: DataLoader workers + torch's threads);
2. describe in a single-threaded process (torch and OpenCV limited to one thread, no DataLoader workers);
3. describe with ``client=`` on ``LocalCluster(n_workers=2, threads_per_worker=1)`` (``--dask local:2``),
   timed warm (each worker has built its model once; the first, cold call is reported apart);
   the three are run ``--repeats`` times interleaved and their medians compared;
4. the census of a synthetic season (``demo.write_census_season``) in one process vs on the same cluster:
   outputs compared byte for byte, time ratio.

Ratios are of timings taken in this run, on a shared 2-core machine (other jobs may have run at the same time).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUTPUTS = ("matches.csv", "capthist.txt", "traps.txt", "errors.csv", "decisions.csv")


def _same_features(a, b) -> tuple[float, bool]:
    """Largest embedding difference and whether every keypoint and descriptor is equal."""
    diff = float(np.nanmax(np.abs(a.embeddings - b.embeddings))) if len(a) else 0.0
    same = all(np.array_equal(x.keypoints, y.keypoints) and np.array_equal(x.descriptors, y.descriptors)
               for x, y in zip(a.local, b.local))
    return diff, same


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _cpu_here() -> float:
    """CPU seconds of this process and its finished children (DataLoader workers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _cpu_workers(client) -> float:
    return float(sum(client.run(time.process_time).values()))


def _cpu_timed(fn, client=None):
    """(result, wall seconds, CPU seconds of this process + of the Dask workers when ``client``)."""
    c0, w0 = _cpu_here(), _cpu_workers(client) if client is not None else 0.0
    out, wall = _timed(fn)
    cpu = _cpu_here() - c0 + (_cpu_workers(client) - w0 if client is not None else 0.0)
    return out, wall, cpu


def bench_describe(folder: Path, n_images: int, client, repeats: int) -> dict:
    """Images/s of the three describe paths on the same frames (median of ``repeats`` interleaved runs)."""
    import cv2
    import torch

    from leopard_reid import Embedder
    from leopard_reid.synthetic import generate

    meta = generate(folder, n_individuals=max(1, n_images // 4), sightings_per_individual=4, seed=2, frame=True)
    meta = meta.iloc[:n_images]
    default = Embedder(progress=False)
    default.describe(meta.iloc[:2], root=folder, local=True)  # model warm
    single = Embedder(progress=False, num_workers=0)
    _, t_cold = _timed(lambda: default.describe(meta.iloc[:4], root=folder, local=True, client=client))
    from leopard_reid.distributed import _embedder_spec, _worker_embedder

    spec = _embedder_spec(default)
    client.run(lambda: _worker_embedder(spec) and None)  # every worker has its model (timed runs are warm)

    def single_threaded():
        threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        try:
            return single.describe(meta, root=folder, local=True)
        finally:
            torch.set_num_threads(threads)
            cv2.setNumThreads(cv_threads)

    times: dict[str, list[float]] = {"default": [], "single": [], "dask": []}
    cpu: dict[str, list[float]] = {"default": [], "single": [], "dask": []}
    for _ in range(repeats):  # interleaved, so a burst of load elsewhere hits every path alike; medians kept
        one, t, c = _cpu_timed(lambda: default.describe(meta, root=folder, local=True))
        times["default"].append(t)
        cpu["default"].append(c)
        single_feats, t, c = _cpu_timed(single_threaded)
        times["single"].append(t)
        cpu["single"].append(c)
        dist, t, c = _cpu_timed(lambda: default.describe(meta, root=folder, local=True, client=client), client)
        times["dask"].append(t)
        cpu["dask"].append(c)
    t_default, t_single, t_dask = (float(np.median(times[k])) for k in ("default", "single", "dask"))
    cores = {k: float(np.median(np.array(cpu[k]) / np.array(times[k]))) for k in times}
    diff, same = _same_features(one, dist)
    diff1, same1 = _same_features(one, single_feats)
    n = len(meta)
    return {
        "images": n, "repeats": repeats, "seconds": times, "cpu_seconds": cpu,
        "cores_used": cores, "cpu_s_per_image": {k: float(np.median(cpu[k])) / n for k in cpu},
        "default_img_s": n / t_default, "single_thread_img_s": n / t_single, "dask_local2_img_s": n / t_dask,
        "dask_vs_single_thread": t_single / t_dask, "dask_vs_default": t_default / t_dask,
        "dask_first_call_s_4_images": t_cold,
        "max_embedding_diff_dask": diff, "keypoints_identical_dask": same,
        "max_embedding_diff_single_thread": diff1, "keypoints_identical_single_thread": same1,
    }


def bench_census(folder: Path, individuals: int, sightings: int, client) -> dict:
    """The same census in one process and on the cluster: identical outputs? time ratio."""
    import pandas as pd

    from leopard_reid import Embedder, Gallery
    from leopard_reid.census import run_census
    from leopard_reid.demo import write_census_season

    f = write_census_season(folder, n_individuals=individuals, sightings_per_individual=sightings, seed=0)
    emb = Embedder(progress=False)
    gpath = folder / "gallery.lrg"
    Gallery.build(emb, pd.read_csv(f["known"]), root=folder).save(gpath)
    import leopard_reid.census.scoring as census_mod  # where the census looks its unit of work up
    import leopard_reid.distributed as dist_mod

    kw = {"sightings": f["sightings"], "cameras": f["cameras"], "embedder": emb, "progress": False}
    spent = {"one": 0.0, "dask": 0.0}  # the part that runs on the workers (describe + score), Amdahl's p

    def clocked(fn, name):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t
        return wrapper

    score_chunk, census_scores = census_mod.score_chunk, dist_mod.census_scores
    census_mod.score_chunk = clocked(score_chunk, "one")
    dist_mod.census_scores = clocked(census_scores, "dask")
    try:
        one, t_one = _timed(lambda: run_census(f["detections"], gallery=gpath, out=folder / "one", **kw))
        dist, t_dask = _timed(lambda: run_census(f["detections"], gallery=gpath, out=folder / "dask",
                                                 client=client, **kw))
    finally:
        census_mod.score_chunk, dist_mod.census_scores = score_chunk, census_scores
    def text(path: Path) -> str | None:
        return path.read_text() if path.exists() else None

    same = {name: text(folder / "one" / name) == text(folder / "dask" / name) for name in OUTPUTS}
    return {"detections": one.counts["detections"], "one_process_s": t_one, "dask_local2_s": t_dask,
            "speedup": t_one / t_dask, "scoring_one_process_s": spent["one"], "scoring_dask_s": spent["dask"],
            "scoring_speedup": spent["one"] / spent["dask"] if spent["dask"] else None,
            "identical_outputs": all(same.values()), "per_file": same,
            "counts_equal": one.counts == dist.counts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64, help="images for the describe throughput")
    ap.add_argument("--individuals", type=int, default=12, help="leopards in the census season")
    ap.add_argument("--sightings", type=int, default=6, help="sightings per leopard in the census season")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved describe runs (medians reported)")
    ap.add_argument("--no-census", action="store_true", help="describe throughput only")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    from leopard_reid.distributed import connect

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with connect("local:2") as client:
            started = time.perf_counter() - t0
            res = {"cluster_start_s": started,
                   "describe": bench_describe(Path(tmp) / "describe", args.images, client, args.repeats),
                   "census": None if args.no_census else bench_census(Path(tmp) / "season", args.individuals,
                                                                      args.sightings, client)}
    if args.json:
        print(json.dumps(res, indent=1))
        return
    d, c = res["describe"], res["census"]
    print(f"LocalCluster(2 workers x 1 thread) started in {res['cluster_start_s']:.1f} s")
    print(f"describe {d['images']} framed images (embed + keypoints), median of {d['repeats']} interleaved runs:")
    print(f"  default one process   {d['default_img_s']:6.2f} img/s")
    print(f"  single-threaded       {d['single_thread_img_s']:6.2f} img/s")
    print(f"  --dask local:2 (warm) {d['dask_local2_img_s']:6.2f} img/s   x{d['dask_vs_single_thread']:.2f} vs "
          f"single-threaded, x{d['dask_vs_default']:.2f} vs default (first call, 4 images: "
          f"{d['dask_first_call_s_4_images']:.1f} s)")
    print("  CPU used (cores = CPU s / wall s; the CPU s per image shows the work itself): " + ", ".join(
        f"{k} {d['cores_used'][k]:.2f} cores, {d['cpu_s_per_image'][k]:.2f} CPU s/img" for k in d["cores_used"]))
    print(f"  same results: max |embedding diff| {d['max_embedding_diff_dask']:.1e}, keypoints identical: "
          f"{d['keypoints_identical_dask']}")
    if c is None:
        print("(a shared 2-core machine: other jobs may have run at the same time)")
        return
    print(f"census of {c['detections']} detections: one process {c['one_process_s']:.1f} s, local:2 "
          f"{c['dask_local2_s']:.1f} s (x{c['speedup']:.2f}); identical outputs: {c['identical_outputs']}")
    print(f"  of which describe + score (the distributed part): {c['scoring_one_process_s']:.1f} s vs "
          f"{c['scoring_dask_s']:.1f} s (x{c['scoring_speedup']:.2f}); the rest (clustering, review page, files) "
          "stays on the client")
    print("(a shared 2-core machine: other jobs may have run at the same time)")


if __name__ == "__main__":
    main()
