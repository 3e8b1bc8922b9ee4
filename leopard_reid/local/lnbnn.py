"""One-vs-many matching: an LNBNN vote over one index of all gallery descriptors, then verification.

A query is scored against every gallery exemplar at once with a local naive-Bayes nearest-neighbour
(LNBNN, McCann & Lowe 2012; HotSpotter, Crall et al. 2013) vote over one approximate nearest-neighbour
index of all gallery descriptors; a shortlist is then re-scored by pairwise geometric verification
(:mod:`leopard_reid.local.verification`) (:class:`LocalMatcher`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from .._parallel import thread_map
from .features import DESCRIPTOR_DIM, LocalFeatures, as_float_descriptors
from .index import BLOCK, ExactIndex, IVFPQIndex, KDTreeIndex, descriptor_blocks
from .verification import ratio_matches, verify_matches

__all__ = ["LocalMatcher"]

INDEXES = ("auto", "kdtree", "ivfpq")


def _mean_cov(arrays: Callable[[], Iterable[np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64, like ``np.cov``) of ``n`` quantised descriptors, converted block by block
    so a gallery of millions of descriptors never exists as one float array (nor as one uint8 array).
    ``arrays()`` walks the exemplars' descriptor arrays (twice)."""
    total = np.zeros(DESCRIPTOR_DIM)
    for b in descriptor_blocks(arrays()):
        total += as_float_descriptors(b).sum(0, dtype=np.float64)
    mean = total / n
    cov = np.zeros((DESCRIPTOR_DIM, DESCRIPTOR_DIM))
    for b in descriptor_blocks(arrays()):
        x = as_float_descriptors(b).astype(np.float64) - mean
        cov += x.T @ x
    return mean, cov / (n - 1)


