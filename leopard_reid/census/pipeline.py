"""The census pipeline: :func:`run_census` as a short sequence of named stages over :class:`CensusOptions`.

1. :func:`_read_inputs`: read and check every input (detections, tables, thresholds, dates, export
   requirements) before any detection is scored;
2. :func:`_locate`: each detection's box in pixels on its image, with camera, date and side;
3. :func:`.scoring._score_detections`: describe the crops in chunks (here or on Dask) and score them;
4. :func:`_decide`: pool each camera burst's evidence and call it known, new or uncertain;
5. :func:`.identities._name_new`: cluster the unmatched bursts into ``NEW-xxxx`` and link flanks;
6. :func:`.outputs._match_table`: the per-detection table;
7. :func:`_write`: matches, decisions, errors, run info, capture histories and the review page.

Each stage hands the next a small record of what it found (:class:`_Inputs`, :class:`.scoring._Scored`,
:class:`_Calls`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import atomic_write
from . import scoring
from .dates import DATE_ORDERS, _parse_datetime, _season_start
from .detections import _detection_rows, _fmt_box, read_detections
from .grouping import _bursts
from .identities import _name_new
from .outputs import _match_table, _review_summary, _write_decisions, _write_run_info
from .results import DECISION_COLUMNS, CensusError, CensusResult
from .scoring import _check_threshold
from .sightings import _read_cameras, _read_sightings

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..embed import Embedder
    from ..gallery import Gallery
    from ..io import ImageError
    from .scoring import _Scored


@dataclass(frozen=True)
class CensusOptions:
    """How a census runs: :func:`run_census`'s keyword arguments other than what it works on (``detections``,
    ``gallery``, ``out``) and the live objects it works with (``embedder``, ``client``); same names, same
    defaults, documented there."""

    root: str | os.PathLike | None = None
    sightings: str | os.PathLike | pd.DataFrame | None = None
    cameras: str | os.PathLike | pd.DataFrame | None = None
    min_conf: float = 0.2
    occasion_days: float = 1
    burst_seconds: float = 60
    progress: bool | None = None
    method: str = "fused"
    new_threshold: float | None = None
    pair_seconds: float = 10
    season_start: str | datetime | None = None
    session: str = "1"
    top_k: int = 3
    chunk_size: int = 256
    review_images: int | None = None
    linkage: str = "average"
    exports: str | Sequence[str] | None = ("secr",)
    camera_operation: str | os.PathLike | pd.DataFrame | None = None
    append_to: str | os.PathLike | None = None
    utc_offset: str = "+00:00"
    species: str = "Panthera pardus"
    date_order: str | None = None
    resume: bool = True
    cluster_candidates: int = 10
    keypoints: Mapping[str, Any] | None = None


@dataclass
class _Inputs:
    """Every input read and checked: the gallery, the detections, the tables, the export settings. ``errors``
    and ``notes`` grow as later stages skip inputs or notice something."""

    detections: Any  # as given (file or parsed JSON), for census.json
    out: Path
    gallery: Gallery
    gallery_path: Path | None
    base: Path  # the folder relative image paths are under
    dets: list[dict[str, Any]]
    errors: list[ImageError]
    counts: dict[str, int]
    sight: dict[str, dict[str, Any]]
    cams: pd.DataFrame | None
    formats: Any
    cameras_name: str
    covariates: Any
    operation: Any
    season_start: str | datetime | None
    station: dict[str, str]
    notes: list[str]


@dataclass
class _Calls:
    """The decisions: bursts (``group`` per detection, -1 when unreadable; ``members`` per burst), each burst's
    pooled best identity and score, and per detection ``identity``, ``decision`` and ``score``."""

    good: np.ndarray  # rows of the readable detections
    group: np.ndarray
    n_groups: int
    members: list[list[int]]
    g_best: np.ndarray
    g_id: np.ndarray
    identity: np.ndarray
    decision: np.ndarray
    score: np.ndarray
    unmatched: list[int]  # bursts below the threshold: new individuals to cluster


def run_census(
    detections: str | os.PathLike | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    gallery: str | os.PathLike | Gallery,
    out: str | os.PathLike,
    root: str | os.PathLike | None = None,
    sightings: str | os.PathLike | pd.DataFrame | None = None,
    cameras: str | os.PathLike | pd.DataFrame | None = None,
    min_conf: float = 0.2,
    occasion_days: float = 1,
    burst_seconds: float = 60,
    embedder: Embedder | None = None,
    progress: bool | None = None,
    method: str = "fused",
    new_threshold: float | None = None,
    pair_seconds: float = 10,
    season_start: str | datetime | None = None,
    session: str = "1",
    top_k: int = 3,
    chunk_size: int = 256,
    review_images: int | None = None,
    linkage: str = "average",
    exports: str | Sequence[str] | None = ("secr",),
    camera_operation: str | os.PathLike | pd.DataFrame | None = None,
    append_to: str | os.PathLike | None = None,
    utc_offset: str = "+00:00",
    species: str = "Panthera pardus",
    date_order: str | None = None,
    resume: bool = True,
    cluster_candidates: int = 10,
    keypoints: Mapping[str, Any] | None = None,
    client: Any = None,
) -> CensusResult:
    """Identify the animal detections of a camera-trap season and write the census outputs into ``out``.

    ``detections``: MegaDetector output (file or parsed JSON), both layouts; relative image paths are
    resolved against ``root`` (default: the JSON file's folder). ``sightings``: CSV/DataFrame
    ``path,camera,datetime[,side]`` (else EXIF DateTimeOriginal and the parent folder's name as camera).
    ``cameras``: ``camera,x,y[,usage][,station]`` for ``traps.txt`` (``station`` groups paired cameras for
    flank links). Detections are read in chunks of ``chunk_size`` (images are never all in memory).
    Each detection gets ``identity`` (a known individual, or a provisional ``NEW-0001``...) and
    ``decision`` (``known``, ``new`` or ``uncertain``). Unmatched bursts are clustered into provisional new
    individuals by agglomerative clustering of their pairwise P(same) with ``linkage`` (``average``: single linkage
    chains distinct animals together once a season has many detections), cut at the new-individual
    threshold. ``date_order`` (``dmy`` or ``mdy``) says how ``a/b/yyyy`` dates of the sightings table read;
    without it an ambiguous one is refused. ``client``: a ``distributed.Client``; chunks of detections are then
    described and scored on its workers (which read the images and the gallery file at the same paths), the
    rest stays here, with the same outputs. Every input (detections, tables, thresholds, dates) is checked
    before any detection is scored. An existing ``decisions.csv`` (a reviewer may have edited it) is never
    overwritten: the new one is written beside it. See :mod:`leopard_reid.census` for the files written.

    ``exports``: capture-history formats to write (``secr``, ``oscr``, ``camtrapr``, ``camtrapdp`` or ``all``; see
    :mod:`leopard_reid.exports`) for ``session``; ``camera_operation``: a camtrapR-style camera-operation table
    for the usage; ``append_to``: a multi-session secr capthist file this session is added to; ``utc_offset`` and
    ``species`` for Camtrap DP and camtrapR. Individual covariates (``sex``) come from the gallery's metadata.

    Scale (issue 17): each crop is described once (its embedding and keypoints serve the matching, the
    clustering of new individuals and the review page). Each chunk's scores are saved in
    ``out/.census-state`` as it finishes (:mod:`leopard_reid.census.state`); with ``resume`` a census stopped
    part-way and run again with the same inputs and settings reads the finished chunks back and scores only the
    rest, with the same outputs. ``cluster_candidates``: how many other unmatched detections each one is
    verified against (by keypoint vote, and as many by embedding) when clustering new individuals, so that
    clustering grows with the season, not with its square. ``keypoints``: :func:`~leopard_reid.local.extract_features`
    options for the detections (default: the library's, as the gallery's exemplars were described);
    ``{"max_tilt": 1}`` (plain SIFT, no affine views) makes a census about 2x faster at some cost in accuracy
    on obliquely photographed animals (``benchmarks/bench_census_scale.py --max-tilt 2 1`` for the speed,
    ``benchmarks/bench_query_keypoints.py`` for the accuracy on real photos).
    """
    opts = CensusOptions(
        root=root, sightings=sightings, cameras=cameras, min_conf=min_conf, occasion_days=occasion_days,
        burst_seconds=burst_seconds, progress=progress, method=method, new_threshold=new_threshold,
        pair_seconds=pair_seconds, season_start=season_start, session=session, top_k=top_k, chunk_size=chunk_size,
        review_images=review_images, linkage=linkage, exports=exports, camera_operation=camera_operation,
        append_to=append_to, utc_offset=utc_offset, species=species, date_order=date_order, resume=resume,
        cluster_candidates=cluster_candidates, keypoints=keypoints,
    )
    t0 = time.perf_counter()
    inp = _read_inputs(detections, gallery, Path(out), opts)
    meta = _locate(inp)
    show = opts.progress if opts.progress is not None else _tty()
    sc, skipped = scoring._score_detections(
        meta, inp.gallery, embedder, from_file=inp.gallery_path is not None, method=opts.method,
        new_threshold=opts.new_threshold, chunk_size=opts.chunk_size, show=show,
        lines=opts.progress is None and not show, client=client, t0=t0, out=inp.out, resume=opts.resume,
        keypoints=opts.keypoints)
    inp.errors.extend(skipped)
    meta = meta.assign(valid=sc.valid)
    try:
        calls = _decide(meta, sc, opts.burst_seconds)
        partners, new_names = _name_new(meta, sc, calls, pair_seconds=opts.pair_seconds, station=inp.station,
                                        linkage=opts.linkage, show=show, candidates=opts.cluster_candidates)
        ok, cand_list, start_day = _match_table(meta, sc, calls, partners, top_k=opts.top_k,
                                                season_start=inp.season_start, occasion_days=opts.occasion_days)
        files = _write(ok, meta, sc, calls, cand_list, start_day, inp, opts)
    finally:
        sc.close()  # the scratch file of the unmatched detections' keypoints
    dec = ok["decision"].value_counts().to_dict()
    inp.counts.update({
        "detections": int(len(ok)), "known": int(dec.get("known", 0)), "new": int(dec.get("new", 0)),
        "uncertain": int(dec.get("uncertain", 0)), "bursts": int(calls.n_groups),
        "new_individuals": len(new_names), "errors": len(inp.errors),
    })
    return CensusResult(detections=ok, out=inp.out, files=files, errors=inp.errors, counts=inp.counts,
                        seconds=time.perf_counter() - t0, notes=inp.notes)


def _read_inputs(detections: Any, gallery: str | os.PathLike | Gallery, out: Path, opts: CensusOptions) -> _Inputs:
    """Read and check every input, in the order a person would fix them; only then create ``out``."""
    from .. import exports as exp
    from ..gallery import Gallery, GalleryError

    if out.exists() and not out.is_dir():
        raise CensusError(f"{out}: exists and is not a folder")
    if opts.date_order is not None and opts.date_order not in DATE_ORDERS:
        raise CensusError(f"date_order must be one of {', '.join(DATE_ORDERS)}, not {opts.date_order!r}")
    _check_threshold(opts.method, opts.new_threshold)
    if not (isinstance(opts.cluster_candidates, int) and opts.cluster_candidates >= 1):
        raise CensusError(f"cluster_candidates must be a whole number >= 1, not {opts.cluster_candidates!r}")
    if opts.keypoints is not None:
        from ..local import extractor_options

        try:
            extractor_options(opts.keypoints)
        except TypeError as err:
            raise CensusError(f"keypoints: {err}") from None
    if isinstance(gallery, (str, os.PathLike)):
        gallery_path: Path | None = Path(gallery)
        # its keypoints stay in the file (read as matching and the review page need them): not held for the run
        gallery = Gallery.load(gallery, keypoints="disk")
    else:
        gallery_path = None
    if not len(gallery):
        raise GalleryError("the gallery is empty: enroll known individuals first")
    root = opts.root
    if root is None and isinstance(detections, (str, os.PathLike)):
        root = Path(detections).resolve().parent
    base = Path(root) if root is not None else Path.cwd()
    dets, errors, counts = read_detections(detections, min_conf=opts.min_conf)
    sight = _read_sightings(opts.sightings, opts.date_order)
    cams = _read_cameras(opts.cameras)
    formats = exp.parse_formats(opts.exports)
    cameras_name = str(opts.cameras) if isinstance(opts.cameras, (str, os.PathLike)) else "cameras table"
    exp.check_inputs(formats, cams, source=cameras_name, identities=gallery.identities,
                     gallery=str(gallery_path or "gallery"))
    covariates = exp.individual_covariates(gallery.metadata, source=str(gallery_path or "gallery metadata"))
    operation = exp.read_camera_operation(opts.camera_operation) if opts.camera_operation is not None else None
    season_start = opts.season_start
    if isinstance(season_start, str):  # read with the table's date order; refused now, not after scoring
        season_start = _parse_datetime(season_start, opts.date_order) or season_start
    if season_start is not None:
        _season_start(season_start, [])
    out.mkdir(parents=True, exist_ok=True)
    station = {}
    if cams is not None and "station" in cams.columns:
        station = dict(zip(cams["camera"], cams["station"]))
    return _Inputs(detections=detections, out=out, gallery=gallery, gallery_path=gallery_path, base=base, dets=dets,
                   errors=errors, counts=counts, sight=sight, cams=cams, formats=formats, cameras_name=cameras_name,
                   covariates=covariates, operation=operation, season_start=season_start, station=station, notes=[])


def _locate(inp: _Inputs) -> pd.DataFrame:
    """One row per usable detection (image sizes from the headers, boxes in pixels, sighting metadata), sorted
    by date-time, path and detection; ``key`` names a detection (``path [x, y, w, h]``)."""
    import pandas as pd

    rows = _detection_rows(inp.dets, inp.base, inp.sight, inp.errors, inp.notes)
    meta = pd.DataFrame(rows, columns=["path", "source", "det", "conf", "bbox", "camera", "dt", "side"])
    meta["dt"] = pd.Series([r["dt"] for r in rows], dtype=object)  # datetime or None, never NaT
    if len(meta):
        sort_t = [t if t is not None else datetime.max for t in meta["dt"]]
        order = sorted(range(len(meta)), key=lambda i: (sort_t[i], meta["path"].iat[i], meta["det"].iat[i]))
        meta = meta.iloc[order].reset_index(drop=True)
    meta["key"] = [f"{p} {_fmt_box(b)}" for p, b in zip(meta["path"], meta["bbox"])]
    return meta


def _decide(meta: pd.DataFrame, sc: _Scored, burst_seconds: float) -> _Calls:
    """Group the readable detections into bursts, pool each burst's best score per identity, and call it:
    ``known`` (>= the band's top), ``uncertain`` (inside the band) or ``new`` (below it, identity to come)."""
    import numpy as np

    n = len(meta)
    good = np.flatnonzero(sc.valid)
    sub = meta.iloc[good].reset_index(drop=True)
    group_local = _bursts(sub, burst_seconds) if len(sub) else []
    group = np.full(n, -1, np.int64)
    group[good] = group_local
    n_groups = int(group.max()) + 1 if len(good) else 0
    members: list[list[int]] = [[] for _ in range(n_groups)]
    for i in good:
        members[group[i]].append(int(i))
    g_best = np.full(n_groups, -np.inf)
    g_id = np.full(n_groups, -1, np.int64)
    for g, mem in enumerate(members):
        pooled = sc.per_id[mem].max(axis=0)
        k = int(np.argmax(pooled))
        g_best[g], g_id[g] = float(pooled[k]), k
    identity = np.empty(n, dtype=object)
    decision = np.empty(n, dtype=object)
    score = np.full(n, np.nan)
    unmatched = [int(g) for g in np.flatnonzero(scoring.below_threshold(g_best, sc.thr))]
    for g, mem in enumerate(members):
        p = g_best[g]
        if p >= sc.thr:
            dec = "known" if p >= sc.hi else "uncertain"
            ident = sc.id_names[g_id[g]]
        else:
            dec = "new" if p < sc.lo else "uncertain"
            ident = None
        for i in mem:
            identity[i], decision[i], score[i] = ident, dec, p if np.isfinite(p) else np.nan
    return _Calls(good=good, group=group, n_groups=n_groups, members=members, g_best=g_best, g_id=g_id,
                  identity=identity, decision=decision, score=score, unmatched=unmatched)


def _write(
    ok: pd.DataFrame, meta: pd.DataFrame, sc: _Scored, calls: _Calls, cand_list: list[list[tuple[str, float, int]]],
    start_day: datetime | None, inp: _Inputs, opts: CensusOptions,
) -> dict[str, Path]:
    """Write matches, decisions (beside an existing one), errors, ``census.json``, the capture-history exports
    and the review page into ``inp.out``; returns the files written by name."""
    from .. import exports as exp
    from ..io import write_errors
    from ..review import write_review

    out = inp.out
    files = {"matches": out / "matches.csv", "decisions": out / "decisions.csv", "errors": out / "errors.csv",
             "review": out / "review.html"}
    atomic_write(files["matches"], ok.to_csv(index=False).encode("utf-8"))
    files["decisions"] = _write_decisions(ok, files["decisions"], inp.notes)
    write_errors(inp.errors, out, command="census")
    _write_run_info(out / "census.json", detections=inp.detections, root=inp.base, gallery_path=inp.gallery_path,
                    method=opts.method, date_order=opts.date_order)
    written, notes = exp.write_exports(
        ok, out, formats=inp.formats, cameras=inp.cams, operation=inp.operation, session=opts.session,
        season_start=start_day, occasion_days=opts.occasion_days, covariates=inp.covariates,
        append_to=opts.append_to, root=inp.base, utc_offset=opts.utc_offset, species=opts.species,
        method=opts.method, cameras_name=inp.cameras_name)
    files.update(written)
    review_meta = meta[meta["valid"]].reset_index(drop=True)
    write_review(
        files["review"], ok, review_meta,
        cand=[cand_list[i] for i in calls.good],
        local=sc.local_features(calls.good),
        gallery=inp.gallery, gallery_path=inp.gallery_path, bases=[inp.base, Path.cwd()],
        columns=[*DECISION_COLUMNS, "side", "camera", "datetime"],
        summary=_review_summary(ok, sc.thr, (sc.lo, sc.hi), inp.errors),
        notes=notes, cams=inp.cams, pictured=opts.review_images,
    )
    return files


def _tty() -> bool:
    import sys

    return sys.stderr.isatty()
