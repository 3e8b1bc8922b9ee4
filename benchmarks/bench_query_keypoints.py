"""What plain-SIFT detections cost in accuracy: queries described with ``max_tilt=T`` against a gallery
described with the library's default keypoints (SIFT + affine-tilted views), as ``census --max-tilt T`` does.

    .venv/bin/python benchmarks/bench_query_keypoints.py [--pilanesberg DIR] [--wild-seeds 0 1] [--max-tilt 1]

Per set (those of ``bench_real.py``), leave-one-out identity top-1 of :class:`~leopard_reid.local.LocalMatcher`
(the local method: keypoints are what differs) for the four combinations of gallery and query keypoints:
default/default (the library), default/tilt-T (the census option), tilt-T/default and tilt-T/tilt-T.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_real import SHARED, dev_sets  # noqa: E402

import leopard_reid as lr  # noqa: E402
from leopard_reid.local import LocalMatcher  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--leopardtrails", type=Path, default=SHARED)
    ap.add_argument("--pilanesberg", type=Path, default=None, help="folder with metadata.csv (path,identity)")
    ap.add_argument("--wild-seeds", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--max-tilt", type=float, default=1.0, help="the queries' (or the other side's) max_tilt")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    sets = dev_sets(args.leopardtrails, args.pilanesberg, args.wild_seeds, Path(tmp.name))
    embedder = lr.Embedder(progress=False)
    t = f"tilt-{args.max_tilt:g}"
    print(f"{'set':<14}{'queries':>8}  top-1 (gallery/queries): default/default  default/{t}  {t}/default  {t}/{t}")
    for name, csv in sets:
        meta = lr.read_metadata(csv, require=("path", "identity"))
        feats = {k: embedder.describe(meta, root=csv.parent, local=opts, on_error="skip").local
                 for k, opts in (("default", True), (t, {"max_tilt": args.max_tilt}))}
        labels = meta["identity"].astype(str).to_numpy()
        q = [i for i in range(len(labels)) if (labels == labels[i]).sum() > 1]
        hits = []
        for g, qk in (("default", "default"), ("default", t), (t, "default"), (t, t)):
            m = LocalMatcher().fit(feats[g], labels)
            s = m.score_many([feats[qk][i] for i in q], exclude=q)
            hits.append(int((labels[np.argmax(s, axis=1)] == labels[q]).sum()))
        print(f"{name:<14}{len(q):>8}  " + "  ".join(f"{h:>3} ({h / len(q):.3f})" for h in hits), flush=True)
    tmp.cleanup()


if __name__ == "__main__":
    main()
