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

import hashlib
import json
import math
import mimetypes
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DETECTOR",
    "FORMATS",
    "ExportError",
    "camera_effort",
    "individual_covariates",
    "parse_formats",
    "write_camtrapdp",
    "write_camtrapr",
    "write_capthist",
    "write_exports",
    "write_oscr",
]

#: Export formats, in the order they are written.
FORMATS = ("secr", "oscr", "camtrapr", "camtrapdp")
#: secr detector type of a camera trap (several detectors per animal and occasion; one detection per detector).
DETECTOR = "proximity"
#: Characters secr's read.table cannot take in an identifier ('#' starts a comment, quotes quote, '_' is reserved
#: in detector ids), see the secr "Data input" vignette.
_BAD_ID = re.compile(r"[\s,_#'\"]+")
_NA_IDS = {"NA", "NaN", "NULL", "TRUE", "FALSE", "T", "F"}  # read by R as missing or logical, never as a name
_KNOWN_CAMERA_COLUMNS = {"camera", "x", "y", "usage", "start", "end", "station", "latitude", "longitude", "lat", "lon"}
_SEX = {"f": "F", "female": "F", "m": "M", "male": "M"}
_DP_VERSION = "1.0"
_DP_BASE = f"https://raw.githubusercontent.com/tdwg/camtrap-dp/{_DP_VERSION}"
#: Camtrap DP 1.0 table fields in schema order (``<table>-table-schema.json``): every column is written, in this
#: order, empty where unknown, so a validator matching the header against the schema finds each one.
DP_FIELDS = {
    "deployments": [
        "deploymentID", "locationID", "locationName", "latitude", "longitude", "coordinateUncertainty",
        "deploymentStart", "deploymentEnd", "setupBy", "cameraID", "cameraModel", "cameraDelay", "cameraHeight",
        "cameraDepth", "cameraTilt", "cameraHeading", "detectionDistance", "timestampIssues", "baitUse",
        "featureType", "habitat", "deploymentGroups", "deploymentTags", "deploymentComments"],
    "media": [
        "mediaID", "deploymentID", "captureMethod", "timestamp", "filePath", "filePublic", "fileName",
        "fileMediatype", "exifData", "favorite", "mediaComments"],
    "observations": [
        "observationID", "deploymentID", "mediaID", "eventID", "eventStart", "eventEnd", "observationLevel",
        "observationType", "cameraSetupType", "scientificName", "count", "lifeStage", "sex", "behavior",
        "individualID", "individualPositionRadius", "individualPositionAngle", "individualSpeed", "bboxX", "bboxY",
        "bboxWidth", "bboxHeight", "classificationMethod", "classifiedBy", "classificationTimestamp",
        "classificationProbability", "observationTags", "observationComments"],
}


class ExportError(ValueError):
    """An export that cannot be written truthfully (colliding identifiers, a missing input column...)."""


# ---------------------------------------------------------------------------------------------- helpers
def _write_text(path: str | os.PathLike, text: str) -> Path:
    """Replace ``path`` atomically (the gallery's temporary-file-and-rename helper)."""
    from .gallery import _atomic_write

    path = Path(path)
    _atomic_write(path, text.encode("utf-8"))
    return path


def _write_csv(path: Path, df: pd.DataFrame) -> Path:
    return _write_text(path, df.to_csv(index=False, lineterminator="\n"))


def _safe_id(text: str) -> str:
    """An identifier secr accepts in trapID files: no blanks, commas, underscores, quotes or '#'."""
    return _BAD_ID.sub("-", str(text).strip()) or "NA"


def secr_ids(values: Iterable[Any], *, what: str) -> dict[str, str]:
    """Map each distinct value to its secr-safe identifier; refuse two values that would become one (``L_01`` and
    ``L-01``) or an identifier R reads as missing (``NA``), naming them: secr would silently pool them."""
    out: dict[str, str] = {}
    back: dict[str, str] = {}
    for v in dict.fromkeys(str(x) for x in values):
        s = _safe_id(v)
        if s in _NA_IDS:
            raise ExportError(f"{what} {v!r} becomes {s!r} in secr files, which R reads as missing: rename it")
        if s in back and back[s] != v:
            raise ExportError(f"{what} names {back[s]!r} and {v!r} would both be written as {s!r} in the secr files "
                              f"(blanks, commas, underscores, quotes and '#' become '-'): rename one of them")
        back[s] = v
        out[v] = s
    return out


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


def _parse_when(value: Any, *, end: bool, where: str) -> datetime | None:
    """An ISO date or date-time (``YYYY-MM-DD[ HH:MM[:SS]]``); a date alone is the start of that day, or with
    ``end`` the start of the next (the whole day counts). Other orders are refused: 03/04 is ambiguous."""
    text = "" if value is None else str(value).strip()
    if not text or text.lower() in {"nan", "nat", "none", "na"}:
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = datetime.strptime(text, "%Y-%m-%d")
        return day + timedelta(days=1) if end else day
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        raise ExportError(f"{where}: {text!r} is not an ISO date (YYYY-MM-DD[ HH:MM:SS])") from None


