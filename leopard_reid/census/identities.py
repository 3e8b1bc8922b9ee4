"""Provisional new individuals: agglomerative clustering of the bursts no known individual matched
(:func:`_cluster_new`) on the same score the gallery matching uses, turned into a distance on every method's
scale (:func:`_distance`); :func:`_name_new` is the pipeline's stage that names them ``NEW-xxxx`` and joins
the two flanks of one animal photographed together at a paired station.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .grouping import _flank_partners, _link_flanks, _paired_bursts
from .results import NEW_PREFIX

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .pipeline import _Calls
    from .scoring import _Scored


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
) -> dict[int, int]:
    """Agglomerative clustering of unmatched bursts on fused P(same); returns burst -> cluster label."""
    import numpy as np
    from tqdm.auto import tqdm

    if len(unmatched) <= 1:
        return {g: 0 for g in unmatched}
    from sklearn.cluster import AgglomerativeClustering

    from ..embed import Features
    from ..gallery import Gallery as _G
    from ..matching import Matcher

    dets = [i for g in unmatched for i in members[g]]
    owner = np.array([k for k, g in enumerate(unmatched) for _ in members[g]])
    e = np.stack([emb[i] for i in dets])
    loc = [local[i] for i in dets] if matcher.method != "global" else None
    sides = [str(det_sides[i]) for i in dets]
    import pandas as pd

    tmp = _G.from_embeddings(e, [f"u{k}" for k in range(len(dets))], local=loc,
                             metadata=pd.DataFrame({"path": [str(i) for i in dets], "side": sides}))
    m = Matcher(method=matcher.method, calibration=matcher.calibration_, shortlist=matcher.shortlist).fit(tmp)
    n = len(dets)
    sim = np.zeros((n, n), np.float32)
    bar = tqdm(total=n, desc="clustering new", unit="det", disable=not show)  # n x n pair scores
    for s in range(0, n, 256):
        idx = list(range(s, min(n, s + 256)))
        f = Features(names=[str(dets[i]) for i in idx], embeddings=e[idx], local=[loc[i] for i in idx] if loc else None,
                     valid=np.ones(len(idx), bool), sides=[sides[i] for i in idx])
        final = m.scores(f, exclude=idx).final
        sim[idx] = np.where(np.isfinite(final), final, -np.inf)
        bar.update(len(idx))
    bar.close()
    np.fill_diagonal(sim, np.inf)
    sim = np.maximum(sim, sim.T)
    # burst-level similarity: the best pair of their detections (dets are listed burst by burst)
    starts = np.flatnonzero(np.r_[True, np.diff(owner) != 0])
    gsim = np.maximum.reduceat(np.maximum.reduceat(sim, starts, axis=0), starts, axis=1)
    np.fill_diagonal(gsim, np.inf)
    labels = AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage=linkage,
        distance_threshold=float(_distance(np.array([thr]), matcher.method)[0]),
    ).fit_predict(_distance(gsim, matcher.method))
    return {g: int(lab) for g, lab in zip(unmatched, labels)}


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
    show: bool,
) -> tuple[list[set[int]], dict[int, str]]:
    """Cluster the unmatched bursts into provisional new individuals, join clusters seen together as opposite
    flanks, and name them ``NEW-xxxx`` in order of first sighting (after the gallery's own ``NEW-`` names).

    Writes the names into ``calls.identity`` (a new flank seen with a known individual gets that identity,
    ``uncertain``, in ``calls.decision``). Returns each detection's opposite-flank partners and the names given."""
    cluster_of = _cluster_new(calls.unmatched, calls.members, sc.kept_emb, sc.kept_local, meta["side"].tolist(),
                              sc.matcher, sc.thr, linkage, show=show)
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
