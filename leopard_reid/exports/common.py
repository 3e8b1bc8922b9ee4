"""What every export shares: secr-safe identifiers, atomic writes, individual covariates, camera effort per
occasion and the selection of detections a capture history can hold."""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: Characters secr's read.table cannot take in an identifier ('#' starts a comment, quotes quote, '_' is reserved
#: in detector ids), see the secr "Data input" vignette.
_BAD_ID = re.compile(r"[\s,_#'\"]+")
_NA_IDS = {"NA", "NaN", "NULL", "TRUE", "FALSE", "T", "F"}  # read by R as missing or logical, never as a name
_SEX = {"f": "F", "female": "F", "m": "M", "male": "M"}


class ExportError(ValueError):
    """An export that cannot be written truthfully (colliding identifiers, a missing input column...)."""


# ---------------------------------------------------------------------------------------------- helpers
def _write_text(path: str | os.PathLike, text: str) -> Path:
    """Replace ``path`` atomically (the gallery's temporary-file-and-rename helper)."""
    from ..files import atomic_write

    path = Path(path)
    atomic_write(path, text.encode("utf-8"))
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

