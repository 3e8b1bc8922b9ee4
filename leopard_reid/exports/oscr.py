"""oSCR: the encounter (EDF) and trap deployment (TDF) tables that ``oSCR::data2oscr`` reads."""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .common import _write_csv, camera_effort, captures

if TYPE_CHECKING:
    import pandas as pd

_KNOWN_CAMERA_COLUMNS = {"camera", "x", "y", "usage", "start", "end", "station", "latitude", "longitude", "lat", "lon"}


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

