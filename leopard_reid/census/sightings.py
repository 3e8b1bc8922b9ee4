"""The census' input tables: the sightings table (path -> camera, date, side) and the cameras table (camera,
x, y[, usage][, station]), read as text by :func:`_table` (a CSV file or a DataFrame).

Every row is checked before any detection is scored, and problems are reported together with line numbers.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from .dates import _parse_datetime
from .detections import norm_path
from .results import CensusError

if TYPE_CHECKING:
    import pandas as pd


def _table(source: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """A CSV (all columns as text) or a copy of a DataFrame, with lower-case stripped column names.

    A file that cannot be read as CSV is refused with its name and the reason."""
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        df = source.copy()
    else:
        try:
            df = pd.read_csv(source, dtype=str, keep_default_na=False)
        except FileNotFoundError:
            raise CensusError(f"{source}: file not found") from None
        except IsADirectoryError:
            raise CensusError(f"{source}: is a folder, not a CSV file") from None
        except OSError as err:
            raise CensusError(f"{source}: cannot read ({err.strerror or err})") from None
        except ValueError as err:  # not UTF-8, empty, or malformed (pandas' parser errors are ValueErrors)
            raise CensusError(f"{source}: not a readable CSV file ({err})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    return df


def _read_sightings(
    sightings: str | os.PathLike | pd.DataFrame | None, date_order: str | None = None
) -> dict[str, dict[str, Any]]:
    """path -> camera, datetime, side; every row checked (sides by the one side parser, dates by
    ``date_order``), problems listed together with their line numbers."""
    import pandas as pd

    from ..io import parse_side

    if sightings is None:
        return {}
    df = _table(sightings)
    name = str(sightings) if not isinstance(sightings, pd.DataFrame) else "sightings table"
    if "path" not in df.columns:
        raise CensusError(f"{name}: needs a 'path' column (path,camera,datetime[,side]); found {list(df)}")
    out: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for k, row in enumerate(df.to_dict("records")):
        where = f"line {k + 2}"
        try:
            side = parse_side(row.get("side"))
            when = _parse_datetime(row.get("datetime"), date_order)
        except (ValueError, CensusError) as err:
            problems.append(f"{where}: {err}")
            continue
        if when is None and _cell(row.get("datetime")):
            problems.append(f"{where}: datetime {row.get('datetime')!r} is not a date")
            continue
        out[norm_path(row["path"])] = {"camera": _cell(row.get("camera")) or None, "datetime": when, "side": side}
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise CensusError(f"{name}: " + "; ".join(problems[:10]) + more)
    return out


def _cell(value: Any) -> str:
    from ..io import cell_text as cell

    return cell(value)


def _read_cameras(cameras: str | os.PathLike | pd.DataFrame | None) -> pd.DataFrame | None:
    if cameras is None:
        return None
    df = _table(cameras)
    missing = [c for c in ("camera", "x", "y") if c not in df.columns]
    if missing:
        raise CensusError(f"cameras table needs camera,x,y[,usage]; missing {', '.join(missing)}")
    df["camera"] = [_cell(c) for c in df["camera"]]
    if any(not c for c in df["camera"]):
        raise CensusError("cameras table: a row has no camera name")
    try:
        df["x"] = df["x"].astype(float)
        df["y"] = df["y"].astype(float)
    except ValueError as err:
        raise CensusError(f"cameras table: x and y must be numbers ({err})") from None
    if df["camera"].duplicated().any():
        raise CensusError(f"cameras table: duplicate camera(s) {sorted(set(df['camera'][df['camera'].duplicated()]))}")
    if "usage" in df.columns:
        df["usage"] = [re.sub(r"[\s,]", "", _cell(u)) for u in df["usage"]]
        bad = [c for c, u in zip(df["camera"], df["usage"]) if u and not re.fullmatch(r"[01]+", u)]
        if bad:
            raise CensusError(f"cameras table: usage must be a string of 0/1 per occasion (cameras {bad})")
        lengths = sorted({len(u) for u in df["usage"] if u})
        if len(lengths) > 1:  # checked before any detection is scored, not after
            raise CensusError(f"cameras table: usage strings of different lengths {lengths} (one 0/1 per occasion)")
    if "station" in df.columns:  # a blank station is the camera's own, never a shared "nan" or ""
        df["station"] = [_cell(st) or cam for st, cam in zip(df["station"], df["camera"])]
    return df.reset_index(drop=True)
