"""What a census produces and how it fails: :class:`CensusResult`, :class:`CensusError` and the columns of
the files every stage agrees on (``matches.csv``, ``decisions.csv``, the ``NEW-`` prefix).

Kept apart so the readers, the pipeline, the writers and :func:`~leopard_reid.census.apply_review` share one
definition without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from ..io import ImageError


#: Columns of ``matches.csv`` (in order).
MATCH_COLUMNS = [
    "path", "bbox", "camera", "datetime", "side", "identity", "score", "decision", "candidates",
    "conf", "burst", "occasion", "flank_link",
]
#: Required columns of ``decisions.csv`` (``side``, ``camera``, ``datetime`` follow, for the gallery).
DECISION_COLUMNS = ["path", "bbox", "proposed", "decision", "identity"]
#: Prefix of the provisional names of new individuals (``NEW-0001``...).
NEW_PREFIX = "NEW-"


class CensusError(ValueError):
    """A census input that cannot be used (unreadable detections file, bad cameras table...)."""


@dataclass
class CensusResult:
    """What :func:`run_census` produced: the per-detection table, the output files and the counts."""

    detections: pd.DataFrame
    out: Path
    files: dict[str, Path]
    errors: list[ImageError] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        c = ", ".join(f"{k}={v}" for k, v in self.counts.items())
        return f"CensusResult({len(self.detections)} detections, {c}, out={str(self.out)!r})"
