"""Provisional new individuals: agglomerative clustering of the bursts no known individual matched
(:func:`_cluster_new`) on the gallery matching's pairwise score (P(same) without the correction for a
gallery's size: here every pair is one comparison), turned into a distance on every method's scale
(:func:`_distance`). Each unmatched detection is verified against a shortlist of the others only, and
the clustering runs on that sparse graph (:func:`_sparse_linkage`); :func:`_cluster_exhaustive` is the dense
n x n reference it is tested against; :func:`_name_new` is the pipeline's stage that names them ``NEW-xxxx`` and joins
the two flanks of one animal photographed together at a paired station.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._memory import release_free_memory
from .grouping import _flank_partners, _link_flanks, _paired_bursts
from .results import NEW_PREFIX

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .pipeline import _Calls
    from .scoring import _Scored


def _unmatched_gallery(
    unmatched: list[int], members: list[list[int]], emb: Mapping[int, np.ndarray], local: Mapping[int, Any],
    det_sides: Sequence[str], matcher: Any, shortlist: int,
) -> tuple[list[int], np.ndarray, Any, Any]:
    """The unmatched bursts' detections as a gallery of their own (one exemplar each, the features the scoring
    stage kept: nothing is described again), a matcher fitted on it, and a function scoring a block of them
    against all the others (themselves excluded). Returns ``(dets, owner, matcher, score_block)``."""
    import numpy as np
    import pandas as pd

    from ..embed import Features
    from ..gallery import Gallery as _G
    from ..matching import Matcher

    dets = [i for g in unmatched for i in members[g]]
    owner = np.array([k for k, g in enumerate(unmatched) for _ in members[g]])
    e = np.stack([emb[i] for i in dets])
    loc = [local[i] for i in dets] if matcher.method != "global" else None
    sides = [str(det_sides[i]) for i in dets]
    tmp = _G.from_embeddings(e, [f"u{k}" for k in range(len(dets))], local=loc,
                             metadata=pd.DataFrame({"path": [str(i) for i in dets], "side": sides}))
    # pairwise P: each detection is its own "identity" here, so no correction for the number of them
    m = Matcher(method=matcher.method, calibration=matcher.calibration_, shortlist=shortlist,
                size_correction=False).fit(tmp)

    def score_block(idx: list[int]) -> np.ndarray:
        f = Features(names=[str(dets[i]) for i in idx], embeddings=e[idx], local=[loc[i] for i in idx] if loc else None,
                     valid=np.ones(len(idx), bool), sides=[sides[i] for i in idx])
        final = m.scores(f, exclude=idx).final
        return np.where(np.isfinite(final), final, -np.inf)

    return dets, owner, m, score_block


def _cluster_exhaustive(
    unmatched: list[int],
    members: list[list[int]],
    emb: Mapping[int, np.ndarray],
    local: Mapping[int, Any],
    det_sides: Sequence[str],
    matcher: Any,
    thr: float,
    linkage: str,
    show: bool = False,
) -> dict[int, int]:
    """The reference clustering: every unmatched detection scored against every other into a dense n x n
    matrix (the census's before issue 17), then the bursts clustered with every comparable pair an edge
    (:func:`_sparse_linkage`: without flanks it equals scikit-learn's linkage on a dense matrix, with them a
    naive agglomeration over comparable pairs, ``tests/test_census_scale.py``). Memory and time grow
    with the square of the season; kept to check :func:`_cluster_new` against."""
    import numpy as np

    if len(unmatched) <= 1:
        return {g: 0 for g in unmatched}
    dets, owner, _, score_block = _unmatched_gallery(unmatched, members, emb, local, det_sides, matcher,
                                                     matcher.shortlist)
    n = len(dets)
    sim = np.zeros((n, n), np.float32)
    for s in range(0, n, 256):
        idx = list(range(s, min(n, s + 256)))
        sim[idx] = score_block(idx)
    sim = np.maximum(sim, sim.T)
    # burst-level similarity: the best pair of their detections (dets are listed burst by burst)
    starts = np.flatnonzero(np.r_[True, np.diff(owner) != 0])
    gsim = np.maximum.reduceat(np.maximum.reduceat(sim, starts, axis=0), starts, axis=1)
    a, b = np.nonzero(np.triu(np.isfinite(gsim), 1))  # every comparable pair of bursts is an edge
    method = matcher.method
    labels = _sparse_linkage(
        len(unmatched), a, b, _distance(gsim[a, b], method), float(_distance(np.array([thr]), method)[0]), linkage,
        float(_distance(np.array([-np.inf]), method)[0]), flanks=_burst_flanks(unmatched, members, det_sides))
    return {g: int(lab) for g, lab in zip(unmatched, labels)}


def _cluster_new(
    unmatched: list[int],
    members: list[list[int]],
    emb: Mapping[int, np.ndarray],
    local: Mapping[int, Any],
    det_sides: Sequence[str],
    matcher: Any,
    thr: float,
    linkage: str,
    show: bool = False,
    candidates: int = 10,
) -> dict[int, int]:
    """Agglomerative clustering of unmatched bursts on pairwise P(same), on a sparse graph; returns burst -> label.

    Each unmatched detection queries an index of the other unmatched detections (their keypoints and
    embeddings, as kept by the scoring stage): its ``candidates`` best by LNBNN vote and its ``candidates``
    best by embedding cosine are verified (no detection is verified against all the others), and it keeps
    its ``2 * candidates`` best-scoring partners as edges. Bursts are linked by their best detection pair, and
    clustered with ``linkage`` cut at the threshold ``thr`` (:func:`_sparse_linkage`): a comparable pair that
    is not an edge counts as the largest distance, so single linkage gives the connected components of the
    edges closer than the threshold and average linkage averages over the comparable pairs of two clusters
    with the missing ones at that largest distance (a left-only and a right-only burst are not comparable and
    do not count). Time and memory grow with the number of detections times
    ``candidates``; on a season where every pair is an edge this is the exhaustive clustering
    (:func:`_cluster_exhaustive`)."""
    import numpy as np
    from tqdm.auto import tqdm

    if len(unmatched) <= 1:
        return {g: 0 for g in unmatched}
    dets, owner, _, score_block = _unmatched_gallery(unmatched, members, emb, local, det_sides, matcher,
                                                     candidates)
    n = len(dets)
    keep = min(n - 1, 2 * candidates)
    rows, cols, vals = [], [], []
    bar = tqdm(total=n, desc="clustering new", unit="det", disable=not show)
    for s in range(0, n, 256):
        idx = list(range(s, min(n, s + 256)))
        block = score_block(idx)  # (block, n): the rest is a LNBNN vote and a cosine, no verification
        block[np.arange(len(idx)), idx] = -np.inf
        top = np.argpartition(-block, keep - 1, axis=1)[:, :keep]
        v = np.take_along_axis(block, top, 1)
        ok = np.isfinite(v)
        rows.append(np.repeat(np.asarray(idx), keep)[ok.ravel()])
        cols.append(top[ok])
        vals.append(v[ok])
        bar.update(len(idx))
        release_free_memory()  # verification's temporaries, freed into per-thread arenas
    bar.close()
    # burst pairs (a < b) with the best score of their detections' edges, either direction
    a, b, v = owner[np.concatenate(rows)], owner[np.concatenate(cols)], np.concatenate(vals)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    sel = lo != hi
    lo, hi, v = lo[sel], hi[sel], v[sel]
    order = np.lexsort((-v, hi, lo))
    lo, hi, v = lo[order], hi[order], v[order]
    first = np.r_[True, (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])] if len(lo) else np.zeros(0, bool)
    lo, hi, v = lo[first], hi[first], v[first]
    method = matcher.method
    labels = _sparse_linkage(
        len(unmatched), lo, hi, _distance(v, method), float(_distance(np.array([thr]), method)[0]), linkage,
        float(_distance(np.array([-np.inf]), method)[0]), flanks=_burst_flanks(unmatched, members, det_sides))
    return {g: int(lab) for g, lab in zip(unmatched, labels)}


def _burst_flanks(unmatched: list[int], members: list[list[int]], det_sides: Sequence[str]) -> list[int]:
    """Per burst, which flank its detections show: 1 left only, 2 right only, 0 both or unknown (comparable
    with any burst). A left-only and a right-only burst can never be compared (:meth:`Matcher.scores` masks
    opposite flanks)."""
    out = []
    for g in unmatched:
        sides = {str(det_sides[i]) for i in members[g]}
        out.append(1 if sides == {"left"} else 2 if sides == {"right"} else 0)
    return out


def _sparse_linkage(
    n: int, a: np.ndarray, b: np.ndarray, d: np.ndarray, threshold: float, linkage: str, far: float,
    *, flanks: Sequence[int] | None = None,
) -> list[int]:
    """Agglomerative clustering of ``n`` nodes from the sparse distances ``d`` of the pairs ``(a, b)``; every
    other comparable pair is at distance ``far``. Clusters merge, closest first, while their linkage distance
    is below ``threshold`` (scikit-learn's ``distance_threshold``): ``single`` (closest pair), ``average`` (mean
    over the comparable pairs of the two clusters, the missing ones at ``far``) or ``complete`` (farthest
    comparable pair; ``far`` unless every one is an edge). Labels are numbered in order of each cluster's
    smallest node.

    Without ``flanks`` every pair is comparable (scikit-learn's linkage on a dense matrix whose missing pairs are
    ``far``). With ``flanks`` (per node 1 left only, 2 right only, 0 either: :func:`_burst_flanks`), a left-only
    and a right-only node are not comparable and are left out of the average: they carry no evidence either
    way. Counting them as ``far`` would keep an animal's one-flank sightings apart from the cluster that holds
    both of its flanks (seen from a paired station) however well the same flanks match."""
    import heapq

    if linkage not in ("single", "average", "complete"):
        raise ValueError(f"linkage must be 'single', 'average' or 'complete', not {linkage!r}")
    size = [1] * n
    side = [[0, 0, 0] for _ in range(n)]  # per cluster: nodes of either flank, left only, right only
    for i, f in enumerate(flanks if flanks is not None else [0] * n):
        side[i][int(f)] = 1
    # per cluster: neighbour -> [sum of edge distances, edge count, min, max]
    nbr: list[dict[int, list[float]]] = [{} for _ in range(n)]
    for x, y, dist in zip(a.tolist(), b.tolist(), d.tolist()):
        nbr[x][y] = [dist, 1, dist, dist]
        nbr[y][x] = nbr[x][y]
    ver = [0] * n  # bumped when a cluster grows: heap entries of its older self are stale
    alive = [True] * n
    parent = list(range(n))

    def link(x: int, y: int) -> float:
        total, count, dmin, dmax = nbr[x][y]
        pairs = max(count, size[x] * size[y] - side[x][1] * side[y][2] - side[x][2] * side[y][1])
        if linkage == "single":
            return dmin
        if linkage == "complete":
            return dmax if count == pairs else max(dmax, far)
        return (total + (pairs - count) * far) / pairs

    heap = [(link(x, y), x, y, 0, 0) for x in range(n) for y in nbr[x] if x < y]
    heapq.heapify(heap)
    while heap:
        dist, x, y, vx, vy = heapq.heappop(heap)
        if dist >= threshold:
            break
        if not (alive[x] and alive[y]) or ver[x] != vx or ver[y] != vy:
            continue  # stale: one of them has merged since
        if len(nbr[x]) < len(nbr[y]):
            x, y = y, x  # merge the smaller neighbourhood into the larger
        nbr[x].pop(y)
        nbr[y].pop(x)
        for z, (t, c, lo, hi) in nbr[y].items():
            nbr[z].pop(y)
            if z in nbr[x]:
                s = nbr[x][z]
                merged = [s[0] + t, s[1] + c, min(s[2], lo), max(s[3], hi)]
            else:
                merged = [t, c, lo, hi]
            nbr[x][z] = merged
            nbr[z][x] = merged
        nbr[y] = {}
        size[x] += size[y]
        side[x] = [p + q for p, q in zip(side[x], side[y])]
        alive[y] = False
        ver[x] += 1
        for z in nbr[x]:
            p, q = min(x, z), max(x, z)
            heapq.heappush(heap, (link(x, z), p, q, ver[p], ver[q]))
        parent[y] = x

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    roots = [root(i) for i in range(n)]
    number: dict[int, int] = {}
    return [number.setdefault(r, len(number)) for r in roots]


def _distance(score: np.ndarray, method: str) -> np.ndarray:
    """A non-negative distance that falls as the method's score rises, on every method's scale (fused P in
    [0, 1], cosine in [-1, 1], keypoint score >= 0); -inf (not comparable) is the farthest, +inf is 0.
    ``1 - threshold`` would be negative for a keypoint-score threshold (and crash the clustering)."""
    import numpy as np

    if method == "local":
        return 1.0 / (1.0 + np.clip(np.nan_to_num(score, nan=0.0, posinf=np.inf, neginf=0.0), 0.0, np.inf))
    lo = -1.0 if method == "global" else 0.0
    return 1.0 - np.clip(np.nan_to_num(score, nan=lo, posinf=1.0, neginf=lo), lo, 1.0)


def _name_new(
    meta: pd.DataFrame, sc: _Scored, calls: _Calls, *, pair_seconds: float, station: Mapping[str, str], linkage: str,
    show: bool, candidates: int = 10,
) -> tuple[list[set[int]], dict[int, str]]:
    """Cluster the unmatched bursts into provisional new individuals, join clusters seen together as opposite
    flanks, and name them ``NEW-xxxx`` in order of first sighting (after the gallery's own ``NEW-`` names).

    Writes the names into ``calls.identity`` (a new flank seen with a known individual gets that identity,
    ``uncertain``, in ``calls.decision``). Returns each detection's opposite-flank partners and the names given."""
    cluster_of = _cluster_new(calls.unmatched, calls.members, sc.kept_emb, sc.kept_local, meta["side"].tolist(),
                              sc.matcher, sc.thr, linkage, show=show, candidates=candidates)
    partners = _flank_partners(meta, pair_seconds, station)
    known_burst = {g: str(sc.id_names[calls.g_id[g]]) for g in range(calls.n_groups) if calls.g_best[g] >= sc.hi}
    cluster_of, other_flank_of = _link_flanks(_paired_bursts(partners, calls.group), cluster_of, known_burst)
    existing = [int(m.group(1)) for m in (re.fullmatch(r"NEW-(\d+)", s) for s in sc.id_names) if m]
    first_new = max(existing, default=0) + 1
    clusters: dict[int, list[int]] = {}
    for g in calls.unmatched:
        clusters.setdefault(cluster_of[g], []).append(g)

    def first_sighting(c: int) -> int:  # meta is sorted by datetime, path, detection
        return min(i for g in clusters[c] for i in calls.members[g])

    new_names: dict[int, str] = {}
    for c in sorted((c for c in clusters if c not in other_flank_of), key=first_sighting):
        new_names[c] = f"{NEW_PREFIX}{first_new + len(new_names):04d}"
    for g in calls.unmatched:
        c = cluster_of[g]
        for i in calls.members[g]:
            if c in other_flank_of:  # the other flank of a known individual: a person confirms it
                calls.identity[i], calls.decision[i] = other_flank_of[c], "uncertain"
            else:
                calls.identity[i] = new_names[c]
    return partners, new_names
