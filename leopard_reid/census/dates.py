"""Dates of a census: date-times from EXIF, ISO 8601 or a table's ``a/b/yyyy`` (read in an explicit day/month
order, never guessed when ambiguous), and the first day of the season that occasions count from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .results import CensusError

DATE_ORDERS = ("dmy", "mdy")
_SLASHED = re.compile(r"\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?\s*")


def _parse_datetime(value: Any, date_order: str | None = None) -> datetime | None:
    """A date-time from EXIF (``2024:03:05 10:00:00``), ISO 8601, or a day/month table date.

    A date written ``a/b/yyyy`` is read as ``date_order`` says (``dmy`` or ``mdy``); without it only an
    unambiguous one is read (a part over 12 is the day), and ``05/03/2024`` raises :class:`CensusError`:
    a US table read day-first would shift every occasion without a word. None for an empty value."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    text = str(value).strip().rstrip("\x00")
    if not text or text.lower() in {"nan", "none", "nat"}:
        return None
    m = _SLASHED.fullmatch(text)
    if m:
        a, b, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
        order = date_order
        if order is None:
            if a > 12 >= b:
                order = "dmy"
            elif b > 12 >= a:
                order = "mdy"
            elif a != b:
                raise CensusError(f"date {text!r} is ambiguous (day/month or month/day?): give the date order "
                                  "(date_order='dmy' or 'mdy'; --date-order on the command line)")
            else:
                order = "dmy"
        day, month = (a, b) if order == "dmy" else (b, a)
        hh, mm, ss = (int(g) if g else 0 for g in m.group(4, 5, 6))
        try:
            return datetime(year, month, day, hh, mm, ss)
        except ValueError:
            return None
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        return None


def _season_start(value: str | datetime | None, times: Iterable[datetime | None]) -> datetime | None:
    if value is not None:
        t = _parse_datetime(value)
        if t is None:
            raise CensusError(f"season start {value!r} is not a date")
        return datetime(t.year, t.month, t.day)
    ts = [t for t in times if t is not None]
    if not ts:
        return None
    t = min(ts)
    return datetime(t.year, t.month, t.day)