class LocalMatcher:
    """One-vs-many LNBNN vote over all gallery descriptors, then geometric verification of a shortlist.

    Options (keyword-only):
        k: nearest neighbours that vote per query descriptor; the (k+1)-th is the LNBNN normaliser
            (vote = d_norm - d_i, one vote per query descriptor and exemplar).
        normalise: divide each exemplar's vote by sqrt(its keypoint count), so exemplars with many
            keypoints do not win by sheer number (measured: +7 to +18 points top-1 on leopardtrails).
        shortlist: how many exemplars (by LNBNN vote) get pairwise geometric verification.
        index: the nearest-neighbour index (:mod:`leopard_reid.local.index`): ``kdtree`` (FLANN kd-trees,
            about 0.5 kB resident per descriptor), ``ivfpq`` (faiss IVF-PQ codes, about 40 bytes), or
            ``auto``: kd-trees up to ``compress_above`` descriptors (2 million, about 1 GB of trees: every
            real gallery we have is under 1 million), IVF-PQ from there. On 8 M real descriptors IVF-PQ
            built in about the kd-trees' time (48 vs 39 s), searched twice as fast and found more of the
            exact neighbours (:class:`~leopard_reid.local.index.IVFPQIndex`); a 10,000-exemplar catalogue
            (15 M descriptors) or the census's index of a 10k season's unmatched detections (8 M) then
            needs a few hundred MB instead of 4-8 GB.
        checks / trees: FLANN kd-tree leaf checks and tree count (speed vs recall of the approximate
            index); ``checks <= 0`` or a gallery of at most ``exact_limit`` descriptors uses exact search.
        nprobe: IVF-PQ cells searched per descriptor.
        pca_dim: the index searches descriptors projected to this many principal components (None: all
            128); verification always uses the full descriptors.
        n_jobs: threads for the index search and for verification (default: all cores).
        ratio, threshold, scale_tol, angle_tol, min_inliers: passed to :func:`verify`.
        verification: False ranks by the LNBNN vote alone.
        seed: seeds OpenCV's RNG before building the randomised kd-trees (results are reproducible).
        support: with ``labels`` given to :meth:`fit`, each exemplar's score gains this fraction of the
            verification score of the best *other* verified exemplar of its identity. HotSpotter pools votes
            per name, not per photo: a second photo of the same animal that also verifies is evidence, and an
            identity ranked by its best exemplar alone ignores it (``benchmarks/bench_real.py``: synthetic
            wild top-1 +4 and +1 of 150 queries, Pilanesberg and leopardtrails unchanged). 0 turns it off.

    Score scale returned by :meth:`score` (higher = more similar, float64)::

        verified (>= min_inliers inliers):  score = 1 + verification.score + lnbnn / (lnbnn_max + 1e-9)
        otherwise:                          score =                          lnbnn / (lnbnn_max + 1e-9)
        then, with labels:                  score += support * (best other same-identity verification.score)

    ``lnbnn`` is the exemplar's (normalised) LNBNN vote (>= 0) and ``lnbnn_max`` the largest vote for that
    query, so an unverified exemplar scores in [0, 1] and a verified one above 1 (its
    :class:`Verification` score is a sum of inlier weights).  The excluded exemplar scores -1.
    """

    def __init__(
        self,
        *,
        k: int = 4,
        shortlist: int = 20,
        checks: int = 128,
        trees: int = 4,
        ratio: float = 0.8,
        threshold: float = 0.05,
        scale_tol: float = 2.0,
        angle_tol: float = 30.0,
        min_inliers: int = 4,
        verification: bool = True,
        normalise: bool = True,
        exact_limit: int = 0,
        index: str = "auto",
        compress_above: int = 2_000_000,
        nprobe: int = 16,
        pca_dim: int | None = 64,
        n_jobs: int | None = None,
        seed: int = 0,
        support: float = 0.5,
    ) -> None:
        if k < 1:
            raise ValueError("k must be >= 1")
        self.k = int(k)
        self.shortlist = int(shortlist)
        self.checks = int(checks)
        self.trees = int(trees)
        self.ratio = float(ratio)
        self.threshold = float(threshold)
        self.scale_tol = float(scale_tol)
        self.angle_tol = float(angle_tol)
        self.min_inliers = int(min_inliers)
        self.verification = bool(verification)
        self.normalise = bool(normalise)
        self.exact_limit = int(exact_limit)
        if index not in INDEXES:
            raise ValueError(f"index must be one of {INDEXES}, not {index!r}")
        self.index = index
        self.compress_above = int(compress_above)
        self.nprobe = int(nprobe)
        self.pca_dim = None if pca_dim is None else int(pca_dim)
        self.n_jobs = n_jobs
        self.seed = int(seed)
        self.support = float(support)

    # -- fitting -----------------------------------------------------------------------------------------

    def fit(self, features: Sequence[LocalFeatures], labels: Sequence[str] | None = None) -> LocalMatcher:
        """Index all descriptors of the gallery exemplars."""
        features = list(features)
        if labels is not None and len(labels) != len(features):
            raise ValueError("labels and features differ in length")
        self.features_ = features
        self.labels_ = None if labels is None else np.asarray([str(x) for x in labels])
        self.identity_codes_ = None if labels is None else np.unique(self.labels_, return_inverse=True)[1]
        counts = np.array([len(f) for f in features], np.int64)
        self.offsets_ = np.zeros(len(features) + 1, np.int64)
        np.cumsum(counts, out=self.offsets_[1:])
        self.owner_ = np.repeat(np.arange(len(features), dtype=np.int32), counts)
        n = len(self.owner_)

        def arrays() -> Iterator[np.ndarray]:
            # descriptors stay uint8 in the exemplars (a quarter of float32), or on disk
            # (:class:`~leopard_reid.local.store.DiskFeatures`), and are read block by block: the index holds
            # only what it searches
            return (f.descriptors for f in features)

        self.pca_mean_, self.pca_components_ = None, None
        if self.pca_dim and 0 < self.pca_dim < DESCRIPTOR_DIM and n > DESCRIPTOR_DIM:
            # kd-trees degrade with dimension: search in a PCA subspace (eigh of the covariance; exact
            # and deterministic), which is several times faster at equal recall
            mean, cov = _mean_cov(arrays, n)
            _, vecs = np.linalg.eigh(cov)
            self.pca_mean_ = mean.astype(np.float32)
            self.pca_components_ = np.ascontiguousarray(vecs[:, ::-1][:, : self.pca_dim], np.float32)
        dim = DESCRIPTOR_DIM if self.pca_components_ is None else self.pca_dim

        def blocks() -> Iterator[np.ndarray]:
            return (self._project(as_float_descriptors(b)) for b in descriptor_blocks(arrays()))

        self.index_kind_ = self._index_kind(n)
        if self.index_kind_ == "exact":
            self.index_ = ExactIndex.build(blocks(), n, dim)
        elif self.index_kind_ == "kdtree":
            self.index_ = KDTreeIndex.build(blocks(), n, dim, trees=self.trees, checks=self.checks, seed=self.seed,
                                      n_jobs=self.n_jobs)
        else:
            self.index_ = IVFPQIndex.build(blocks, lambda rows: self._project(as_float_descriptors(self._rows(rows))),
                                     n, dim, nprobe=self.nprobe, seed=self.seed, n_jobs=self.n_jobs)
        self.n_keypoints_ = counts
        return self

    @property
    def n_exemplars(self) -> int:
        """Exemplars indexed by :meth:`fit`."""
        return len(self.features_)

    # -- LNBNN -------------------------------------------------------------------------------------------

    def _index_kind(self, n: int) -> str:
        if self.checks <= 0 or n <= self.exact_limit:
            return "exact"
        if self.index == "auto":
            return "ivfpq" if n > self.compress_above else "kdtree"
        if self.index == "ivfpq" and n < 1024:
            return "exact"  # too few descriptors to train codebooks on; exact search costs nothing here
        return self.index

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        """uint8 descriptors of gallery rows ``rows`` (sorted), read from their exemplars."""
        ex = self.owner_[rows]
        local = rows - self.offsets_[ex]
        out = np.empty((len(rows), DESCRIPTOR_DIM), np.uint8)
        bounds = np.flatnonzero(np.r_[True, ex[1:] != ex[:-1], True])
        for s, e in zip(bounds[:-1], bounds[1:]):
            out[s:e] = self.features_[ex[s]].descriptors[local[s:e]]
        return out

    def _knn(self, desc: np.ndarray, n_neighbours: int) -> tuple[np.ndarray, np.ndarray]:
        """(idx, squared L2) of the n nearest gallery descriptors per row (``-1`` where not found), from the
        index :meth:`fit` chose (:attr:`index_kind_`)."""
        n_neighbours = min(n_neighbours, len(self.owner_))
        idx = np.empty((len(desc), n_neighbours), np.int64)
        dist = np.empty((len(desc), n_neighbours), np.float64)
        for s in range(0, len(desc), BLOCK):  # converted and projected a block at a time: bounded memory
            idx[s : s + BLOCK], dist[s : s + BLOCK] = self.index_.search(
                self._project(as_float_descriptors(desc[s : s + BLOCK])), n_neighbours)
        return idx, dist

    def _project(self, x: np.ndarray) -> np.ndarray:
        if self.pca_components_ is None:
            return x
        return np.ascontiguousarray((x - self.pca_mean_) @ self.pca_components_, np.float32)

    def _lnbnn(
        self, idx: np.ndarray, dist: np.ndarray, qcount: np.ndarray, exclude: Sequence[int | None]
    ) -> list[np.ndarray]:
        """Per-query LNBNN votes per exemplar from kNN rows (grouped per query by qcount)."""
        n_ex = self.n_exemplars
        k = self.k
        out = []
        start = 0
        for q, nq in enumerate(qcount):
            rows_i = idx[start : start + nq]
            rows_d = dist[start : start + nq]
            start += nq
            votes = np.zeros(n_ex, np.float64)
            if nq == 0 or rows_i.shape[1] == 0:
                out.append(votes)
                continue
            owner = self.owner_[rows_i]
            valid = rows_i >= 0
            ex = exclude[q]
            if ex is not None:
                valid &= owner != ex
            # compact the valid neighbours to the left, keep k + 1
            order = np.argsort(~valid, axis=1, kind="stable")
            owner = np.take_along_axis(owner, order, 1)
            d = np.sqrt(np.maximum(np.take_along_axis(rows_d, order, 1), 0.0))
            nvalid = valid.sum(1)
            usable = nvalid >= 2
            if not usable.any():
                out.append(votes)
                continue
            owner, d, nvalid = owner[usable], d[usable], nvalid[usable]
            kk = min(k, d.shape[1] - 1)
            norm_col = np.minimum(nvalid - 1, kk)
            dnorm = d[np.arange(len(d)), norm_col]
            w = dnorm[:, None] - d[:, :kk]
            w[np.arange(kk)[None, :] >= norm_col[:, None]] = 0.0
            np.maximum(w, 0.0, out=w)
            # one vote per (query descriptor, exemplar): the best one
            o = owner[:, :kk]
            r = np.repeat(np.arange(len(o)), kk)
            key = r * n_ex + o.ravel()
            wf = w.ravel()
            srt = np.lexsort((-wf, key))
            key_s = key[srt]
            first = np.ones(len(key_s), bool)
            first[1:] = key_s[1:] != key_s[:-1]
            sel = srt[first]
            np.add.at(votes, o.ravel()[sel], wf[sel])
            if self.normalise:
                votes /= np.sqrt(np.maximum(self.n_keypoints_, 1))
            out.append(votes)
        return out

    def lnbnn_many(
        self, queries: Sequence[LocalFeatures], *, exclude: Sequence[int | None] | None = None
    ) -> np.ndarray:
        """(n_q, n_exemplars) LNBNN votes (divided by sqrt(keypoints) if ``normalise``), one batched search."""
        self._check_fitted()
        queries = list(queries)
        exclude = [None] * len(queries) if exclude is None else list(exclude)
        if len(exclude) != len(queries):
            raise ValueError("exclude and queries differ in length")
        qcount = np.array([len(q) for q in queries], np.int64)
        if len(self.owner_) == 0 or qcount.sum() == 0:
            return np.zeros((len(queries), self.n_exemplars))
        # extra neighbours so that an excluded exemplar's own descriptors can be skipped
        extra = 0
        if any(e is not None for e in exclude):
            extra = self.k + 1
        desc = np.concatenate([q.descriptors for q in queries])
        idx, dist = self._knn(desc, self.k + 1 + extra)
        return np.stack(self._lnbnn(idx, dist, qcount, exclude)) if queries else np.zeros((0, self.n_exemplars))

    # -- scoring -----------------------------------------------------------------------------------------

    def _shortlist(self, votes: np.ndarray, exclude: int | None, candidates: Sequence[int] | None) -> np.ndarray:
        n = self.n_exemplars
        order = np.argsort(-votes, kind="stable")
        if exclude is not None:
            order = order[order != exclude]
        chosen = list(order[: self.shortlist])
        if candidates is not None:
            chosen += [int(c) for c in candidates if 0 <= int(c) < n and c != exclude]
        return np.array(sorted(set(int(c) for c in chosen)), np.int64)

    def _final_many(
        self,
        queries: Sequence[LocalFeatures],
        votes: np.ndarray,
        exclude: Sequence[int | None],
        candidates: Sequence[Sequence[int] | None],
    ) -> np.ndarray:
        """Scores of many queries from their votes: every (query, shortlisted exemplar) pair is verified, the
        pairs spread over ``n_jobs`` threads (the descriptor GEMM that dominates releases the GIL; one BLAS
        thread each), so a single query's shortlist uses every core too. Each pair is computed exactly as
        alone: the result does not depend on the thread count."""
        out = votes / (votes.max(axis=1, keepdims=True) + 1e-9) if votes.size else votes.astype(np.float64)
        if self.verification:
            self._verify_many(out, queries, votes, exclude, candidates)
        for i, ex in enumerate(exclude):
            if ex is not None and 0 <= ex < out.shape[1]:
                out[i, ex] = -1.0  # excluded: no vote, verification or support
        return out

    def _verify_many(
        self, out: np.ndarray, queries: Sequence[LocalFeatures], votes: np.ndarray, exclude: Sequence[int | None],
        candidates: Sequence[Sequence[int] | None],
    ) -> None:
        """Add each shortlisted pair's verification (1 + score where it has inliers) and the identity support
        to the vote scores ``out``, in place."""
        pairs = [(i, int(j)) for i, q in enumerate(queries) if len(q)
                 for j in self._shortlist(votes[i], exclude[i], candidates[i])]

        def check(pair: tuple[int, int]) -> tuple[int, float]:
            i, j = pair
            qi, ci, w = ratio_matches(queries[i].descriptors, self.features_[j].descriptors, self.ratio, False)
            v = verify_matches(queries[i], self.features_[j], qi, ci, w, threshold=self.threshold,
                               scale_tol=self.scale_tol, angle_tol=self.angle_tol, min_inliers=self.min_inliers)
            return v.n_inliers, v.score

        with threadpool_limits(1):
            results = thread_map(check, pairs, self.n_jobs)
        verified = np.zeros(out.shape)
        for (i, j), (n_inliers, score) in zip(pairs, results):
            if n_inliers:
                out[i, j] += 1.0 + score
                verified[i, j] = score
        for i in range(len(out)):
            out[i] = self._supported(out[i], verified[i])

    def _supported(self, s: np.ndarray, verified: np.ndarray) -> np.ndarray:
        """Add ``support`` x the best verification score among each exemplar's *other* same-identity exemplars."""
        if self.identity_codes_ is None or self.support == 0 or not verified.any():
            return s
        codes, idx = self.identity_codes_, np.arange(len(verified))
        best = np.zeros(codes.max() + 1)
        np.maximum.at(best, codes, verified)
        holder = np.full(len(best), len(idx))  # per identity: its first exemplar with the best score
        at_best = verified == best[codes]
        np.minimum.at(holder, codes[at_best], idx[at_best])
        mine = idx == holder[codes]
        second = np.zeros_like(best)
        np.maximum.at(second, codes, np.where(mine, 0.0, verified))
        other = np.where(mine, second[codes], best[codes])
        return s + self.support * other

    def score(
        self,
        query: LocalFeatures,
        *,
        exclude: int | None = None,
        candidates: Sequence[int] | None = None,
    ) -> np.ndarray:
        """float64 (n_exemplars,) similarity of ``query`` to each exemplar (scale: see class docstring).

        ``exclude``: exemplar index ignored entirely (its descriptors do not vote; its score is -1), for
        leave-one-out.  ``candidates``: extra exemplars to verify besides the LNBNN shortlist.
        """
        return self.score_many([query], exclude=[exclude], candidates=[candidates])[0]

    def score_many(
        self,
        queries: Sequence[LocalFeatures],
        *,
        exclude: Sequence[int | None] | None = None,
        candidates: Sequence[Sequence[int] | None] | None = None,
    ) -> np.ndarray:
        """(n_q, n_exemplars) float64: :meth:`score` for many queries with one batched index search."""
        queries = list(queries)
        exclude = [None] * len(queries) if exclude is None else list(exclude)
        candidates = [None] * len(queries) if candidates is None else list(candidates)
        if len(candidates) != len(queries):
            raise ValueError("candidates and queries differ in length")
        votes = self.lnbnn_many(queries, exclude=exclude)
        return self._final_many(queries, votes, exclude, candidates)

    def _check_fitted(self) -> None:
        if not hasattr(self, "features_"):
            raise RuntimeError("LocalMatcher is not fitted; call fit() first")