# ---------------------------------------------------------------------------------------------- covariates
def individual_covariates(
    metadata: pd.DataFrame | None, *, names: Sequence[str] = ("sex",), source: str = "gallery metadata"
) -> pd.DataFrame:
    """One row per identity with the covariates ``names`` found in gallery ``metadata`` (per exemplar).

    An identity's value is its exemplars' one non-empty value; two different values are refused with both named.
    ``sex`` is normalised to ``F``/``M`` (``f``, ``female``, ``m``, ``male``); other codes are refused. Returns an
    empty frame (index ``identity``) when the metadata has none of the columns."""
    import pandas as pd

    cols = [c for c in names if metadata is not None and c in metadata.columns]
    if metadata is None or not cols:
        return pd.DataFrame(index=pd.Index([], name="identity"))
    rows: dict[str, dict[str, str]] = {}
    for rec in metadata[["identity", *cols]].astype(object).to_dict("records"):
        ident = str(rec["identity"])
        for c in cols:
            v = rec[c]
            v = "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip()
            if not v or v.lower() in {"nan", "na", "unknown", "u", "?"}:
                continue
            if c == "sex":
                if v.lower() not in _SEX:
                    raise ExportError(f"{source}: identity {ident!r} has sex {v!r}; use F/M (female/male) or leave it "
                                      "empty when unknown")
                v = _SEX[v.lower()]
            have = rows.setdefault(ident, {}).get(c)
            if have is not None and have != v:
                raise ExportError(f"{source}: identity {ident!r} has {c} {have!r} and {v!r} on different exemplars")
            rows[ident][c] = v
    df = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
    df.index.name = "identity"
    return df


# ---------------------------------------------------------------------------------------------- effort
def read_camera_operation(source: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """A camtrapR-style camera-operation table: first column the camera (station), one column per day
    ``YYYY-MM-DD`` with the fraction of that day it ran (0..1; empty or NA = not set up). Returns floats indexed
    by camera, columns ``datetime`` days."""
    import pandas as pd

    name = "camera-operation table" if isinstance(source, pd.DataFrame) else str(source)
    if isinstance(source, pd.DataFrame):
        df = source.copy()
    else:
        try:
            df = pd.read_csv(source, dtype=str, keep_default_na=False)
        except (OSError, ValueError) as err:
            raise ExportError(f"{name}: not a readable CSV file ({err})") from None
    if df.shape[1] < 2:
        raise ExportError(f"{name}: needs a camera column and one column per day (YYYY-MM-DD)")
    cams = df.iloc[:, 0].astype(str).str.strip()
    days = {}
    for c in df.columns[1:]:
        try:
            days[c] = datetime.strptime(str(c).strip(), "%Y-%m-%d")
        except ValueError:
            raise ExportError(f"{name}: column {c!r} is not a day (YYYY-MM-DD)") from None
    vals = df[list(days)].replace({"": None, "NA": None}).apply(pd.to_numeric, errors="coerce")
    bad = vals.notna() & ((vals < 0) | (vals > 1))
    text_bad = df[list(days)].replace({"": None, "NA": None}).notna() & vals.isna()
    if bad.to_numpy().any() or text_bad.to_numpy().any():
        raise ExportError(f"{name}: values must be numbers from 0 to 1 (fraction of the day operated) or empty")
    vals.index, vals.columns = cams.to_numpy(), list(days.values())
    if vals.index.duplicated().any():
        raise ExportError(f"{name}: duplicate camera(s) {sorted(set(vals.index[vals.index.duplicated()]))}")
    return vals.fillna(0.0)


def _intervals(cameras: pd.DataFrame, *, source: str) -> dict[str, list[tuple[datetime, datetime, float]]]:
    """Per camera, (start, end, weight) intervals: the deployment with weight 1, its problem periods with -1."""
    out: dict[str, list[tuple[datetime, datetime, float]]] = {}
    problems = sorted({int(m.group(1)) for c in cameras.columns if (m := re.fullmatch(r"problem(\d+)_from", c))})
    for row in cameras.to_dict("records"):
        cam = str(row["camera"])
        where = f"{source}, camera {cam!r}"
        start = _parse_when(row.get("start"), end=False, where=f"{where}, start")
        end = _parse_when(row.get("end"), end=True, where=f"{where}, end")
        if start is None or end is None:
            raise ExportError(f"{where}: start and end are both needed to compute its usage")
        if end <= start:
            raise ExportError(f"{where}: end {row.get('end')} is before start {row.get('start')}")
        iv = [(start, end, 1.0)]
        for k in problems:
            a = _parse_when(row.get(f"problem{k}_from"), end=False, where=f"{where}, problem{k}_from")
            b = _parse_when(row.get(f"problem{k}_to"), end=True, where=f"{where}, problem{k}_to")
            if a is None and b is None:
                continue
            if a is None or b is None or b <= a:
                raise ExportError(f"{where}: problem{k}_from/problem{k}_to must both be dates, from before to")
            a, b = max(a, start), min(b, end)
            if b > a:
                iv.append((a, b, -1.0))
        out[cam] = iv
    return out


def camera_effort(
    cameras: pd.DataFrame | None,
    *,
    season_start: datetime | None,
    occasion_days: float = 1,
    operation: pd.DataFrame | None = None,
    source: str = "cameras table",
) -> pd.DataFrame | None:
    """Days each camera operated per occasion (rows cameras, columns occasions 1..K), or None when unknown.

    From ``usage`` strings (0/1 per occasion; 1 counts a whole occasion), else ``operation`` (see
    :func:`read_camera_operation`), else ``start``/``end`` (+ problem periods). K runs to the last operated day."""
    import numpy as np
    import pandas as pd

    if cameras is None:
        return None
    cams = cameras["camera"].astype(str).tolist()
    if "usage" in cameras.columns and (cameras["usage"].astype(str).str.len() > 0).any():
        usage = {c: str(u) for c, u in zip(cams, cameras["usage"])}
        lengths = {len(u) for u in usage.values()}
        if len(lengths) != 1:
            raise ExportError(f"{source}: usage strings of different lengths {sorted(lengths)}")
        k = lengths.pop()
        eff = np.array([[float(ch) * occasion_days for ch in usage[c]] for c in cams]).reshape(len(cams), k)
        return pd.DataFrame(eff, index=cams, columns=range(1, k + 1))
    if operation is not None:
        missing = [c for c in cams if c not in operation.index]
        if missing:
            raise ExportError(f"camera-operation table: no row for camera(s) {', '.join(missing[:10])}")
        iv = {c: [(d, d + timedelta(days=1), float(v)) for d, v in operation.loc[c].items() if v > 0] for c in cams}
    elif {"start", "end"} <= set(cameras.columns):
        iv = _intervals(cameras, source=source)
    else:
        return None
    if season_start is None:
        raise ExportError("camera usage from dates needs a season start (no detection has a date)")
    length = timedelta(days=occasion_days)
    last = max((b for v in iv.values() for _, b, w in v if w > 0), default=season_start)
    k = max(1, math.ceil((last - season_start) / length))
    eff = np.zeros((len(cams), k))
    for i, c in enumerate(cams):
        for a, b, w in iv[c]:
            for j in range(k):
                lo, hi = season_start + j * length, season_start + (j + 1) * length
                over = (min(b, hi) - max(a, lo)).total_seconds()
                if over > 0:
                    eff[i, j] += w * over / 86400.0
    return pd.DataFrame(np.round(np.clip(eff, 0, None), 6), index=cams, columns=range(1, k + 1))


# ---------------------------------------------------------------------------------------------- captures
@dataclass
class Captures:
    """The detections an SCR export may use, with what was left out and why."""

    table: pd.DataFrame  # identity, occasion (int), camera, path, datetime... (uncertain and unusable rows removed)
    n_occasions: int
    effort: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)


