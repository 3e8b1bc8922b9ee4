"""secr: ``capthist.txt`` + ``traps.txt`` in the DENSITY text formats, read by ``secr::read.capthist(...,
fmt = "trapID", detector = "proximity")`` (secr's "Data input" vignette), sessions appendable into one file."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .common import ExportError, _safe_id, _write_text, camera_effort, captures, secr_ids

if TYPE_CHECKING:
    import pandas as pd

#: secr detector type of a camera trap (several detectors per animal and occasion; one detection per detector).
DETECTOR = "proximity"


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

