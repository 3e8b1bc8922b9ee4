"""Which detections belong together: camera bursts (one visit of one flank), opposite-flank partners at a
paired station, the unambiguous burst pairs they imply, and the union of provisional new individuals across
flanks (:func:`_link_flanks`).

Pure functions of the detection table: no image, model or file is touched here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def _bursts(meta: pd.DataFrame, burst_seconds: float) -> list[int]:
    """Burst index per detection: same camera and side, each within ``burst_seconds`` of the previous one.

    A group in which one image holds two animal detections is split back into single detections (two
    animals in one frame are two individuals, and there is no tracking to tell which is which)."""
    n = len(meta)
    group = [-1] * n
    nxt = 0
    cams = meta["camera"].tolist()
    times = meta["dt"].tolist()
    sides = meta["side"].tolist()
    paths = meta["path"].tolist()
    keyed: dict[tuple[str, str], list[int]] = {}
    for i in range(n):
        if cams[i] is None or times[i] is None:
            group[i] = nxt
            nxt += 1
        else:
            keyed.setdefault((cams[i], sides[i]), []).append(i)
    for idx in keyed.values():
        idx.sort(key=lambda i: (times[i], i))
        runs: list[list[int]] = [[idx[0]]]
        for a, b in zip(idx, idx[1:]):
            if (times[b] - times[a]).total_seconds() <= burst_seconds:
                runs[-1].append(b)
            else:
                runs.append([b])
        for run in runs:
            members = [paths[i] for i in run]
            if len(set(members)) < len(members):
                for i in run:
                    group[i] = nxt
                    nxt += 1
            else:
                for i in run:
                    group[i] = nxt
                nxt += 1
    return group


def _flank_partners(meta: pd.DataFrame, pair_seconds: float, station: Mapping[str, str]) -> list[set[int]]:
    """For each readable detection, the opposite-flank detections (row numbers) at the same station within
    ``pair_seconds``: the two cameras of a paired station photographing one animal."""
    cams, times, sides, valid = (meta[c].tolist() for c in ("camera", "dt", "side", "valid"))
    partners: list[set[int]] = [set() for _ in range(len(meta))]
    by_station: dict[str, list[int]] = {}
    for i, (cam, t, s, ok) in enumerate(zip(cams, times, sides, valid)):
        if ok and cam is not None and t is not None and s in ("left", "right"):
            by_station.setdefault(station.get(cam, cam), []).append(i)
    for idx in by_station.values():
        idx.sort(key=lambda i: times[i])
        for a_pos, a in enumerate(idx):
            for b in idx[a_pos + 1 :]:  # sorted by time: stop at the end of the window
                if (times[b] - times[a]).total_seconds() > pair_seconds:
                    break
                if sides[b] != sides[a]:
                    partners[a].add(b)
                    partners[b].add(a)
    return partners


def _paired_bursts(partners: Sequence[set[int]], group: Sequence[int]) -> list[tuple[int, int]]:
    """Burst pairs linked by simultaneous opposite-flank detections, kept only when unambiguous: each
    burst's opposite-flank partners all lie in the other one (two animals passing together link nothing)."""
    other: dict[int, set[int]] = {}
    for a, bs in enumerate(partners):
        for b in bs:
            other.setdefault(group[a], set()).add(group[b])
    return sorted((g, h) for g, hs in other.items() for h in hs if g < h and len(hs) == 1 and other.get(h) == {g})


def _link_flanks(
    pairs: Sequence[tuple[int, int]], cluster_of: dict[int, int], known: Mapping[int, str]
) -> tuple[dict[int, int], dict[int, str]]:
    """Join provisional new individuals across flanks using paired-station bursts.

    ``cluster_of``: unmatched burst -> provisional cluster; ``known``: burst -> identity for the bursts
    decided ``known``. Two new clusters seen together as opposite flanks become one (union-find). A new
    cluster is proposed as a known individual's other flank when that is the only known individual it was
    seen with and most of its paired visits saw it: a visit where both flanks went unmatched is evidence
    against, so one wrong ``known`` call does not rename every sighting of a new animal (measured on
    ``bench_census_scale.py``'s 1k season: 90 of the 111 detections so renamed were wrong).
    Returns the merged ``cluster_of`` and cluster -> proposed known identity."""
    parent = {c: c for c in set(cluster_of.values())}

    def find(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for g, h in pairs:
        if g in cluster_of and h in cluster_of:
            a, b = find(cluster_of[g]), find(cluster_of[h])
            parent[max(a, b)] = min(a, b)
    merged = {g: find(c) for g, c in cluster_of.items()}
    seen_with: dict[int, dict[str, int]] = {}  # cluster -> known identity -> paired visits
    unmatched_visits: dict[int, int] = {}  # cluster -> paired visits with both flanks unmatched
    for g, h in pairs:
        if g in merged and h in merged:
            unmatched_visits[merged[g]] = unmatched_visits.get(merged[g], 0) + 1
        for u, v in ((g, h), (h, g)):
            if u in merged and v in known:
                ids = seen_with.setdefault(merged[u], {})
                ids[known[v]] = ids.get(known[v], 0) + 1
    return merged, {c: next(iter(ids)) for c, ids in seen_with.items()
                    if len(ids) == 1 and next(iter(ids.values())) > unmatched_visits.get(c, 0)}