def captures(
    table: pd.DataFrame, cameras: pd.DataFrame | None, effort: pd.DataFrame | None, *, warn: bool = True
) -> Captures:
    """Select the detections a capture history can hold: not ``uncertain``, with an occasion and a camera, the
    camera in the cameras table, the occasion within 1..K and the camera operating on it. Each reason left out is
    a note; those that mean a wrong input (season start after detections, detections when a camera was off) are
    also warnings."""
    import pandas as pd

    notes: list[str] = []
    t = table.copy()

    def drop(mask: Any, note: str, *, loud: bool = False) -> None:
        nonlocal t
        n = int(mask.sum())
        if n:
            notes.append(note.format(n=n))
            if loud and warn:
                warnings.warn(note.format(n=n), stacklevel=3)
            t = t[~mask]

    drop(t["decision"] == "uncertain", "{n} uncertain detection(s) left out until reviewed")
    occ = pd.to_numeric(t["occasion"], errors="coerce")
    cam = t["camera"].astype(object)
    drop(occ.isna() | cam.isna() | (cam.astype(str).str.strip().isin(["", "nan", "None"])),
         "{n} detection(s) without a date or camera left out")
    t = t.assign(occasion=pd.to_numeric(t["occasion"]).astype(int), camera=t["camera"].astype(str))
    drop(t["occasion"] < 1, "{n} detection(s) before the season start (occasion < 1) left out", loud=True)
    if cameras is not None:
        off = ~t["camera"].isin(set(cameras["camera"].astype(str)))
        missing = ", ".join(sorted(set(t.loc[off, "camera"]))[:10])
        drop(off, "{n} detection(s) at camera(s) missing from the cameras table left out: " + missing)
    k = int(effort.shape[1]) if effort is not None else (int(t["occasion"].max()) if len(t) else 0)
    drop(t["occasion"] > k, f"{{n}} detection(s) after the {k} occasion(s) of the camera usage left out", loud=True)
    if effort is not None and len(t):
        idle = effort.to_numpy()[[effort.index.get_loc(c) for c in t["camera"]], t["occasion"].to_numpy() - 1] <= 0
        cams = ", ".join(sorted(set(t.loc[idle, "camera"]))[:10])
        drop(pd.Series(idle, index=t.index),
             "{n} detection(s) on occasions when their camera was not operating left out (check the dates of "
             + cams + ")", loud=True)
    return Captures(t.reset_index(drop=True), k, effort, notes)


