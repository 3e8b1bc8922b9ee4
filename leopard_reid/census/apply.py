"""Applying a reviewed ``decisions.csv``: :func:`apply_review` adds the confirmed detections to the gallery,
all or nothing, with the gallery's atomic save (previous version kept as ``<gallery>.bak``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .detections import norm_path
from .results import DECISION_COLUMNS, NEW_PREFIX, CensusError
from .sightings import _table

if TYPE_CHECKING:
    import pandas as pd

    from ..embed import Embedder


def apply_review(
    decisions: str | os.PathLike | pd.DataFrame,
    *,
    gallery: str | os.PathLike,
    root: str | os.PathLike | None = None,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Add the confirmed detections of an edited ``decisions.csv`` to the gallery file, atomically.

    Rows with ``decision`` ``confirm`` (identity = the ``identity`` column, else ``proposed``) or ``change``
    (identity = the ``identity`` column) are embedded and added as exemplars (new names create new
    individuals); blank or ``skip`` rows are ignored, and detections already in the gallery are not added
    twice. A confirmed provisional ``NEW-xxxx`` that already names a gallery individual is refused (rename it).
    If any row cannot be used nothing is written; otherwise the gallery is saved with
    :meth:`Gallery.save` (atomic, previous version kept as ``<gallery>.bak``). Returns a summary dict.
    """
    import pandas as pd

    from ..embed import Embedder
    from ..gallery import Gallery
    from ..io import ImageError, Record, parse_bbox, parse_side

    df = _table(decisions)
    if isinstance(decisions, pd.DataFrame):
        df = df.astype(str)  # text, as read from a CSV
        name, base = "decisions", Path(root) if root is not None else Path.cwd()
    else:
        name, base = str(decisions), Path(root) if root is not None else _recorded_root(Path(decisions))
    missing = [c for c in DECISION_COLUMNS if c not in df.columns]
    if missing:
        raise CensusError(f"{name}: needs the columns {', '.join(DECISION_COLUMNS)}; missing {', '.join(missing)}")
    g = Gallery.load(gallery)
    before = set(g.identities)
    have = {(str(p), tuple(b) if b else None) for p, b in zip(g.metadata["path"], g.metadata["bbox"])}
    problems: list[str] = []
    take = []
    skipped = 0
    for k, r in enumerate(df.to_dict("records")):
        line = k + 2
        dec = str(r["decision"]).strip().lower()
        if dec in ("", "skip", "reject", "nan"):
            skipped += 1
            continue
        ident = str(r["identity"]).strip()
        proposed = str(r["proposed"]).strip()
        if dec == "confirm":
            ident = ident or proposed
        elif dec != "change":
            problems.append(f"line {line}: decision {r['decision']!r} (use confirm, change or skip)")
            continue
        if not ident or ident.lower() in ("nan", "new", "uncertain"):
            problems.append(f"line {line}: no identity to {dec}")
            continue
        try:
            box = parse_bbox(r["bbox"])
        except ValueError as err:
            problems.append(f"line {line}: {err}")
            continue
        if (str(r["path"]), box) in have:  # already applied
            skipped += 1
            continue
        if ident.startswith(NEW_PREFIX) and ident == proposed and ident in before:
            problems.append(f"line {line}: {ident} already names a gallery individual; give the new one another name")
            continue
        try:
            side = parse_side(r.get("side"))
        except ValueError as err:
            problems.append(f"line {line}: {err}")
            continue
        take.append({"path": str(r["path"]), "bbox": box, "identity": ident, "side": side,
                     "camera": str(r.get("camera", "") or "") or None,
                     "datetime": str(r.get("datetime", "") or "") or None})
    if problems:
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise CensusError(f"{name}: " + "; ".join(problems[:20]) + more)
    summary = {"added": 0, "new_individuals": [], "skipped": skipped, "gallery": str(gallery)}
    if not take:
        return summary
    if embedder is None:
        embedder = Embedder(g.backbone or "efficientnet_lite0", progress=False)
    g.check_embedder(embedder)
    rows = pd.DataFrame(take)
    recs = [Record(name=p, source=Path(p) if Path(p).is_absolute() else base / norm_path(p), bbox=b, side=s)
            for p, b, s in zip(rows["path"], rows["bbox"], rows["side"])]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reported below, all at once
        feats = embedder.describe(recs, local=g.local is not None, on_error="skip")
    if feats.errors or not feats.valid.all():
        listing = "; ".join(str(e) for e in feats.errors[:10])
        raise ImageError("decisions", f"{len(feats.errors)} detection(s) could not be read, nothing applied: {listing}")
    g.add_described(feats, rows)
    g.save(gallery)
    summary["added"] = int(len(rows))
    summary["new_individuals"] = sorted(set(rows["identity"]) - before)
    summary["identities"] = len(g.identities)
    return summary


def _recorded_root(decisions: Path) -> Path:
    """The image root the census recorded in ``census.json`` beside ``decisions`` (else the CSV's folder)."""
    folder = decisions.resolve().parent
    try:
        root = json.loads((folder / "census.json").read_text()).get("root")
    except (OSError, ValueError, AttributeError):
        root = None
    return Path(root) if root else folder
