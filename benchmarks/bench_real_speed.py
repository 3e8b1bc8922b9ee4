"""Matching speed on wild photos: leave-one-out over a ~300-photo set, and one query against 1,000 exemplars.

    .venv/bin/python benchmarks/bench_real_speed.py [--individuals 60] [--exemplars 1000] [--queries 20]
    .venv/bin/python benchmarks/bench_real_speed.py --catalogue-only --exemplars 10000   # issue 17's catalogue

1. A synthetic wild-mode set (``generate(wild=True)``: whole animals in scenes, 5 photos each, 400-800 px) of
   ``--individuals`` animals is described (embedding + keypoints with the library's defaults, foreground map
   included) and evaluated leave-one-out with the default method; seconds for each step and in total, and
   in the same run the plain RootSIFT LNBNN baseline's (``baseline_lnbnn.py``) total, as a ratio.
2. Per-query time against a gallery of ``--exemplars`` exemplars: the described photos' keypoints, repeated
   with their descriptors perturbed (so no two are identical) until the gallery holds that many, indexed by
   the default :class:`~leopard_reid.local.LocalMatcher`; one held-out photo of each of ``--queries`` animals
   is scored against it (LNBNN over all descriptors + verification of the shortlist; the query's own animal
   is in the catalogue with its other photos, never copied), and how many queries' best exemplar is one of
   their own animal's photos is printed. ``--index`` picks the index (default: the library's ``auto``).
   Descriptors are what costs, not their meaning, so the copies time the search as a real gallery of that
   size would.

With ``--catalogue-only`` step 1's evaluation is skipped; the process's peak resident memory (``ru_maxrss``)
after the catalogue is built and queried is printed, so run one size per process. As a user meets a
catalogue, from its gallery file (its keypoints in memory, or left in the file)::

    .venv/bin/python benchmarks/bench_real_speed.py --catalogue-only --exemplars 10000 --save-catalogue /tmp/cat
    .venv/bin/python benchmarks/bench_real_speed.py --load-catalogue /tmp/cat --keypoints disk

The budget (issue #16): leave-one-out over ~300 wild photos <= 300 s on 2 cores including extraction;
<= 0.5 s per query against 1,000 exemplars. Issue #17: <= 0.5 s per query and <= 4 GB resident at 10,000.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_lnbnn import lnbnn_scores, rootsift_features  # noqa: E402

import leopard_reid as lr  # noqa: E402
from leopard_reid.local import LocalFeatures, LocalMatcher  # noqa: E402
from leopard_reid.synthetic import generate  # noqa: E402


def _perturbed(f: LocalFeatures, rng: np.random.Generator) -> LocalFeatures:
    noise = rng.integers(-2, 3, size=f.descriptors.shape)
    desc = np.clip(f.descriptors.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return LocalFeatures(f.keypoints.copy(), desc, f.image_size)


def leave_one_out(meta, root: Path, embedder: lr.Embedder, feats, t_describe: float) -> None:
    """Step 1: the default method's leave-one-out, timed, against the plain baseline in the same run."""
    ev = lr.evaluate(meta, embedder=embedder, root=root, features=feats)
    total = t_describe + ev.seconds
    t0 = time.perf_counter()
    descs = [rootsift_features(str(root / p)) for p in meta["path"]]
    lnbnn_scores(descs, meta["identity"].astype(str).to_numpy())
    t_base = time.perf_counter() - t0
    print(f"leave-one-out, {len(meta)} wild photos, default method ({ev.method}): top-1 {ev.top1:.3f}")
    print(f"  describe {t_describe:.1f} s + evaluate {ev.seconds:.1f} s = {total:.1f} s "
          f"(budget 300 s); plain RootSIFT LNBNN baseline {t_base:.1f} s, ratio {total / t_base:.1f}x")


