"""Embedding throughput on 1080p camera-trap frames with one animal box each.

    python benchmarks/bench_embed.py [--frames 96] [--describe]

Compares, in one run on the same frames: the naive path (full JPEG decode, crop, per-image timm forward at
batch 1) against leopard_reid's Embedder (JPEG draft decoding, batched channels_last inference, DataLoader
workers), then a re-run through the embedding cache. Prints crops/s, ratios, % of the ~220 crops/s compute
limit of this 2-core machine (0.77 GFLOP per 224^2 crop at ~170 GFLOP/s), and the mean cosine between paths.

``--describe`` adds embedding + keypoints (what a census does per detection): the plain loop a user could write
(full decode, crop, 1,000 SIFT keypoints made RootSIFT, per-image forward) against ``Embedder.describe`` with
plain SIFT (``local={"max_tilt": 1}``) and with the library's default keypoints (SIFT + affine-tilted views).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

COMPUTE_LIMIT = 220.0


def make_frames(folder: Path, n: int) -> list[tuple[Path, list[int]]]:
    """1920x1080 JPEG frames with a synthetic leopard flank pasted at a random box."""
    import cv2
    from PIL import Image

    from leopard_reid.synthetic import generate

    crops = generate(folder / "crops", n_individuals=max(1, n // 4), sightings_per_individual=4, seed=3)
    rng = np.random.default_rng(0)
    out = []
    for i, row in crops.head(n).iterrows():
        crop = np.asarray(Image.open(folder / "crops" / row["path"]).convert("RGB"))
        scale = rng.uniform(1.0, 2.0)
        crop = cv2.resize(crop, None, fx=scale, fy=scale)
        frame = np.clip(rng.normal(110, 25, (1080, 1920, 3)), 0, 255).astype(np.uint8)
        h, w = crop.shape[:2]
        x, y = int(rng.integers(0, 1920 - w)), int(rng.integers(0, 1080 - h))
        frame[y : y + h, x : x + w] = crop
        p = folder / f"frame_{i:04d}.jpg"
        Image.fromarray(frame).save(p, quality=90)
        out.append((p, [x, y, w, h]))
    return out


def naive(frames: list[tuple[Path, list[int]]], keypoints: bool = False) -> np.ndarray:
    """The loop a user could write: full decode, crop, per-image forward (and 1,000 RootSIFT keypoints)."""
    import cv2
    import timm.data
    import torch
    from PIL import Image

    from leopard_reid import create_backbone
    from leopard_reid.backbones import data_config

    model = create_backbone()
    cfg = {**data_config(model), "crop_pct": 1.0, "crop_mode": "squash"}
    tf = timm.data.create_transform(**cfg)
    out = []
    sift = cv2.SIFT_create(nfeatures=1000)
    with torch.no_grad():
        for p, (x, y, w, h) in frames:
            img = Image.open(p).convert("RGB").crop((x, y, x + w, y + h))
            if keypoints:
                _, desc = sift.detectAndCompute(cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2GRAY), None)
                if desc is not None:  # RootSIFT
                    desc = np.sqrt(desc / (desc.sum(1, keepdims=True) + 1e-7))
            out.append(torch.nn.functional.normalize(model(tf(img)[None]), dim=1)[0].numpy())
    return np.stack(out)


def describe_times(frames: list[tuple[Path, list[int]]], table, emb) -> list[tuple[str, float]]:
    """Seconds of the plain loop with keypoints, then of ``Embedder.describe`` with plain SIFT and the default."""
    t = time.perf_counter()
    naive(frames, keypoints=True)
    rows = [("plain loop: decode, crop, RootSIFT, batch 1", time.perf_counter() - t)]
    paths = [("describe, plain SIFT (max_tilt=1)", {"max_tilt": 1}), ("describe, default (affine views)", True)]
    for name, local in paths:
        t = time.perf_counter()
        emb.describe(table, local=local)
        rows.append((name, time.perf_counter() - t))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--describe", action="store_true", help="also time embedding + keypoints")
    args = ap.parse_args()
    import pandas as pd

    from leopard_reid import Embedder

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames = make_frames(tmp, args.frames)
        table = pd.DataFrame({"path": [str(p) for p, _ in frames], "bbox": [b for _, b in frames]})
        n = len(frames)
        t = time.perf_counter()
        ref = naive(frames)
        t_naive = time.perf_counter() - t
        emb = Embedder(progress=False)
        emb.embed(table.head(2))  # warm-up (model already loaded; first-call allocations)
        t = time.perf_counter()
        fast = emb.embed(table)
        t_fast = time.perf_counter() - t
        cached = Embedder(progress=False, cache=tmp / "cache")
        t = time.perf_counter()
        cached.embed(table)
        t_first = time.perf_counter() - t
        t = time.perf_counter()
        again = cached.embed(table)
        t_again = time.perf_counter() - t
        described = describe_times(frames, table, emb) if args.describe else []
    cos = float(np.mean(np.sum(ref * fast, axis=1)))
    print(f"{n} frames 1920x1080 JPEG, one box each (2 CPU cores)")
    print(f"{'path':<44}{'seconds':>9}{'crops/s':>9}{'x naive':>9}{'% limit':>9}")
    for name, secs in [
        ("naive: full decode, batch 1", t_naive),
        ("Embedder: draft decode, batched", t_fast),
        ("Embedder + cache, first run", t_first),
        ("Embedder + cache, re-run", t_again),
    ]:
        print(f"{name:<44}{secs:>9.2f}{n / secs:>9.1f}{t_naive / secs:>9.2f}{100 * n / secs / COMPUTE_LIMIT:>8.0f}%")
    if described:
        base = described[0][1]
        print("\nembedding + keypoints (one describe per detection, as a census does)")
        print(f"{'path':<44}{'seconds':>9}{'crops/s':>9}{'x loop':>9}")
        for name, secs in described:
            print(f"{name:<44}{secs:>9.2f}{n / secs:>9.1f}{base / secs:>9.2f}")
    import resource

    print(f"peak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"mean cosine Embedder vs naive: {cos:.4f}; cache re-run vs first: "
          f"{float(np.mean(np.sum(again * fast, axis=1))):.4f}; re-run speed-up {t_first / t_again:.1f}x")


if __name__ == "__main__":
    main()
