"""Size and render time of the census review page for a large synthetic season (no real photos needed).

    python benchmarks/bench_review.py                       # 5,000 detections, 40 individuals
    python benchmarks/bench_review.py --detections 1000 --browser   # also time opening it in chromium

Protocol: ``synthetic.generate`` draws ``--individuals`` x 4 camera-trap crops (textured backgrounds, night
shots, JPEG noise); the season's detections cycle through them, each row encoding its own thumbnail as the
census does (so every detection pays for its own picture). Each row gets three candidates: the first with
60 verified correspondences (random points), the other two with their exemplar thumbnail; exemplars
(two per individual) are stored once. Timed: thumbnail encoding + :func:`render_page` (what the review page
adds to a census; decoding the photos and their keypoints are the census's own costs). With ``--browser``,
Debian's chromium opens the page headless and the time until the first page of rows is drawn is measured.

Prints the page size, bytes per detection (target: <= 25 KB) and the times.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leopard_reid.review import ImageTable, render_page  # noqa: E402
from leopard_reid.synthetic import generate  # noqa: E402

COLUMNS = ["path", "bbox", "proposed", "decision", "identity", "side", "camera", "datetime"]


def synthetic_rows(n: int, crops: list[np.ndarray], idents: list[str], *, seed: int = 0) -> tuple[list, ImageTable]:
    """``n`` review rows over the synthetic crops (see the module docstring) and their image table."""
    rng = np.random.default_rng(seed)
    images = ImageTable()
    ex_img = [images.add(("ex", k), crops[k]) for k in range(0, 2 * len(idents))]  # two exemplars per individual
    rows = []
    for i in range(n):
        k = i % len(crops)
        q = images.add(("row", i), crops[k])
        top = rng.choice(len(idents), size=3, replace=False)
        pts = rng.integers(0, 1001, size=(2, 120)).tolist()
        dec = ("known", "new", "uncertain")[i % 3]
        proposed = idents[top[0]] if dec != "new" else f"NEW-{1 + i % 400:04d}"
        rows.append({
            "key": f"season/IMG_{i:05d}.JPG|[10,20,300,200]", "path": f"season/IMG_{i:05d}.JPG",
            "bbox": "[10, 20, 300, 200]", "camera": f"C{i % 30:02d}", "datetime": f"2024-06-{1 + i % 28:02d}T12:00:00",
            "side": "left" if i % 2 else "right", "burst": f"B{i:05d}", "occasion": str(1 + i % 28), "decision": dec,
            "proposed": proposed, "score": round(float(rng.uniform(0.2, 1.0)), 3), "flank": "",
            "default": "confirm" if dec == "known" else "", "img": q, "first": None,
            "cands": [{"id": idents[t], "p": round(float(rng.uniform(0.1, 1.0)), 3), "img": ex_img[2 * t + (i % 2)],
                       "m": {"n": 60, "s": 41.5, "q": pts[0], "c": pts[1]} if r == 0 else None}
                      for r, t in enumerate(top)],
        })
    return rows, images


def browser_open_seconds(page: Path) -> tuple[float, str, float]:
    """In headless chromium: seconds from navigation until review.js has drawn the first page of rows, the
    path of the last row after paging to the end, and the seconds per page turn."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
              f"--user-data-dir={tempfile.mkdtemp()}"):
        opts.add_argument(a)
    opts.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.set_page_load_timeout(300)
        t = time.perf_counter()
        driver.get(page.as_uri())
        n = driver.execute_script("return document.querySelectorAll('#rows .det').length")
        seconds = time.perf_counter() - t
        if not n:
            raise RuntimeError("the page drew no rows")
        # every detection reachable: page through to the last one
        t = time.perf_counter()
        last = driver.execute_script(
            "var b = document.getElementById('next-page'), k = 0;"
            "while (!b.disabled) { b.click(); k++; }"
            "var rows = document.querySelectorAll('#rows .det');"
            "return [k, rows[rows.length - 1].dataset.path];")
        flips = time.perf_counter() - t
        return seconds, last[1], flips / max(1, last[0])
    finally:
        driver.quit()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--detections", type=int, default=5000)
    ap.add_argument("--individuals", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="where to write review.html (default: a temporary folder)")
    ap.add_argument("--browser", action="store_true", help="also time opening the page in headless chromium")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        meta = generate(Path(tmp) / "synth", n_individuals=args.individuals, sightings_per_individual=4,
                        seed=args.seed)
        crops = [np.asarray(Image.open(Path(tmp) / "synth" / p).convert("RGB")) for p in meta["path"]]
        idents = sorted(meta["identity"].unique())
        t0 = time.perf_counter()
        rows, images = synthetic_rows(args.detections, crops, idents, seed=args.seed)
        t1 = time.perf_counter()
        page = render_page(rows, images.items, columns=COLUMNS, summary=f"{args.detections} synthetic detections")
        t2 = time.perf_counter()
        out = Path(args.out) if args.out else Path(tmp) / "review.html"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
        size = out.stat().st_size
        res = {"detections": args.detections, "crop_px": list(crops[0].shape[1::-1]), "page_MB": round(size / 1e6, 2),
               "bytes_per_detection": round(size / args.detections), "thumbnails_s": round(t1 - t0, 2),
               "render_s": round(t2 - t1, 2), "images": len(images.items)}
        if args.browser:
            opened, last, per_page = browser_open_seconds(out)
            if last != rows[-1]["path"]:
                raise SystemExit(f"the last page ends with {last}, not the last detection {rows[-1]['path']}")
            res.update(browser_open_s=round(opened, 2), last_row_reached=last, page_turn_s=round(per_page, 3))
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>20}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
