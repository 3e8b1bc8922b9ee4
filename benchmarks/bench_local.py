"""Benchmark pattern-level keypoint matching (leopard_reid.local).

    .venv/bin/python benchmarks/bench_local.py [--data DIR] [--skip-speed]

1. Leave-one-out on leopardtrails (real forehead crops; queries = crops whose identity has a second crop,
   ranked against all other crops, score per identity = best exemplar): top-1 / top-5 / seconds for
   - baseline: plain RootSIFT (no resizing), count of ratio-test (0.8) matches over all pairs;
   - LNBNN only: one-vs-many LNBNN vote (LocalMatcher(verification=False));
   - the same with plain SIFT keypoints (``extract_features(max_tilt=1)``);
   - final: ASIFT keypoints (default), LNBNN shortlist + geometric verification (LocalMatcher()).
2. Speed: leave-one-out over 300 synthetic ~1000 px images (150 individuals x 2 sightings) including
   feature extraction, and per-query `score` time against a 1,000-image gallery.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from leopard_reid.local import LocalFeatures, LocalMatcher, extract_features
from leopard_reid.local.features import as_float_descriptors as _as_float
from leopard_reid.local.verification import ratio_matches as _ratio_matches

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/leopardtrails"


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------


def spot_pattern(seed: int, size: tuple[int, int] = (360, 240), n_spots: int = 140) -> np.ndarray:
    """Random leopard-like spot pattern (dark ellipses / open rosettes on a textured tan background)."""
    rng = np.random.default_rng(seed)
    w, h = size
    k = (w * h) / (360 * 240)
    shade = cv2.resize(rng.normal(0, 12, (6, 9)), (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.array([196, 160, 110], np.float64)[None, None, :] + shade[:, :, None] + rng.normal(0, 4, (h, w, 1))
    img = np.clip(img, 0, 255).astype(np.uint8)
    r = np.sqrt(k)
    for _ in range(int(n_spots * k)):
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (int(rng.uniform(3, 11) * r), int(rng.uniform(2, 7) * r))
        colour = tuple(int(v) for v in rng.uniform(15, 55, 3))
        thick = -1 if rng.random() < 0.7 else max(2, int(2 * r))
        cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, colour, thick, lineType=cv2.LINE_AA)
    return img


def resight(img: np.ndarray, seed: int) -> np.ndarray:
    """Another photo of the same pattern: random rotation / scale / lighting / blur / noise."""
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-20, 20)), float(rng.uniform(0.6, 1.0)))
    out = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    out = cv2.GaussianBlur(out, (5, 5), float(rng.uniform(0.5, 1.5)))
    out = out.astype(np.float64) * rng.uniform(0.7, 1.1) + rng.uniform(-20, 20) + rng.normal(0, 4, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def rank_metrics(scores: np.ndarray, queries: Sequence[int], labels: np.ndarray) -> tuple[float, float]:
    """Top-1 / top-5 identification with score per identity = best exemplar; ties count against."""
    top1 = top5 = 0
    for row, qi in zip(scores, queries):
        row = np.asarray(row, np.float64).copy()
        row[qi] = -np.inf
        best: dict[str, float] = {}
        for j in np.argsort(-row, kind="stable"):
            if j != qi:
                best.setdefault(labels[j], row[j])
        truth = best[labels[qi]]
        rank = sum(1 for name, s in best.items() if name != labels[qi] and s >= truth)
        top1 += rank < 1
        top5 += rank < 5
    return top1 / len(queries), top5 / len(queries)


def ratio_count_scores(feats: Sequence[LocalFeatures], queries: Sequence[int], ratio: float = 0.8) -> np.ndarray:
    """Baseline: number of ratio-test matches query -> every other image (exhaustive pairs)."""
    fl = [_as_float(f.descriptors) for f in feats]
    out = np.zeros((len(queries), len(feats)))
    for a, qi in enumerate(queries):
        for j in range(len(feats)):
            if j != qi:
                out[a, j] = len(_ratio_matches(fl[qi], fl[j], ratio, False)[0])
    return out


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    t = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t


# ----------------------------------------------------------------------------------------------------------
# benchmarks
# ----------------------------------------------------------------------------------------------------------


def bench_leopardtrails(data: Path) -> list[LocalFeatures]:
    with open(data / "metadata.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    images = [Image.open(data / r["path"]).convert("RGB") for r in rows]
    labels = np.asarray([r["identity"] for r in rows])
    counts = Counter(labels.tolist())
    queries = [i for i, lab in enumerate(labels) if counts[lab] > 1]
    print(f"leopardtrails: {len(rows)} images, {len(counts)} identities, {len(queries)} leave-one-out queries")

    plain, t_plain = timed(lambda: [extract_features(im, min_side=0, max_side=10**6, max_tilt=1) for im in images])
    sift, t_sift = timed(lambda: [extract_features(im, max_tilt=1) for im in images])
    feats, t_feat = timed(lambda: [extract_features(im) for im in images])

    results = {}
    s, t = timed(lambda: ratio_count_scores(plain, queries))
    results["baseline: RootSIFT ratio-count, all pairs"] = (*rank_metrics(s, queries, labels), t + t_plain)

    def run(features: Sequence[LocalFeatures] = feats, **kw: object) -> np.ndarray:
        m = LocalMatcher(**kw).fit(features)
        return m.score_many([features[i] for i in queries], exclude=queries)

    s, t = timed(lambda: run(sift))
    results["LNBNN + verification, plain SIFT (max_tilt=1)"] = (*rank_metrics(s, queries, labels), t + t_sift)
    s, t = timed(lambda: run(verification=False))
    results["LNBNN only"] = (*rank_metrics(s, queries, labels), t + t_feat)
    s, t = timed(lambda: run())
    results["final: ASIFT, LNBNN + verification"] = (*rank_metrics(s, queries, labels), t + t_feat)

    base = results["baseline: RootSIFT ratio-count, all pairs"]
    print(f"{'method':44s} {'top-1':>6s} {'top-5':>6s} {'sec':>6s}   vs baseline (top-1, top-5)")
    for name, (t1, t5, sec) in results.items():
        r1 = t1 / base[0] if base[0] else float("nan")
        r5 = t5 / base[1] if base[1] else float("nan")
        print(f"{name:44s} {t1:6.3f} {t5:6.3f} {sec:6.1f}   x{r1:.2f}, x{r5:.2f}")
    print("(seconds include feature extraction of all images)")
    return feats


def bench_speed(real: Sequence[LocalFeatures]) -> None:
    # 1. leave-one-out over 300 synthetic ~1000 px images, extraction included
    n_ind = 150
    base = [spot_pattern(10_000 + i, size=(1000, 700)) for i in range(n_ind)]
    imgs = base + [resight(im, 20_000 + i) for i, im in enumerate(base)]
    labels = [f"s{i}" for i in range(n_ind)] * 2
    _, t_sift = timed(lambda: [extract_features(im, max_tilt=1) for im in imgs[:30]])
    t0 = time.perf_counter()
    feats = [extract_features(im) for im in imgs]
    t_ext = time.perf_counter() - t0
    print(f"extraction: {t_ext / len(imgs) * 1000:.0f} ms/image with affine views (default), "
          f"{t_sift / 30 * 1000:.0f} ms/image plain SIFT ({t_ext / len(imgs) / (t_sift / 30):.1f}x)")
    m = LocalMatcher().fit(feats, labels)
    t_fit = time.perf_counter() - t0 - t_ext
    s = m.score_many(feats, exclude=list(range(len(feats))))
    t_all = time.perf_counter() - t0
    t1, t5 = rank_metrics(s, list(range(len(feats))), np.asarray(labels))
    print(
        f"speed: leave-one-out over {len(imgs)} synthetic 1000x700 images: {t_all:.1f} s total "
        f"(extraction {t_ext:.1f} s, index {t_fit:.1f} s, scoring {t_all - t_ext - t_fit:.1f} s); "
        f"top-1 {t1:.3f}, top-5 {t5:.3f}"
    )

    # 2. per-query score against a 1,000-image gallery (real crops + synthetic patterns + re-sightings)
    n_extra = 1000 - len(real) - len(feats)
    extra = [extract_features(spot_pattern(30_000 + i, size=(500, 350))) for i in range(max(0, n_extra))]
    gallery = list(real) + feats + extra
    gallery = gallery[:1000]
    m = LocalMatcher().fit(gallery)
    n_desc = sum(len(f) for f in gallery)
    qs = [extract_features(resight(base[i], 40_000 + i)) for i in range(20)]
    m.score(qs[0])  # warm-up
    t = time.perf_counter()
    hits = 0
    for i, q in enumerate(qs):
        hits += int(np.argmax(m.score(q))) in (len(real) + i, len(real) + n_ind + i)
    per_q = (time.perf_counter() - t) / len(qs)
    _, t_many = timed(lambda: m.score_many(qs))
    print(
        f"speed: gallery of {len(gallery)} images ({n_desc} descriptors): score() {per_q * 1000:.0f} ms/query, "
        f"score_many {t_many / len(qs) * 1000:.0f} ms/query ({hits}/{len(qs)} re-sightings ranked first)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="leopardtrails folder (metadata.csv)")
    ap.add_argument("--skip-speed", action="store_true", help="only the leopardtrails accuracy benchmark")
    args = ap.parse_args(argv)
    real: list[LocalFeatures] = []
    if (args.data / "metadata.csv").is_file():
        real = bench_leopardtrails(args.data)
    else:
        print(f"no leopardtrails data at {args.data}; accuracy benchmark skipped")
    if not args.skip_speed:
        bench_speed(real)


if __name__ == "__main__":
    main()
