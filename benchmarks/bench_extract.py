"""Keypoint extraction per photo: the default affine views against OpenCV's ASIFT detecting its untilted view
again, and against plain SIFT, in one run on the same photos.

    python benchmarks/bench_extract.py                              # 40 synthetic 1000x700 coats
    python benchmarks/bench_extract.py --photos /path/to/photos     # every JPEG/PNG there, e.g. Pilanesberg

Each photo is extracted with and without the foreground mask (``foreground=False`` and ``True``, as an unboxed
photo is), three ways: ``extract_features()`` (the default: ASIFT's untilted view taken from the photo's own
SIFT), the same with the untilted view detected again by OpenCV's ``AffineFeature``, and plain SIFT
(``max_tilt=1``). Prints seconds per photo, the ratio to the re-detecting path, and how many photos'
keypoints and descriptors differ between the two affine paths (the design says none). Runs on CPU; no network.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leopard_reid.local import extract_features  # noqa: E402
from leopard_reid.local import features as _features  # noqa: E402


def photos(folder: Path | None, n: int) -> list[Image.Image]:
    """The folder's images, or ``n`` synthetic coat photos of 1000x700."""
    if folder is not None:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        return [Image.open(p).convert("RGB") for p in files[:n]]
    from bench_local import spot_pattern

    return [Image.fromarray(spot_pattern(seed, size=(1000, 700), n_spots=600)) for seed in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=None, help="a folder of photos (default: synthetic coats)")
    ap.add_argument("--n", type=int, default=40, help="at most this many photos")
    args = ap.parse_args()
    images = photos(args.photos, args.n)
    default = _features._affine_detect
    redetect = mock.patch.object(_features, "_affine_detect", lambda *a, **k: default(*a, **k, detect_untilted=True))
    times = {"affine, untilted view detected again (OpenCV)": 0.0, "affine (default)": 0.0, "plain SIFT": 0.0}
    differ = 0
    extract_features(images[0], foreground=True)  # warm-up: loads the foreground classifier
    for foreground in (False, True):
        for image in images:
            t = time.perf_counter()
            with redetect:
                ref = extract_features(image, foreground=foreground)
            t1 = time.perf_counter()
            new = extract_features(image, foreground=foreground)
            t2 = time.perf_counter()
            extract_features(image, foreground=foreground, max_tilt=1)
            t3 = time.perf_counter()
            for name, secs in zip(times, (t1 - t, t2 - t1, t3 - t2)):
                times[name] += secs
            same = np.array_equal(ref.keypoints, new.keypoints) and np.array_equal(ref.descriptors, new.descriptors)
            differ += not same
    n = 2 * len(images)
    base = next(iter(times.values()))
    print(f"{len(images)} photos x (no mask, foreground mask) = {n} extractions each")
    print(f"{'path':<48}{'s/photo':>9}{'x first':>9}")
    for name, secs in times.items():
        print(f"{name:<48}{secs / n:>9.3f}{base / secs:>9.2f}")
    print(f"extractions whose keypoints or descriptors differ between the two affine paths: {differ} of {n}")


if __name__ == "__main__":
    main()