def _usage_text(effort: pd.DataFrame, occasion_days: float, *, spaced: bool) -> tuple[dict[str, str], bool]:
    """secr usage per camera: 0/1 codes when every occasion is fully on or off, else days separated by blanks.

    ``spaced`` separates 0/1 codes too: they then read the same with ``binary.usage = FALSE``, which a
    multi-session file needs as soon as one session holds days."""
    vals = effort.to_numpy()
    binary = bool(((vals == 0) | (abs(vals - occasion_days) < 1e-6)).all())
    if binary:
        sep = " " if spaced else ""
        return {c: sep.join("1" if v > 0 else "0" for v in row) for c, row in zip(effort.index, vals)}, True
    return {c: " ".join(f"{v:g}" for v in row) for c, row in zip(effort.index, vals)}, False


# ---------------------------------------------------------------------------------------------- secr
def _secr_sessions_order(sessions: Iterable[str]) -> list[str]:
    """secr's session order: numeric when every name is a number, else alphanumeric."""
    s = list(dict.fromkeys(sessions))
    if all(re.fullmatch(r"-?\d+(\.\d+)?", x) for x in s):
        return sorted(s, key=float)
    return sorted(s)


def _read_existing(captfile: Path, session: str, columns: list[str]) -> tuple[list[str], list[str]]:
    """Header lines (``# [S] ...``) and data lines of the other sessions of an existing capthist file."""
    head: list[str] = []
    body: list[str] = []
    try:
        lines = captfile.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ExportError(f"{captfile}: cannot read the capthist file to append to ({err})") from None
    cols = None
    for n, line in enumerate(lines, 1):
        if line.startswith("# Session ID Occasion Detector"):
            cols = line[2:].split()
        elif line.startswith("# ["):
            if not line.startswith(f"# [{session}] "):
                head.append(line)
        elif line.strip() and not line.startswith("#"):
            parts = line.split()
            if len(parts) < 4:
                raise ExportError(f"{captfile}, line {n}: not 'Session ID Occasion Detector': {line!r}")
            if parts[0] != session:
                body.append(line)
    if body and cols is not None and cols != columns:
        raise ExportError(f"{captfile}: its columns {' '.join(cols)} differ from this session's {' '.join(columns)}; "
                          "every session needs the same individual covariates")
    return head, body


def _r_snippet(captfile: Path, trapfiles: Mapping[str, str], covnames: Sequence[str], binary: bool) -> str:
    order = _secr_sessions_order(trapfiles)
    traps = ", ".join(f'"{trapfiles[s]}"' for s in order)
    trap_arg = f"c({traps})" if len(order) > 1 else traps
    cov = f", covnames = c({', '.join(repr(c).replace(chr(39), chr(34)) for c in covnames)})" if covnames else ""
    use = "" if binary else ", binary.usage = FALSE"
    return (
        "# leopard-reid census: read the capture histories into secr (run in this folder)\n"
        "library(secr)\n"
        f'ch <- read.capthist("{captfile.name}", {trap_arg}, fmt = "trapID", detector = "{DETECTOR}"{cov}{use})\n'
        "summary(ch)\n"
    )


