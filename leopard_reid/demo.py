"""The demo: the library's main job end to end, offline, on the embedded default backbone.

A synthetic population is photographed; half of the individuals are enrolled from their first sightings,
then a "season" of later sightings (known animals and never-seen ones) is matched, and a report says who
was recognised, who was called new, and how often that was right.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

__all__ = ["run_demo"]


def run_demo(out: str | os.PathLike = "demo_out", *, n_individuals: int = 12, seed: int = 7) -> pd.DataFrame:
    """Run the demo in ``out`` and print a readable report; returns the match table of the season."""
    from .embed import Embedder
    from .gallery import Gallery
    from .matching import match
    from .synthetic import generate

    out = Path(out)
    t0 = time.perf_counter()
    meta = generate(out / "images", n_individuals=n_individuals, sightings_per_individual=4, seed=seed)
    t_gen = time.perf_counter() - t0
    ids = sorted(meta["identity"].unique())
    known = set(ids[: len(ids) // 2])
    first = meta.groupby(["identity", "side"]).cumcount() == 0
    enrol = meta[meta["identity"].isin(known) & first].reset_index(drop=True)
    season = meta[~(meta["identity"].isin(known) & first)].reset_index(drop=True)
    print(f"synthetic population: {len(ids)} leopards, {len(meta)} photos ({t_gen:.1f} s) in {out / 'images'}")
    print(f"enrolling {len(known)} known leopards from {len(enrol)} photos (one per flank)...")

    t1 = time.perf_counter()
    embedder = Embedder(progress=False)
    gallery = Gallery.build(embedder, enrol, root=out / "images")
    gallery_path = gallery.save(out / "gallery.safetensors", overwrite=True)
    t_enrol = time.perf_counter() - t1
    print(f"  {gallery} -> {gallery_path} ({t_enrol:.1f} s)")

    print(f"matching a season of {len(season)} photos ({season['identity'].isin(known).sum()} of known leopards)...")
    t2 = time.perf_counter()
    result = match(season, gallery, embedder=embedder, root=out / "images", top_k=3)
    t_match = time.perf_counter() - t2
    top = result[result["rank"] == 1].set_index("query")
    truth = season.set_index("path")
    rows = []
    for path, r in top.iterrows():
        true_id = truth.loc[path, "identity"]
        is_known = true_id in known
        if r["decision"] == "match":
            verdict = "correct" if r["identity"] == true_id else "WRONG"
        else:
            verdict = "correct" if not is_known else "missed"
        rows.append(
            {
                "photo": path,
                "side": truth.loc[path, "side"],
                "truth": true_id if is_known else f"new ({true_id})",
                "call": r["identity"] if r["decision"] == "match" else "new",
                "P(same)": round(float(r["score"]), 3),
                "keypoints": round(float(r["local"]), 1),
                "verdict": verdict,
            }
        )
    report = pd.DataFrame(rows)
    with pd.option_context("display.max_rows", 200, "display.width", 120):
        print(report.to_string(index=False))
    kn = report["truth"].str.startswith("new") == False  # noqa: E712
    print()
    print(f"known leopards recognised: {int((report['verdict'][kn] == 'correct').sum())}/{int(kn.sum())}")
    print(f"new leopards flagged new:  {int((report['verdict'][~kn] == 'correct').sum())}/{int((~kn).sum())}")
    print(f"wrong identities:          {int((report['verdict'] == 'WRONG').sum())}")
    print(f"time: generate {t_gen:.1f} s, enroll {t_enrol:.1f} s, match {t_match:.1f} s "
          f"({t_match / max(1, len(season)):.2f} s per photo)")
    result.to_csv(out / "matches.csv", index=False)
    print(f"matches written to {out / 'matches.csv'}")
    return result


def write_census_season(
    out: str | Path, *, n_individuals: int = 12, sightings_per_individual: int = 6, seed: int = 0,
    paired_fraction: float = 0.5,
) -> dict[str, Path]:
    """A synthetic season as a census takes it, so a new user can try ``census`` end to end.

    Writes into ``out``: full camera-trap frames (``images/``, paired stations photographing both flanks for
    ``paired_fraction`` of the visits), ``known.csv`` (the first sighting of each flank of half of the
    leopards, to enroll), ``md.json`` (MegaDetector batch output for every other frame), ``sightings.csv``
    (path, camera, datetime, side) and ``cameras.csv`` (camera, x, y, station). Returns those paths.
    """
    import json

    import numpy as np
    from PIL import Image

    from .synthetic import generate

    out = Path(out)
    images = out / "images"
    df = generate(images, n_individuals=n_individuals, sightings_per_individual=sightings_per_individual, seed=seed,
                  frame=True, paired_fraction=paired_fraction)
    ids = sorted(df["identity"].unique())
    known = set(ids[::2])
    first = df.groupby(["identity", "side"]).cumcount() == 0
    enrol = df[df["identity"].isin(known) & first]
    season = df.drop(index=enrol.index)
    files = {"known": out / "known.csv", "detections": out / "md.json", "sightings": out / "sightings.csv",
             "cameras": out / "cameras.csv", "images": images}
    enrol.assign(path="images/" + enrol["path"])[["path", "identity", "side", "bbox", "datetime", "camera"]].to_csv(
        files["known"], index=False)
    entries = []
    for path, box in zip(season["path"], season["bbox"]):
        w, h = Image.open(images / path).size
        x, y, bw, bh = json.loads(box)
        entries.append({"file": f"images/{path}", "detections": [{"category": "1", "conf": 0.9, "bbox": [
            round(x / w, 4), round(y / h, 4), round(bw / w, 4), round(bh / h, 4)]}]})
    files["detections"].write_text(json.dumps({"detection_categories": {"1": "animal", "2": "person",
                                                                       "3": "vehicle"}, "images": entries}))
    season.assign(path="images/" + season["path"])[["path", "camera", "datetime", "side"]].to_csv(
        files["sightings"], index=False)
    cams = sorted(df["camera"].unique())
    rng = np.random.default_rng(seed)
    pd.DataFrame({"camera": cams, "x": rng.uniform(0, 10000, len(cams)).round(1),
                  "y": rng.uniform(0, 10000, len(cams)).round(1), "station": cams}).to_csv(files["cameras"],
                                                                                            index=False)
    return files
