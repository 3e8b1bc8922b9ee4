"""The tables and files the census writes itself: the ``matches.csv`` table (:func:`_match_table`), the
``decisions.csv`` template (never overwriting a reviewer's edits), ``census.json`` (where the images were, for
``apply-review``) and the review page's summary line.

``errors.csv`` (:func:`leopard_reid.io.write_errors`), the capture histories (:mod:`leopard_reid.exports`) and
``review.html`` (:mod:`leopard_reid.review`) are written by their own modules; :mod:`.pipeline` calls them all.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import atomic_write
from .dates import _season_start
from .detections import _fmt_box
from .results import DECISION_COLUMNS, MATCH_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from .pipeline import _Calls
    from .scoring import _Scored


def _default_decision(decision: str) -> str:
    return "confirm" if decision == "known" else ""


def _write_decisions(table: pd.DataFrame, path: Path, notes: list[str]) -> Path:
    """Write the decisions template; an existing ``decisions.csv`` (perhaps edited by a reviewer) is kept and the
    new one goes beside it as ``decisions-<date-time>.csv``. Returns the path written."""
    import io

    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow([*DECISION_COLUMNS, "side", "camera", "datetime"])
    for r in table.itertuples(index=False):
        w.writerow([r.path, r.bbox, r.identity, _default_decision(r.decision), r.identity, r.side,
                    r.camera or "", r.datetime])
    text = buf.getvalue()
    if path.exists():
        if path.read_text(encoding="utf-8", errors="replace") == text:
            return path
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        new = path.with_name(f"{path.stem}-{stamp}{path.suffix}")
        k = 1
        while new.exists():
            new, k = path.with_name(f"{path.stem}-{stamp}-{k}{path.suffix}"), k + 1
        notes.append(f"{path} exists and may hold a reviewer's edits: kept; this run's decisions are in {new.name}")
        path = new
    atomic_write(path, text.encode("utf-8"))
    return path


def _write_run_info(path: Path, **info: Any) -> None:
    """``census.json``: where this census found its images, so ``apply-review`` finds them too."""
    gp = info.pop("gallery_path")
    det = info.pop("detections")
    data = {"root": str(Path(info.pop("root")).resolve()),
            "detections": str(Path(det).resolve()) if isinstance(det, (str, os.PathLike)) else None,
            "gallery": str(gp.resolve()) if gp is not None else None, **info}
    atomic_write(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"))


def _review_summary(table: pd.DataFrame, threshold: float, band: tuple[float, float], errors: Sequence[Any]) -> str:
    """The review page's one-line account of the census: counts, threshold and skipped inputs."""
    counts = table["decision"].value_counts().to_dict()
    return (f"{len(table)} detections: {counts.get('uncertain', 0)} uncertain, {counts.get('new', 0)} new, "
            f"{counts.get('known', 0)} known; P(same) threshold {threshold:.2f}, uncertain band "
            f"[{band[0]:.2f}, {band[1]:.2f}); {len(errors)} input(s) skipped (errors.csv).")


def _match_table(
    meta: pd.DataFrame, sc: _Scored, calls: _Calls, partners: Sequence[set[int]], *, top_k: int,
    season_start: str | datetime | None, occasion_days: float,
) -> tuple[pd.DataFrame, list[list[tuple[str, float, int]]], datetime | None]:
    """The ``matches.csv`` table (:data:`MATCH_COLUMNS`) of the readable detections: each one's call, its own
    top candidates, burst, sampling occasion and flank partners. Returns the table, every detection's
    candidates (identity, score, exemplar) for the review page, and the season's first day."""
    import numpy as np
    import pandas as pd

    n = len(meta)
    cand_text = [""] * n
    cand_list: list[list[tuple[str, float, int]]] = [[] for _ in range(n)]
    for i in calls.good:
        row = sc.per_id[i]
        top = np.argsort(-row, kind="stable")[:top_k]
        cl = [(str(sc.id_names[k]), float(row[k]), int(sc.per_ex[i, k])) for k in top if np.isfinite(row[k])]
        cand_list[i] = cl
        cand_text[i] = ";".join(f"{a}:{s:.2f}" for a, s, _ in cl)
    start_day = _season_start(season_start, meta["dt"])
    occasion = [
        (int(((t - start_day).total_seconds()) // (occasion_days * 86400)) + 1) if t is not None and start_day else None
        for t in meta["dt"]
    ]
    keys = meta["key"].tolist()
    flank = [";".join(sorted(keys[b] for b in partners[i])) for i in range(n)]
    burst_name = [f"B{int(g) + 1:05d}" if g >= 0 else "" for g in calls.group]

    table = pd.DataFrame({
        "path": meta["path"],
        "bbox": [_fmt_box(b) for b in meta["bbox"]],
        "camera": meta["camera"],
        "datetime": [t.strftime("%Y-%m-%dT%H:%M:%S") if t is not None else "" for t in meta["dt"]],
        "side": meta["side"],
        "identity": calls.identity,
        "score": np.round(calls.score, 4),
        "decision": calls.decision,
        "candidates": cand_text,
        "conf": meta["conf"],
        "burst": burst_name,
        "occasion": pd.array(occasion, dtype="Int64"),
        "flank_link": flank,
    }, columns=MATCH_COLUMNS)
    return table[meta["valid"].to_numpy()].reset_index(drop=True), cand_list, start_day