def write_capthist(
    table: pd.DataFrame,
    captfile: str | os.PathLike,
    trapfile: str | os.PathLike | None = None,
    cameras: pd.DataFrame | None = None,
    *,
    session: str = "1",
    season_start: datetime | None = None,
    occasion_days: float = 1,
    covariates: pd.DataFrame | None = None,
    operation: pd.DataFrame | None = None,
    append: bool = False,
    warn: bool = True,
    source: str = "cameras table",
) -> list[str]:
    """Write secr text files: ``captfile`` (``Session ID Occasion Detector [covariates]``, one line per individual,
    occasion and detector) and, with ``cameras``, ``trapfile`` (``Detector x y [usage]``), plus ``<captfile stem>.R``
    beside ``captfile`` with the ``read.capthist(..., fmt = "trapID", detector = "proximity")`` call.

    ``covariates``: individual covariates (index identity, see :func:`individual_covariates`), ``NA`` when
    unknown. ``append``: keep the other sessions' lines of an existing ``captfile`` (this session's are replaced),
    so several seasons make one multi-session file; each session then needs its own ``trapfile``. Usage comes
    from :func:`camera_effort`. Returns the notes written to the header (what was left out and why)."""
    captfile = Path(captfile)
    session = secr_ids([session], what="session")[str(session)]
    effort = camera_effort(cameras, season_start=season_start, occasion_days=occasion_days, operation=operation,
                           source=source)
    cap = captures(table, cameras, effort, warn=warn)
    t = cap.table
    ident = secr_ids(sorted(set(t["identity"].astype(str))), what="identity")
    cam_ids = secr_ids(cameras["camera"].astype(str) if cameras is not None else sorted(set(t["camera"])),
                       what="camera")
    covnames = list(covariates.columns) if covariates is not None and len(covariates.columns) else []
    columns = ["Session", "ID", "Occasion", "Detector", *covnames]
    lines = t.groupby(["identity", "occasion", "camera"], sort=True).size().reset_index()
    body = []
    for i, o, c in zip(lines["identity"], lines["occasion"], lines["camera"]):
        cov = [_safe_id(covariates[n].get(i, "NA")) if i in covariates.index else "NA" for n in covnames] \
            if covnames else []
        body.append(" ".join([session, ident[str(i)], str(int(o)), cam_ids[str(c)], *cov]))
    usage, binary = _usage_text(effort, occasion_days, spaced=append) if effort is not None else ({}, True)
    start = season_start.strftime("%Y-%m-%d") if season_start else "unknown"
    trapname = Path(trapfile).name if trapfile is not None and cameras is not None else ""
    mine = [f"# [{session}] season start {start}; occasion = {occasion_days:g} day(s); {cap.n_occasions} "
            f"occasion(s); {len(body)} line(s); usage {'binary' if binary else 'in days'}",
            *([f"# [{session}] trapfile {trapname}"] if trapname else []),
            *[f"# [{session}] note: {x}" for x in cap.notes]]
    other_head, other_body = _read_existing(captfile, session, columns) if append and captfile.exists() else ([], [])
    head = [
        f"# leopard-reid census: secr capture histories; read.capthist(captfile, trapfile, fmt = 'trapID', "
        f"detector = '{DETECTOR}') as in {captfile.stem}.R",
        "# camera traps are proximity detectors: one line per individual, occasion and detector (a visit counts once)",
        "# left/right flanks of a new individual are separate IDs unless a paired-station detection or a reviewer "
        "links them",
        *other_head, *mine,
        "# " + " ".join(columns),
    ]
    _write_text(captfile, "\n".join(head + other_body + body) + "\n")
    if trapname:
        rows = [f"{cam_ids[str(c)]} {float(x):.2f} {float(y):.2f}" + (f" {usage.get(str(c), '')}" if usage else "")
                for c, x, y in zip(cameras["camera"], cameras["x"], cameras["y"])]
        th = ["# leopard-reid census: detector layout for secr::read.capthist (detector = 'proximity')",
              f"# session {session}; {cap.n_occasions} occasion(s)" + ("" if not usage else
              f"; usage {'1 = operating, 0 = not' if binary else '= days operated in each occasion'}"),
              "# Detector x y" + (" usage" if usage else "")]
        _write_text(trapfile, "\n".join(th + rows) + "\n")
    trapfiles = {m.group(1): m.group(2) for line in other_head + mine
                 if (m := re.match(r"# \[(\S+)\] trapfile (\S+)$", line))}
    sessions = {session} | {ln.split()[0] for ln in other_body}
    if trapname and set(trapfiles) >= sessions:
        binary_all = binary and not any("usage in days" in h for h in other_head)
        _write_text(captfile.with_suffix(".R"), _r_snippet(captfile, trapfiles, covnames, binary_all))
    return cap.notes


# ---------------------------------------------------------------------------------------------- oSCR
def _trap_covariates(cameras: pd.DataFrame) -> list[str]:
    """The cameras table's extra columns (habitat, station type...), written as trap covariates."""
    return [c for c in cameras.columns
            if c not in _KNOWN_CAMERA_COLUMNS and not re.fullmatch(r"problem\d+_(from|to)", c)]


def write_oscr(
    table: pd.DataFrame,
    out: str | os.PathLike,
    cameras: pd.DataFrame,
    *,
    session: str = "1",
    season_start: datetime | None = None,
    occasion_days: float = 1,
    covariates: pd.DataFrame | None = None,
    operation: pd.DataFrame | None = None,
    source: str = "cameras table",
) -> dict[str, Path]:
    """Write ``oscr_edf.csv`` (session, individual, occasion, trap, sex; one row per individual, occasion and trap)
    and ``oscr_tdf.csv`` (TrapID, X, Y, occ1..occK as 0/1 operation, then a ``/`` column and the cameras table's
    other columns as trap covariates) for ``oSCR::data2oscr``. Unknown sex is ``U`` (``sex.nacode = "U"``)."""
    import pandas as pd

    out = Path(out)
    effort = camera_effort(cameras, season_start=season_start, occasion_days=occasion_days, operation=operation,
                           source=source)
    cap = captures(table, cameras, effort, warn=False)
    t = cap.table.groupby(["identity", "occasion", "camera"], sort=True).size().reset_index()
    sex = covariates["sex"] if covariates is not None and "sex" in covariates.columns else pd.Series(dtype=object)
    edf = pd.DataFrame({"session": str(session), "individual": t["identity"].astype(str),
                        "occasion": t["occasion"].astype(int), "trap": t["camera"].astype(str),
                        "sex": [sex.get(i, "U") if isinstance(sex.get(i), str) else "U" for i in t["identity"]]})
    k = cap.n_occasions
    use = (effort.to_numpy() > 0).astype(int) if effort is not None else [[1] * k] * len(cameras)
    tdf = pd.DataFrame({"TrapID": cameras["camera"].astype(str).to_numpy(), "X": cameras["x"].astype(float).to_numpy(),
                        "Y": cameras["y"].astype(float).to_numpy()})
    tdf = pd.concat([tdf, pd.DataFrame(use, columns=[f"occ{j}" for j in range(1, k + 1)])], axis=1)
    covs = _trap_covariates(cameras)
    if covs:  # data2oscr reads columns after the one holding "/" as covariates (no "/" column without covariates)
        tdf["sep"] = "/"
        for c in covs:
            tdf[c] = cameras[c].to_numpy()
    return {"oscr_edf": _write_csv(out / "oscr_edf.csv", edf), "oscr_tdf": _write_csv(out / "oscr_tdf.csv", tdf)}


