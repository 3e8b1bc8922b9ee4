"""Search speed and memory: leopard_reid's blocked exact search vs scikit-learn brute cosine kNN.

    python benchmarks/bench_search.py [--queries 1000] [--exemplars 100000] [--identities 2000] [--dim 1280]

Prints seconds, peak extra memory (tracemalloc) as a multiple of the gallery's own size, and whether the
top-1 identities agree.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--exemplars", type=int, default=100_000)
    ap.add_argument("--identities", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--top-k", type=int, default=5)
    args = ap.parse_args()

    from sklearn.neighbors import NearestNeighbors

    from leopard_reid import Gallery

    rng = np.random.default_rng(0)
    g = rng.standard_normal((args.exemplars, args.dim), dtype=np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    labels = np.array([f"L-{i % args.identities:05d}" for i in range(args.exemplars)], dtype=object)
    q = g[rng.choice(args.exemplars, args.queries, replace=False)] + 0.05 * rng.standard_normal(
        (args.queries, args.dim), dtype=np.float32
    )
    gallery = Gallery.from_embeddings(g, labels)
    gbytes = gallery.embeddings.nbytes
    print(f"gallery: {args.exemplars:,} exemplars x {args.dim} ({gbytes / 2**20:.0f} MiB), "
          f"{args.identities:,} identities; {args.queries:,} queries, top-{args.top_k}")

    def measure(fn):
        tracemalloc.start()
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return out, dt, peak

    nn = NearestNeighbors(n_neighbors=args.top_k, metric="cosine", algorithm="brute").fit(gallery.embeddings)
    (dist, idx), t_sk, m_sk = measure(lambda: nn.kneighbors(q, return_distance=True))
    res, t_lr, m_lr = measure(lambda: gallery.search(q, top_k=args.top_k))
    top1_lr = res[res["rank"] == 1]["identity"].to_numpy()
    top1_sk = labels[idx[:, 0]]
    agree = float(np.mean(top1_lr == top1_sk))
    print(f"{'method':<34}{'seconds':>9}{'queries/s':>11}{'peak extra MiB':>16}{'x gallery':>11}")
    print(f"{'scikit-learn brute cosine kNN':<34}{t_sk:>9.2f}{args.queries / t_sk:>11.0f}"
          f"{m_sk / 2**20:>16.0f}{m_sk / gbytes:>11.2f}")
    print(f"{'leopard_reid blocked, per identity':<34}{t_lr:>9.2f}{args.queries / t_lr:>11.0f}"
          f"{m_lr / 2**20:>16.0f}{m_lr / gbytes:>11.2f}")
    print(f"speed-up vs scikit-learn: {t_sk / t_lr:.2f}x; top-1 identity agreement: {agree:.3f}")


if __name__ == "__main__":
    main()
