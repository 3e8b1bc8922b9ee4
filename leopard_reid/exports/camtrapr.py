"""camtrapR: a record table of individuals and a camera-trap station table, for ``cameraOperation`` and
``spatialDetectionHistory`` (dates ``ymd``, date-times ``ymd HMS``)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import ExportError, _intervals, _write_csv, camera_effort, captures

if TYPE_CHECKING:
    import pandas as pd


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