# ---------------------------------------------------------------------------------------------- camtrapR
def _operation_periods(effort: pd.DataFrame | None, cam: str, start: datetime, days: float,
                       k: int) -> tuple[datetime, datetime, list[tuple[datetime, datetime]]]:
    """Setup day, retrieval day and the off periods between them, from a camera's occasions."""
    on = [True] * k if effort is None else [v > 0 for v in effort.loc[cam]]
    first = next((j for j, v in enumerate(on) if v), 0)
    last = max((j for j, v in enumerate(on) if v), default=k - 1)
    day = timedelta(days=days)
    probs, j = [], first
    while j <= last:
        if not on[j]:
            a = j
            while not on[j]:
                j += 1
            probs.append((start + a * day, start + j * day - timedelta(seconds=1)))
        j += 1
    return start + first * day, start + (last + 1) * day - timedelta(seconds=1), probs


def write_camtrapr(
    table: pd.DataFrame,
    out: str | os.PathLike,
    cameras: pd.DataFrame,
    *,
    season_start: datetime | None = None,
    occasion_days: float = 1,
    operation: pd.DataFrame | None = None,
    species: str = "Panthera pardus",
    source: str = "cameras table",
) -> dict[str, Path]:
    """Write ``camtrapr_records.csv`` (one row per identified detection: Station, Species, Individual,
    DateTimeOriginal ``YYYY-MM-DD HH:MM:SS``, Date, Time, Directory, FileName) and ``camtrapr_cameras.csv``
    (Station, utm_x, utm_y, Setup_date, Retrieval_date ``YYYY-MM-DD`` and ProblemN_from/ProblemN_to) for
    ``cameraOperation(dateFormat = "ymd")`` and ``spatialDetectionHistory(recordDateTimeFormat = "ymd HMS")``.

    Setup/retrieval dates are the cameras table's ``start``/``end`` when given, else the first and last
    operated occasion (the whole season when usage is unknown), with off occasions as problem periods."""
    import pandas as pd

    out = Path(out)
    effort = camera_effort(cameras, season_start=season_start, occasion_days=occasion_days, operation=operation,
                           source=source)
    cap = captures(table, cameras, effort, warn=False)
    t = cap.table
    when = pd.to_datetime(t["datetime"])
    paths = [Path(str(p).replace("\\", "/")) for p in t["path"]]
    rec = pd.DataFrame({
        "Station": t["camera"].astype(str), "Species": species, "Individual": t["identity"].astype(str),
        "DateTimeOriginal": when.dt.strftime("%Y-%m-%d %H:%M:%S"), "Date": when.dt.strftime("%Y-%m-%d"),
        "Time": when.dt.strftime("%H:%M:%S"), "Directory": [p.parent.as_posix() for p in paths],
        "FileName": [p.name for p in paths],
    }).sort_values(["Station", "DateTimeOriginal", "FileName"], kind="stable")
    rows = []
    dated = {"start", "end"} <= set(cameras.columns) and operation is None and "usage" not in cameras.columns
    for r in cameras.to_dict("records"):
        cam = str(r["camera"])
        row: dict[str, Any] = {"Station": cam, "utm_x": float(r["x"]), "utm_y": float(r["y"])}
        if dated:
            iv = _intervals(pd.DataFrame([r]), source=source)[cam]
            setup, ret = iv[0][0], iv[0][1] - timedelta(seconds=1)
            probs = [(a, b - timedelta(seconds=1)) for a, b, _ in iv[1:]]
        elif season_start is not None and cap.n_occasions:
            setup, ret, probs = _operation_periods(effort, cam, season_start, occasion_days, cap.n_occasions)
        else:
            raise ExportError("the camtrapr export needs camera dates: give the cameras table start/end columns, "
                              "usage, or detections with dates")
        row["Setup_date"], row["Retrieval_date"] = setup.strftime("%Y-%m-%d"), ret.strftime("%Y-%m-%d")
        for n, (a, b) in enumerate(probs, 1):
            row[f"Problem{n}_from"], row[f"Problem{n}_to"] = a.strftime("%Y-%m-%d"), b.strftime("%Y-%m-%d")
        rows.append(row)
    ct = pd.DataFrame(rows)
    return {"camtrapr_records": _write_csv(out / "camtrapr_records.csv", rec),
            "camtrapr_cameras": _write_csv(out / "camtrapr_cameras.csv", ct)}


# ---------------------------------------------------------------------------------------------- Camtrap DP
def _iso(t: datetime, offset: str) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S") + offset


def _stable_id(prefix: str, *parts: Any) -> str:
    return prefix + hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:12]


