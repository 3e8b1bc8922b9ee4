"""Would a keypoint cascade make a census cheaper? Plain SIFT for every detection, affine views only where needed.

    python benchmarks/bench_cascade.py --season /tmp/scale-bench/season-1000-seed0 [--n 200]

A season folder is what ``bench_census_scale.py --data DIR`` generates (``md.json``, ``sightings.csv``,
``cameras.csv``, ``gallery.lrg``). ``--n`` detections drawn at random (seed 0) are described and scored against
the gallery twice, as the census does: with plain SIFT (``max_tilt=1``) and with the default affine views.
The cascade takes plain SIFT's call where it is ``known`` (P at or above the calibrated band's top) and the
affine views' call elsewhere (the uncertain and the new, which clustering compares). Printed: seconds per
detection of each stage, the calls of both, how many detections the cascade escalates, how many of its calls
(and known identities) equal affine views for every detection, and its cost per detection against that.
One process, on this machine's cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leopard_reid import Embedder  # noqa: E402
from leopard_reid.census.pipeline import CensusOptions, _locate, _read_inputs  # noqa: E402
from leopard_reid.census.scoring import _records, _thresholds  # noqa: E402
from leopard_reid.gallery import IdentityGroups  # noqa: E402
from leopard_reid.matching import Matcher  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--season", type=Path, required=True, help="a season folder of bench_census_scale.py")
    ap.add_argument("--n", type=int, default=200, help="detections drawn at random")
    args = ap.parse_args()

    root = args.season
    opts = CensusOptions(sightings=root / "sightings.csv", cameras=root / "cameras.csv")
    with tempfile.TemporaryDirectory() as out:
        inp = _read_inputs(root / "md.json", root / "gallery.lrg", Path(out), opts)
    meta = _locate(inp)
    rows = np.sort(np.random.default_rng(0).choice(len(meta), min(args.n, len(meta)), replace=False))
    recs = _records(meta.iloc[rows])
    embedder = Embedder(progress=False)
    matcher = Matcher(method="fused").fit(inp.gallery)
    _, lo, hi = _thresholds(matcher, "fused", None)
    by_identity = IdentityGroups(matcher.labels_)
    n = len(recs)
    runs = {}
    for name, local in (("plain SIFT", {"max_tilt": 1}), ("affine views", True)):
        t0 = time.perf_counter()
        feats = embedder.describe(recs, local=local, on_error="skip")
        t_describe = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        final = matcher.scores(feats).final
        t_score = (time.perf_counter() - t0) / n
        best, _ = by_identity.best(np.where(np.isfinite(final), final, -np.inf))
        p = best.max(axis=1)
        call = np.where(p >= hi, "known", np.where(p >= lo, "uncertain", "new"))
        runs[name] = {"seconds": t_describe + t_score, "call": call, "id": best.argmax(axis=1)}
        counts = {c: int((call == c).sum()) for c in ("known", "uncertain", "new")}
        print(f"{name}: describe {t_describe:.3f} + score {t_score:.3f} s per detection; calls {counts}")
    plain, affine = runs["plain SIFT"], runs["affine views"]
    escalate = plain["call"] != "known"
    call = np.where(escalate, affine["call"], plain["call"])
    ident = np.where(escalate, affine["id"], plain["id"])
    same = (call == affine["call"]) & ((call != "known") | (ident == affine["id"]))
    cost = plain["seconds"] + escalate.mean() * affine["seconds"]
    print(f"cascade: {escalate.mean():.0%} of {n} detections escalated to affine views; {int(same.sum())}/{n} "
          f"calls as with affine views everywhere; {cost:.3f} s per detection against {affine['seconds']:.3f} "
          f"({cost / affine['seconds']:.2f}x)")


if __name__ == "__main__":
    main()
