"""Capture-history and data-package exports of a census: secr, oSCR, camtrapR and Camtrap DP 1.0.

Every writer takes the census table (``matches.csv``: ``path, bbox, camera, datetime, identity, score, decision,
occasion, burst``...) and writes files that the target software reads unchanged:

* ``secr``: ``capthist.txt`` (``Session ID Occasion Detector [covariates]``) and ``traps.txt`` (``Detector x y
  [usage]``) for ``secr::read.capthist(..., fmt = "trapID", detector = "proximity")``, plus ``capthist.R`` with
  that exact call. Camera traps are *proximity* detectors: an animal can be photographed at several cameras on
  one occasion, and a visit counts once per camera and occasion.
* ``oscr``: ``oscr_edf.csv`` (session, individual, occasion, trap, sex) and ``oscr_tdf.csv`` (TrapID, X, Y, one 0/1
  column per occasion, then ``/`` and the trap covariates) for ``oSCR::data2oscr``.
* ``camtrapr``: ``camtrapr_records.csv`` (``Station, Species, Individual, DateTimeOriginal, Date, Time, Directory,
  FileName``) and ``camtrapr_cameras.csv`` (``Station, utm_x, utm_y, Setup_date, Retrieval_date`` [``ProblemN_from``,
  ``ProblemN_to``]) for ``camtrapR::cameraOperation`` and ``spatialDetectionHistory``.
* ``camtrapdp``: a Camtrap DP 1.0 package (``datapackage.json``, ``deployments.csv``, ``media.csv``,
  ``observations.csv``) with one machine observation per detection (``individualID``, ``classificationProbability``,
  relative bbox).

Occasion ``k`` covers ``[season_start + (k-1) * occasion_days, season_start + k * occasion_days)``. Detections before
the season start (occasion < 1: secr reads a negative occasion as "died on capture") or after the last occasion are
left out with a warning and a note in the capthist header, never written. Camera effort per occasion comes from, in
this order: the cameras table's ``usage`` strings, a camtrapR-style camera-operation table (one row per camera, one
column per day ``YYYY-MM-DD``, values 0..1, empty = not set up), or the cameras table's ``start``/``end`` dates
(``YYYY-MM-DD[ HH:MM[:SS]]``; a date alone covers that whole day) minus ``problemN_from``/``problemN_to`` periods.
Identifiers are made secr-safe (blanks, commas, underscores, quotes and '#' become '-'); two names that would become
one (``L_01`` and ``L-01``) are refused, never merged. Every file is replaced atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .camtrapdp import DP_FIELDS, _latlon, write_camtrapdp
from .camtrapr import write_camtrapr
from .common import (
    Captures,
    ExportError,
    _safe_id,
    camera_effort,
    captures,
    individual_covariates,
    read_camera_operation,
    secr_ids,
)
from .oscr import write_oscr
from .secr import DETECTOR, write_capthist

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DETECTOR",
    "DP_FIELDS",
    "FORMATS",
    "Captures",
    "ExportError",
    "camera_effort",
    "captures",
    "check_inputs",
    "individual_covariates",
    "parse_formats",
    "read_camera_operation",
    "secr_ids",
    "write_camtrapdp",
    "write_camtrapr",
    "write_capthist",
    "write_exports",
    "write_oscr",
]

#: Export formats, in the order they are written.
FORMATS = ("secr", "oscr", "camtrapr", "camtrapdp")


def parse_formats(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"secr,camtrapdp"``, ``["oscr"]`` or ``"all"`` as the ordered tuple of formats; unknown names refused."""
    if value is None:
        return ("secr",)
    items = [p.strip().lower() for p in (value.split(",") if isinstance(value, str) else value) if str(p).strip()]
    if "all" in items:
        return FORMATS
    unknown = sorted(set(items) - set(FORMATS))
    if unknown:
        raise ExportError(f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)} or all")
    return tuple(f for f in FORMATS if f in items)



def check_inputs(
    formats: Sequence[str],
    cameras: pd.DataFrame | None,
    *,
    source: str = "cameras table",
    identities: Iterable[str] = (),
    gallery: str = "gallery",
) -> None:
    """Refuse, before any work, an export whose input is missing (trap coordinates, WGS84 positions) or whose
    camera or gallery ``identities`` names would collide in secr files."""
    need = [f for f in formats if f in ("oscr", "camtrapr", "camtrapdp")]
    if need and cameras is None:
        raise ExportError(f"the {', '.join(need)} export(s) need a cameras table (camera,x,y...) for the trap layout")
    if "camtrapdp" in formats and cameras is not None:
        _latlon(cameras, source)
    if "secr" in formats:
        for name, values, what in ((source, cameras["camera"] if cameras is not None else (), "camera"),
                                   (gallery, identities, "identity")):
            try:
                secr_ids(values, what=what)
            except ExportError as err:
                raise ExportError(f"{name}: {err}") from None


def write_exports(
    table: pd.DataFrame,
    out: str | os.PathLike,
    *,
    formats: Sequence[str] = ("secr",),
    cameras: pd.DataFrame | None = None,
    operation: pd.DataFrame | None = None,
    session: str = "1",
    season_start: datetime | None = None,
    occasion_days: float = 1,
    covariates: pd.DataFrame | None = None,
    append_to: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    utc_offset: str = "+00:00",
    species: str = "Panthera pardus",
    method: str = "fused",
    cameras_name: str = "cameras table",
) -> tuple[dict[str, Path], list[str]]:
    """Write each of ``formats`` into ``out`` from the census ``table``; returns the files and secr's notes.

    ``append_to``: also add this session to that multi-session secr capthist file (its other sessions kept),
    with this session's layout beside it as ``traps-<session>.txt``. ``cameras_name`` names the cameras table in
    errors (its file)."""
    out = Path(out)
    check_inputs(formats, cameras, source=cameras_name)
    if append_to is not None and Path(append_to).resolve() == (out / "capthist.txt").resolve():
        raise ExportError(f"{append_to}: this census rewrites its own capthist.txt on every run; append the "
                          "sessions to a file outside the output folder (or with another name)")
    files: dict[str, Path] = {}
    notes: list[str] = []
    common = {"season_start": season_start, "occasion_days": occasion_days, "operation": operation,
              "source": cameras_name}
    if "secr" in formats:
        notes = write_capthist(table, out / "capthist.txt", out / "traps.txt" if cameras is not None else None,
                               cameras, session=session, covariates=covariates, **common)
        files["capthist"] = out / "capthist.txt"
        if cameras is not None:
            files["traps"], files["capthist_r"] = out / "traps.txt", out / "capthist.R"
        if append_to is not None:
            shared = Path(append_to)
            traps = shared.with_name(f"traps-{_safe_id(session)}.txt") if cameras is not None else None
            write_capthist(table, shared, traps, cameras, session=session, covariates=covariates, append=True,
                           warn=False, **common)
            files["capthist_shared"] = shared
    if "oscr" in formats:
        files.update(write_oscr(table, out, cameras, session=session, covariates=covariates, **common))
    if "camtrapr" in formats:
        files.update(write_camtrapr(table, out, cameras, species=species, **common))
    if "camtrapdp" in formats:
        files.update(write_camtrapdp(table, out, cameras, session=session, root=root, covariates=covariates,
                                     utc_offset=utc_offset, species=species, method=method, source=cameras_name))
    return files, notes