def _latlon(cameras: pd.DataFrame, source: str = "cameras table") -> tuple[Any, Any]:
    """The cameras table's WGS84 columns (``latitude``/``longitude`` or ``lat``/``lon``), checked."""
    import pandas as pd

    for a, b in (("latitude", "longitude"), ("lat", "lon")):
        if a in cameras.columns and b in cameras.columns:
            lat, lon = pd.to_numeric(cameras[a], errors="coerce"), pd.to_numeric(cameras[b], errors="coerce")
            bad = lat.isna() | lon.isna() | (lat.abs() > 90) | (lon.abs() > 180)
            if bad.any():
                raise ExportError(f"{source}: {a}/{b} of camera(s) {', '.join(cameras['camera'][bad].astype(str))}"
                                  " are not WGS84 decimal degrees")
            return lat, lon
    raise ExportError(f"{source}: the camtrapdp export needs latitude and longitude columns (WGS84 decimal "
                      "degrees; x and y are projected metres)")


def _media_path(path: str, root: Path | None) -> str:
    """A Camtrap DP ``filePath``: the census path when it is relative and plain (no leading '.', '/', '~' and no
    '..'), else a ``file:`` URL of the resolved file."""
    p = str(path).replace("\\", "/")
    if re.match(r"^[^./~]", p) and ".." not in p and not Path(p).is_absolute():
        return p
    full = Path(path) if Path(path).is_absolute() or root is None else root / path
    return full.resolve().as_uri()


def _deployments(cameras: pd.DataFrame, t: pd.DataFrame, when: pd.Series, offset: str, session: str,
                 source: str) -> pd.DataFrame:
    import pandas as pd

    lat, lon = _latlon(cameras, source)
    dated = {"start", "end"} <= set(cameras.columns)
    first, last = when.min(), when.max()
    rows = []
    for i, r in enumerate(cameras.to_dict("records")):
        cam = str(r["camera"])
        comment = ""
        if dated:
            iv = _intervals(pd.DataFrame([r]), source=source)[cam]
            start, end = iv[0][0], iv[0][1] - timedelta(seconds=1)
        else:
            mine = when[t["camera"].astype(str) == cam]
            start, end = (mine.min(), mine.max()) if len(mine) else (first, last)
            comment = "start and end not recorded: the span of this census's detections"
        if pd.isna(start) or pd.isna(end):
            raise ExportError(f"{source}, camera {cam!r}: no start/end and no dated detection for the "
                              "camtrapdp deployment")
        rows.append({"deploymentID": cam, "locationID": str(r.get("station") or cam), "locationName": cam,
                     "latitude": float(lat.iat[i]), "longitude": float(lon.iat[i]),
                     "deploymentStart": _iso(start, offset), "deploymentEnd": _iso(end, offset),
                     "habitat": str(r.get("habitat") or ""), "deploymentGroups": f"session:{session}",
                     "deploymentComments": comment})
    return pd.DataFrame(rows, columns=DP_FIELDS["deployments"])


def _observations(t: pd.DataFrame, when: pd.Series, sizes: Mapping[str, tuple[int, int] | None], *, offset: str,
                  species: str, classified_by: str, now: str, sex: Mapping[str, str]) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for r, w in zip(t.to_dict("records"), when):
        box = json.loads(r["bbox"]) if str(r.get("bbox") or "").startswith("[") else None
        size = sizes.get(str(r["path"]))
        rel = [box[0] / size[0], box[1] / size[1], box[2] / size[0], box[3] / size[1]] if box and size else None
        score = pd.to_numeric(r.get("score"), errors="coerce")
        known = r["decision"] in ("known", "uncertain") and not pd.isna(score) and 0 <= float(score) <= 1
        rows.append({
            "observationID": _stable_id("o", r["path"], r.get("bbox")), "deploymentID": str(r["camera"]),
            "mediaID": _stable_id("m", r["path"]), "eventID": r.get("burst") or "",
            "eventStart": _iso(w, offset), "eventEnd": _iso(w, offset), "observationLevel": "media",
            "observationType": "animal", "scientificName": species, "count": 1,
            "sex": {"F": "female", "M": "male"}.get(sex.get(str(r["identity"]), ""), ""),
            "individualID": str(r["identity"]),
            "bboxX": round(rel[0], 6) if rel else "", "bboxY": round(rel[1], 6) if rel else "",
            "bboxWidth": round(rel[2], 6) if rel else "", "bboxHeight": round(rel[3], 6) if rel else "",
            "classificationMethod": "machine", "classifiedBy": classified_by, "classificationTimestamp": now,
            "classificationProbability": round(float(score), 4) if known else "",
            "observationTags": f"decision:{r['decision']}",
            "observationComments": "" if r["decision"] != "new" else "a new individual: no known identity reached "
                                   "the threshold (provisional id until reviewed)",
        })
    return pd.DataFrame(rows, columns=DP_FIELDS["observations"])