def build(args: argparse.Namespace) -> tuple[list, list[str], list, list[str]]:
    """Step 1 (unless ``--catalogue-only``), then the catalogue and its queries for step 2."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        meta = generate(root, n_individuals=args.individuals, seed=args.seed, wild=True)
        embedder = lr.Embedder()
        t0 = time.perf_counter()
        feats = embedder.describe(meta, root=root, local=True)
        t_describe = time.perf_counter() - t0
        if not args.catalogue_only:
            leave_one_out(meta, root, embedder, feats, t_describe)

    # queries: one photo each of the first --queries animals; the catalogue: every other photo, then
    # perturbed copies of the *other* animals' photos (a query's own animal is not copied: a real
    # catalogue holds few photos of any one animal) until it holds --exemplars
    rng = np.random.default_rng(0)
    ids = meta["identity"].astype(str).to_numpy()
    first = {i: k for k, i in reversed(list(enumerate(ids)))}
    q_rows = [first[i] for i in list(dict.fromkeys(ids))[: args.queries]]
    g_rows = [k for k in range(len(ids)) if k not in set(q_rows)]
    fill = [k for k in g_rows if ids[k] not in {ids[r] for r in q_rows}]
    gallery = [feats.local[k] for k in g_rows]
    labels = [ids[k] for k in g_rows]
    while len(gallery) < args.exemplars:
        k = fill[len(gallery) % len(fill)]
        gallery.append(_perturbed(feats.local[k], rng))
        labels.append(f"copy{len(gallery)}")
    return gallery, labels, [feats.local[r] for r in q_rows], [ids[r] for r in q_rows]


def measure(gallery: list, labels: list[str], queries: list, truth: list[str], index: str) -> None:
    """Step 2: fit the catalogue's matcher, score each query against it; time, accuracy and peak memory."""
    t0 = time.perf_counter()
    matcher = LocalMatcher(index=index).fit(gallery, labels)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    best = [labels[int(np.argmax(matcher.score(q)))] for q in queries]
    per_query = (time.perf_counter() - t0) / len(queries)
    right = sum(b == t for b, t in zip(best, truth))
    n_desc = sum(len(f) for f in gallery)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"catalogue of {len(gallery)} exemplars ({n_desc:,} descriptors, {matcher.index_kind_} index): "
          f"built in {t_fit:.1f} s, {per_query:.3f} s per query over {len(queries)} queries (budget 0.5 s), "
          f"{right}/{len(queries)} queries' best exemplar of their own animal; peak RSS {rss:.2f} GB")


def _as_gallery(features: list, labels: list[str]) -> lr.Gallery:
    return lr.Gallery.from_embeddings(np.ones((len(features), 1)), labels, local=features)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--individuals", type=int, default=60)
    ap.add_argument("--exemplars", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--catalogue-only", action="store_true", help="skip the leave-one-out evaluation (step 1)")
    ap.add_argument("--index", default="auto", choices=["auto", "kdtree", "ivfpq"],
                    help="the catalogue's LocalMatcher index (auto: kd-trees up to 2M descriptors, IVF-PQ above)")
    ap.add_argument("--save-catalogue", metavar="DIR", type=Path,
                    help="write the catalogue and its queries as gallery files into DIR, and stop")
    ap.add_argument("--load-catalogue", metavar="DIR", type=Path,
                    help="step 2 only, on the gallery files --save-catalogue wrote (a fresh process: peak memory "
                         "is then the catalogue's as a user loads it)")
    ap.add_argument("--keypoints", default="memory", choices=["memory", "disk"],
                    help="with --load-catalogue: Gallery.load(keypoints=...), the exemplars' keypoints in memory "
                         "or read from the file as matching needs them")
    args = ap.parse_args()

    if args.load_catalogue:
        g = lr.Gallery.load(args.load_catalogue / "catalogue.lrg", keypoints=args.keypoints)
        q = lr.Gallery.load(args.load_catalogue / "queries.lrg")
        print(f"catalogue loaded with keypoints={args.keypoints!r}")
        measure(g.local, list(g.labels), q.local, list(q.labels), args.index)
        return
    gallery, labels, queries, truth = build(args)
    if args.save_catalogue:
        args.save_catalogue.mkdir(parents=True, exist_ok=True)
        _as_gallery(gallery, labels).save(args.save_catalogue / "catalogue.lrg", overwrite=True)
        _as_gallery(queries, truth).save(args.save_catalogue / "queries.lrg", overwrite=True)
        print(f"wrote {args.save_catalogue}/catalogue.lrg ({len(gallery)} exemplars) and queries.lrg")
        return
    measure(gallery, labels, queries, truth, args.index)


if __name__ == "__main__":
    main()