def _package(deps: pd.DataFrame, *, session: str, species: str, now: str) -> dict[str, Any]:
    from . import __version__

    lat, lon = deps["latitude"], deps["longitude"]
    box = [float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())]
    ring = [[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]], [box[0], box[1]]]
    spatial = ({"type": "Point", "coordinates": box[:2]} if box[0] == box[2] and box[1] == box[3]
               else {"type": "Polygon", "bbox": box, "coordinates": [ring]})
    res = [{"name": n, "path": f"{n}.csv", "profile": "tabular-data-resource", "format": "csv",
            "mediatype": "text/csv", "encoding": "utf-8", "schema": f"{_DP_BASE}/{n}-table-schema.json"}
           for n in ("deployments", "media", "observations")]
    return {
        "resources": res, "profile": f"{_DP_BASE}/camtrap-dp-profile.json",
        "name": f"leopard-reid-census-{_safe_id(session).lower()}", "id": _stable_id("", "census", session),
        "created": now, "title": f"Leopard census, session {session}",
        "description": "Individual identifications of camera-trap detections by leopard-reid: machine "
                       "classifications (classificationProbability = calibrated P(same individual)); NEW- ids are "
                       "provisional until reviewed. Timestamps carry the offset given to the export.",
        "contributors": [{"title": "leopard-reid " + __version__ + " (software); add the project's people",
                          "role": "contributor"}],
        "sources": [{"title": "leopard-reid", "version": __version__}],
        "project": {"title": f"Leopard census, session {session}", "samplingDesign": "targeted",
                    "captureMethod": ["activityDetection"], "individualAnimals": True, "observationLevel": ["media"]},
        "spatial": spatial,
        "temporal": {"start": deps["deploymentStart"].min()[:10], "end": deps["deploymentEnd"].max()[:10]},
        "taxonomic": [{"scientificName": species, "taxonRank": "species"}],
    }


def write_camtrapdp(
    table: pd.DataFrame,
    out: str | os.PathLike,
    cameras: pd.DataFrame,
    *,
    session: str = "1",
    root: str | os.PathLike | None = None,
    covariates: pd.DataFrame | None = None,
    utc_offset: str = "+00:00",
    species: str = "Panthera pardus",
    method: str = "fused",
    source: str = "cameras table",
) -> dict[str, Path]:
    """Write a Camtrap DP 1.0 package into ``out``: ``deployments.csv`` (one per camera; needs WGS84
    ``latitude``/``longitude`` in the cameras table), ``media.csv`` (one per image), ``observations.csv`` (one
    media-level ``machine`` observation per dated detection: ``individualID``, ``classificationProbability`` =
    P(same) of known and uncertain calls, bbox relative to the image) and ``datapackage.json``.

    Camera clocks have no time zone: ``utc_offset`` (``+02:00``) is written on every timestamp. Image sizes for
    the relative bbox are read from the image headers under ``root``."""
    import pandas as pd

    from .census import _image_info

    if not re.fullmatch(r"[+-]\d{2}:\d{2}|Z", utc_offset):
        raise ExportError(f"utc offset {utc_offset!r}: use +HH:MM or -HH:MM (or Z)")
    out, base = Path(out), Path(root) if root is not None else None
    dated = table["datetime"].fillna("").astype(str).str.len() > 0
    off = ~table["camera"].astype(str).isin(set(cameras["camera"].astype(str)))
    if (~dated | off).any():  # a Camtrap DP observation needs its timestamp and its deployment
        warnings.warn(f"Camtrap DP: {int((~dated).sum())} detection(s) without a date and {int((dated & off).sum())} "
                      f"at camera(s) missing from {source} left out", stacklevel=2)
    t = table[dated & ~off].reset_index(drop=True)
    when = pd.to_datetime(t["datetime"])
    sizes: dict[str, tuple[int, int] | None] = {}
    for p in dict.fromkeys(t["path"].astype(str)):
        src = Path(p) if Path(p).is_absolute() or base is None else base / p
        try:
            sizes[p] = _image_info(src)[0]
        except (OSError, ValueError):
            sizes[p] = None  # the bbox is left empty rather than guessed
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    sex = covariates["sex"].dropna().to_dict() if covariates is not None and "sex" in covariates.columns else {}
    deps = _deployments(cameras, t, when, utc_offset, session, source)
    media = t.assign(_w=when).drop_duplicates("path")
    med = pd.DataFrame({
        "mediaID": [_stable_id("m", p) for p in media["path"]], "deploymentID": media["camera"].astype(str),
        "captureMethod": "activityDetection", "timestamp": [_iso(w, utc_offset) for w in media["_w"]],
        "filePath": [_media_path(p, base) for p in media["path"]], "filePublic": "false",
        "fileName": [Path(str(p)).name for p in media["path"]],
        "fileMediatype": [mimetypes.guess_type(str(p))[0] or "image/jpeg" for p in media["path"]],
    }).reindex(columns=DP_FIELDS["media"])
    from . import __version__

    obs = _observations(t, when, sizes, offset=utc_offset, species=species, now=now, sex=sex,
                        classified_by=f"leopard-reid {__version__} ({method})")
    files = {"deployments": _write_csv(out / "deployments.csv", deps), "media": _write_csv(out / "media.csv", med),
             "observations": _write_csv(out / "observations.csv", obs)}
    pkg = _package(deps, session=session, species=species, now=now)
    files["datapackage"] = _write_text(out / "datapackage.json", json.dumps(pkg, indent=2) + "\n")
    return files


# ---------------------------------------------------------------------------------------------- all
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
