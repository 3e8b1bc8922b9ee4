"""Census workflow: camera-trap detections in; identities, capture histories and a review page out.

:func:`run_census` takes MegaDetector batch output (both published layouts), crops the animal detections,
matches them against a gallery of known individuals, pools the evidence of each camera burst, clusters the
unmatched ones into provisional new individuals (``NEW-0001`` ...), and writes into ``out``:

* ``matches.csv``: one row per detection (identity, calibrated score, decision, top candidates, burst,
  candidate left/right flank link);
* ``capthist.txt`` + ``traps.txt``: capture histories for R ``secr::read.capthist(captfile, trapfile,
  fmt = "trapID")``, and with ``exports`` the oSCR, camtrapR and Camtrap DP files (:mod:`leopard_reid.exports`);
* ``review.html``: one self-contained page (images as data URIs, inline CSS/JS, no external link) showing
  each detection beside its candidates and the verified keypoint correspondences, where a person accepts,
  picks another candidate, marks new or unusable, and downloads ``decisions.csv`` (:mod:`leopard_reid.review`);
* ``decisions.csv``: the same decisions as a template to edit by hand;
* ``errors.csv``: the inputs that were skipped and why.

:func:`apply_review` then adds the confirmed detections to the gallery (atomically, keeping ``<file>.bak``).

Decisions use the calibrated P(same individual) of the fused method: a burst whose best known identity has
P >= ``Calibration.threshold`` is that identity, otherwise it is new; scores inside
``Calibration.uncertain_band`` are marked ``uncertain`` (identity still proposed). Left and right flanks are
matched within their side: their patterns differ. What links them is a paired station (cameras facing each
other, grouped by the cameras table's ``station`` column or sharing one ``camera`` name) photographing one
animal's two flanks within ``pair_seconds``. When that pairing is unambiguous (one burst per flank), the two
provisional new individuals become one ``NEW-xxxx``, and a new flank seen with a known individual's other
flank gets that identity as ``uncertain``, for a person to confirm on the review page; the ``flank_link``
column names the partner detections. Nothing is written to the gallery before review.

Importing this module is cheap (numpy, pandas, torch... are imported inside the functions).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exports import _safe_id, write_capthist  # noqa: F401 - moved to exports; kept importable from here

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .embed import Embedder
    from .gallery import Gallery
    from .io import ImageError

__all__ = [
    "CensusResult",
    "apply_review",
    "read_detections",
    "register_cli",
    "run_census",
    "write_capthist",
]

#: Columns of ``matches.csv`` (in order).
MATCH_COLUMNS = [
    "path", "bbox", "camera", "datetime", "side", "identity", "score", "decision", "candidates",
    "conf", "burst", "occasion", "flank_link",
]
#: Required columns of ``decisions.csv`` (``side``, ``camera``, ``datetime`` follow, for the gallery).
DECISION_COLUMNS = ["path", "bbox", "proposed", "decision", "identity"]
NEW_PREFIX = "NEW-"
_DEFAULT_CATEGORIES = {"1": "animal", "2": "person", "3": "vehicle"}  # MegaDetector batch format
_LIST_CATEGORIES = {"0": "animal", "1": "person", "2": "vehicle"}  # list layout: model class ids


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


# ---------------------------------------------------------------------------------------------- inputs
def _norm_path(p: str) -> str:
    p = str(p).replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def _err(path: object, reason: str) -> ImageError:
    from .io import ImageError

    return ImageError(path, reason)


def _category_name(cat: Any, table: Mapping[str, str]) -> str:
    key = str(cat).strip()
    return str(table.get(key, key)).strip().lower()


def read_detections(
    detections: str | os.PathLike | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    min_conf: float = 0.2,
    category: str = "animal",
) -> tuple[list[dict[str, Any]], list[ImageError], dict[str, int]]:
    """Parse MegaDetector output into animal detections above ``min_conf``.

    Accepts the batch format (``{"images": [{"file", "detections": [{"category", "conf", "bbox"}]}],
    "detection_categories": {...}}``, boxes normalised ``[x_min, y_min, w, h]``) and the older top-level
    list layout (``[{"file", "detections": [{"category": "animal", "confidence", "bbox"}]}]``, boxes in
    pixels as ``[x1, y1, x2, y2]``). Returns ``(detections, errors, counts)``: each detection a dict with
    ``path`` (as in the file), ``det`` (its index in the image), ``conf``, ``box`` and ``box_format``
    (``"norm_xywh"`` or ``"px_xyxy"``); ``errors`` name the images that MegaDetector failed on (with its
    reason) and malformed entries; ``counts`` the detections dropped as low-confidence or another category.
    """
    if isinstance(detections, (str, os.PathLike)):
        try:
            data = json.loads(Path(detections).read_text())
        except FileNotFoundError:
            raise CensusError(f"{detections}: file not found") from None
        except IsADirectoryError:
            raise CensusError(f"{detections}: is a folder, not a MegaDetector JSON file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CensusError(f"{detections}: not a JSON file ({err})") from None
    else:
        data = detections
    if isinstance(data, Mapping):
        if "images" not in data:
            raise CensusError("not MegaDetector output: a JSON object needs an 'images' list")
        images = data["images"] or []
        table = {str(k): str(v) for k, v in (data.get("detection_categories") or _DEFAULT_CATEGORIES).items()}
        box_format = "norm_xywh"
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        images, table, box_format = data, _LIST_CATEGORIES, "px_xyxy"
    else:
        raise CensusError("not MegaDetector output: expected a JSON object with 'images' or a list of images")
    out: list[dict[str, Any]] = []
    errors: list[ImageError] = []
    counts = {"images": 0, "failed": 0, "low_conf": 0, "other_category": 0, "animal": 0}
    for k, entry in enumerate(images):
        if not isinstance(entry, Mapping) or not entry.get("file"):
            errors.append(_err(f"<images[{k}]>", "entry without a 'file'"))
            continue
        path = str(entry["file"])
        counts["images"] += 1
        failure = entry.get("failure")
        if failure:
            counts["failed"] += 1
            errors.append(_err(path, f"MegaDetector failure: {failure}"))
            continue
        for j, det in enumerate(entry.get("detections") or []):
            try:
                name = _category_name(det["category"], table)
                conf = float(det.get("conf", det.get("confidence")))
                box = [float(v) for v in det["bbox"]]
            except (KeyError, TypeError, ValueError):
                errors.append(_err(path, f"detection {j}: needs category, conf and a bbox of four numbers"))
                continue
            if name != category:
                counts["other_category"] += 1
                continue
            if not conf >= min_conf:
                counts["low_conf"] += 1
                continue
            if len(box) != 4 or not all(math.isfinite(v) for v in box):
                errors.append(_err(path, f"detection {j}: bbox {det['bbox']!r} is not four finite numbers"))
                continue
            if box_format == "norm_xywh" and (max(box) > 1.5 or box[2] <= 0 or box[3] <= 0):
                errors.append(_err(path, f"detection {j}: bbox {box} is not a normalised [x, y, w, h]"))
                continue
            if box_format == "px_xyxy" and (box[2] <= box[0] or box[3] <= box[1]):
                errors.append(_err(path, f"detection {j}: bbox {box} is not a pixel [x1, y1, x2, y2]"))
                continue
            counts["animal"] += 1
            out.append({"path": path, "det": j, "conf": conf, "box": box, "box_format": box_format})
    return out, errors, counts


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


def _image_info(path: Path) -> tuple[tuple[int, int], datetime | None]:
    """(width, height) after EXIF orientation, and EXIF DateTimeOriginal; reads the header only."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise FileNotFoundError("file not found")
    try:
        with Image.open(path) as img:
            w, h = img.size
            exif = img.getexif()
            if exif.get(0x0112, 1) in (5, 6, 7, 8):
                w, h = h, w
            when = None
            try:
                when = _parse_datetime(exif.get_ifd(0x8769).get(36867))  # DateTimeOriginal
            except Exception:  # noqa: BLE001 - a damaged EXIF block only loses the date
                when = None
            if when is None:
                when = _parse_datetime(exif.get(306))  # DateTime
    except UnidentifiedImageError:
        raise OSError("not an image (unrecognised file format)") from None
    return (w, h), when


def _pixel_box(box: Sequence[float], fmt: str, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    w, h = size
    if fmt == "norm_xywh":
        x0, y0, x1, y1 = box[0] * w, box[1] * h, (box[0] + box[2]) * w, (box[1] + box[3]) * h
    else:
        x0, y0, x1, y1 = box
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(float(w), x1), min(float(h), y1)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    xi, yi = int(math.floor(x0)), int(math.floor(y0))
    return (xi, yi, max(1, int(math.ceil(x1)) - xi), max(1, int(math.ceil(y1)) - yi))


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

    from .io import parse_side

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
        out[_norm_path(row["path"])] = {"camera": _cell(row.get("camera")) or None, "datetime": when, "side": side}
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise CensusError(f"{name}: " + "; ".join(problems[:10]) + more)
    return out


def _cell(value: Any) -> str:
    from .io import _cell as cell

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


# ---------------------------------------------------------------------------------------------- grouping
def _bursts(meta: pd.DataFrame, burst_seconds: float) -> list[int]:
    """Burst index per detection: same camera and side, each within ``burst_seconds`` of the previous one.

    A group in which one image holds two animal detections is split back into single detections (two
    animals in one frame are two individuals, and there is no tracking to tell which is which)."""
    n = len(meta)
    group = [-1] * n
    nxt = 0
    cams = meta["camera"].tolist()
    times = meta["dt"].tolist()
    sides = meta["side"].tolist()
    paths = meta["path"].tolist()
    keyed: dict[tuple[str, str], list[int]] = {}
    for i in range(n):
        if cams[i] is None or times[i] is None:
            group[i] = nxt
            nxt += 1
        else:
            keyed.setdefault((cams[i], sides[i]), []).append(i)
    for idx in keyed.values():
        idx.sort(key=lambda i: (times[i], i))
        runs: list[list[int]] = [[idx[0]]]
        for a, b in zip(idx, idx[1:]):
            if (times[b] - times[a]).total_seconds() <= burst_seconds:
                runs[-1].append(b)
            else:
                runs.append([b])
        for run in runs:
            members = [paths[i] for i in run]
            if len(set(members)) < len(members):
                for i in run:
                    group[i] = nxt
                    nxt += 1
            else:
                for i in run:
                    group[i] = nxt
                nxt += 1
    return group


def _flank_partners(meta: pd.DataFrame, pair_seconds: float, station: Mapping[str, str]) -> list[set[int]]:
    """For each readable detection, the opposite-flank detections (row numbers) at the same station within
    ``pair_seconds``: the two cameras of a paired station photographing one animal."""
    cams, times, sides, valid = (meta[c].tolist() for c in ("camera", "dt", "side", "valid"))
    partners: list[set[int]] = [set() for _ in range(len(meta))]
    by_station: dict[str, list[int]] = {}
    for i, (cam, t, s, ok) in enumerate(zip(cams, times, sides, valid)):
        if ok and cam is not None and t is not None and s in ("left", "right"):
            by_station.setdefault(station.get(cam, cam), []).append(i)
    for idx in by_station.values():
        idx.sort(key=lambda i: times[i])
        for a_pos, a in enumerate(idx):
            for b in idx[a_pos + 1 :]:  # sorted by time: stop at the end of the window
                if (times[b] - times[a]).total_seconds() > pair_seconds:
                    break
                if sides[b] != sides[a]:
                    partners[a].add(b)
                    partners[b].add(a)
    return partners


def _paired_bursts(partners: Sequence[set[int]], group: Sequence[int]) -> list[tuple[int, int]]:
    """Burst pairs linked by simultaneous opposite-flank detections, kept only when unambiguous: each
    burst's opposite-flank partners all lie in the other one (two animals passing together link nothing)."""
    other: dict[int, set[int]] = {}
    for a, bs in enumerate(partners):
        for b in bs:
            other.setdefault(group[a], set()).add(group[b])
    return sorted((g, h) for g, hs in other.items() for h in hs if g < h and len(hs) == 1 and other.get(h) == {g})


def _link_flanks(
    pairs: Sequence[tuple[int, int]], cluster_of: dict[int, int], known: Mapping[int, str]
) -> tuple[dict[int, int], dict[int, str]]:
    """Join provisional new individuals across flanks using paired-station bursts.

    ``cluster_of``: unmatched burst -> provisional cluster; ``known``: burst -> identity for the bursts
    decided ``known``. Two new clusters seen together as opposite flanks become one (union-find); a new
    cluster seen together with exactly one known individual is proposed as that individual's other flank.
    Returns the merged ``cluster_of`` and cluster -> proposed known identity."""
    parent = {c: c for c in set(cluster_of.values())}

    def find(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for g, h in pairs:
        if g in cluster_of and h in cluster_of:
            a, b = find(cluster_of[g]), find(cluster_of[h])
            parent[max(a, b)] = min(a, b)
    merged = {g: find(c) for g, c in cluster_of.items()}
    seen_with: dict[int, set[str]] = {}
    for g, h in pairs:
        for u, v in ((g, h), (h, g)):
            if u in merged and v in known:
                seen_with.setdefault(merged[u], set()).add(known[v])
    return merged, {c: next(iter(ids)) for c, ids in seen_with.items() if len(ids) == 1}


# ---------------------------------------------------------------------------------------------- scoring
def _fmt_box(b: Sequence[int] | None) -> str:
    return "" if b is None else json.dumps([int(v) for v in b])


# ---------------------------------------------------------------------------------------------- main
def run_census(
    detections: str | os.PathLike | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    gallery: str | os.PathLike | Gallery,
    out: str | os.PathLike,
    root: str | os.PathLike | None = None,
    sightings: str | os.PathLike | pd.DataFrame | None = None,
    cameras: str | os.PathLike | pd.DataFrame | None = None,
    min_conf: float = 0.2,
    occasion_days: float = 1,
    burst_seconds: float = 60,
    embedder: Embedder | None = None,
    progress: bool | None = None,
    method: str = "fused",
    new_threshold: float | None = None,
    pair_seconds: float = 10,
    season_start: str | datetime | None = None,
    session: str = "1",
    top_k: int = 3,
    chunk_size: int = 256,
    review_images: int | None = None,
    linkage: str = "average",
    exports: str | Sequence[str] | None = ("secr",),
    camera_operation: str | os.PathLike | pd.DataFrame | None = None,
    append_to: str | os.PathLike | None = None,
    utc_offset: str = "+00:00",
    species: str = "Panthera pardus",
    date_order: str | None = None,
) -> CensusResult:
    """Identify the animal detections of a camera-trap season and write the census outputs into ``out``.

    ``detections``: MegaDetector output (file or parsed JSON), both layouts; relative image paths are
    resolved against ``root`` (default: the JSON file's folder). ``sightings``: CSV/DataFrame
    ``path,camera,datetime[,side]`` (else EXIF DateTimeOriginal and the parent folder's name as camera).
    ``cameras``: ``camera,x,y[,usage][,station]`` for ``traps.txt`` (``station`` groups paired cameras for
    flank links). Detections are read in chunks of ``chunk_size`` (images are never all in memory).
    Each detection gets ``identity`` (a known individual, or a provisional ``NEW-0001``...) and
    ``decision`` (``known``, ``new`` or ``uncertain``). Unmatched bursts are clustered into provisional new
    individuals by agglomerative clustering of their P(same) with ``linkage`` (``average``: single linkage
    chains distinct animals together once a season has many detections), cut at the new-individual
    threshold. ``date_order`` (``dmy`` or ``mdy``) says how ``a/b/yyyy`` dates of the sightings table read;
    without it an ambiguous one is refused. Every input (detections, tables, thresholds, dates) is checked
    before any detection is scored. An existing ``decisions.csv`` (a reviewer may have edited it) is never
    overwritten: the new one is written beside it. See the module docstring for the files written.

    ``exports``: capture-history formats to write (``secr``, ``oscr``, ``camtrapr``, ``camtrapdp`` or ``all``; see
    :mod:`leopard_reid.exports`) for ``session``; ``camera_operation``: a camtrapR-style camera-operation table
    for the usage; ``append_to``: a multi-session secr capthist file this session is added to; ``utc_offset`` and
    ``species`` for Camtrap DP and camtrapR. Individual covariates (``sex``) come from the gallery's metadata.
    """
    import warnings

    import numpy as np
    import pandas as pd
    from tqdm.auto import tqdm

    from . import exports as exp
    from .embed import Embedder
    from .gallery import Gallery, GalleryError, _IdentityGroups
    from .io import Record
    from .match import Matcher
    from .review import write_review

    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CensusError(f"{out}: exists and is not a folder")
    if date_order is not None and date_order not in DATE_ORDERS:
        raise CensusError(f"date_order must be one of {', '.join(DATE_ORDERS)}, not {date_order!r}")
    _check_threshold(method, new_threshold)
    if isinstance(gallery, (str, os.PathLike)):
        gallery_path: Path | None = Path(gallery)
        gallery = Gallery.load(gallery)
    else:
        gallery_path = None
    if not len(gallery):
        raise GalleryError("the gallery is empty: enroll known individuals first")
    if root is None and isinstance(detections, (str, os.PathLike)):
        root = Path(detections).resolve().parent
    base = Path(root) if root is not None else Path.cwd()
    dets, errors, counts = read_detections(detections, min_conf=min_conf)
    sight = _read_sightings(sightings, date_order)
    cams = _read_cameras(cameras)
    formats = exp.parse_formats(exports)
    cameras_name = str(cameras) if isinstance(cameras, (str, os.PathLike)) else "cameras table"
    exp.check_inputs(formats, cams, source=cameras_name, identities=gallery.identities,
                     gallery=str(gallery_path or "gallery"))
    covariates = exp.individual_covariates(gallery.metadata, source=str(gallery_path or "gallery metadata"))
    operation = exp.read_camera_operation(camera_operation) if camera_operation is not None else None
    if isinstance(season_start, str):  # read with the table's date order; refused now, not after scoring
        season_start = _parse_datetime(season_start, date_order) or season_start
    if season_start is not None:
        _season_start(season_start, [])
    out.mkdir(parents=True, exist_ok=True)
    notes_run: list[str] = []
    station = {}
    if cams is not None and "station" in cams.columns:
        station = dict(zip(cams["camera"], cams["station"]))

    # --- image sizes (header only), boxes in pixels, sighting metadata ------------------------------
    rows = _detection_rows(dets, base, sight, errors, notes_run)
    meta = pd.DataFrame(rows, columns=["path", "source", "det", "conf", "bbox", "camera", "dt", "side"])
    meta["dt"] = pd.Series([r["dt"] for r in rows], dtype=object)  # datetime or None, never NaT
    if len(meta):
        sort_t = [t if t is not None else datetime.max for t in meta["dt"]]
        order = sorted(range(len(meta)), key=lambda i: (sort_t[i], meta["path"].iat[i], meta["det"].iat[i]))
        meta = meta.iloc[order].reset_index(drop=True)
    meta["key"] = [f"{p} {_fmt_box(b)}" for p, b in zip(meta["path"], meta["bbox"])]
    n = len(meta)

    # --- describe in chunks, score against the gallery -------------------------------------------
    if embedder is None:
        embedder = Embedder(gallery.backbone or "efficientnet_lite0", progress=False)
    gallery.check_embedder(embedder)
    matcher = Matcher(method=method).fit(gallery)  # type: ignore[arg-type]
    thr = matcher.threshold(new_threshold)
    if thr is None:
        raise ValueError(f"method {method!r} has no calibrated threshold: give new_threshold")
    if method == "fused" and new_threshold is None:
        lo, hi = matcher.calibration_.uncertain_band
        lo, hi = min(lo, thr), max(hi, thr)
    else:
        lo = hi = thr
    by_identity = _IdentityGroups(matcher.labels_)
    id_names = by_identity.names
    per_id = np.full((n, len(id_names)), -np.inf, np.float32)
    per_ex = np.zeros((n, len(id_names)), np.int64)
    valid = np.zeros(n, bool)
    kept_emb: dict[int, np.ndarray] = {}
    kept_local: dict[int, Any] = {}
    show = progress if progress is not None else _tty()
    lines = progress is None and not show  # pipelines and logs: a plain line per chunk instead of a bar
    bar = tqdm(total=n, desc="census", unit="det", disable=not show)
    # on a terminal the bar moves per detection (keypoint extraction, per crop anyway, dominates the cost)
    step = 1 if show else chunk_size
    for start in range(0, n, step):
        if lines and start:
            _say(f"census: {start}/{n} detections scored ({time.perf_counter() - t0:.0f} s)")
        part = meta.iloc[start : start + step]
        recs = [Record(name=p, source=Path(s), bbox=tuple(b), side=sd)
                for p, s, b, sd in zip(part["path"], part["source"], part["bbox"], part["side"])]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skipped crops go to errors.csv
            feats = embedder.describe(recs, local=matcher.method != "global", on_error="skip")
        for e in feats.errors:
            errors.append(e)
        if not feats.valid.any():
            bar.update(len(part))
            continue
        ps = matcher.scores(feats)
        best, arg = by_identity.best(np.where(np.isfinite(ps.final), ps.final, -np.inf))  # a NaN never wins
        idx = np.arange(start, start + len(part))
        per_id[idx] = best
        per_ex[idx] = arg
        valid[idx] = feats.valid
        own_best = best.max(axis=1)
        for j in np.flatnonzero(feats.valid & (own_best < thr)):
            kept_emb[start + j] = feats.embeddings[j].copy()
            if feats.local is not None:
                kept_local[start + j] = feats.local[j]
        del feats, ps
        bar.update(len(part))
    bar.close()
    meta = meta.assign(valid=valid)

    # --- bursts: pool evidence, decide ---------------------------------------------------------------
    good = np.flatnonzero(valid)
    sub = meta.iloc[good].reset_index(drop=True)
    group_local = _bursts(sub, burst_seconds) if len(sub) else []
    group = np.full(n, -1, np.int64)
    group[good] = group_local
    n_groups = int(group.max()) + 1 if len(good) else 0
    members: list[list[int]] = [[] for _ in range(n_groups)]
    for i in good:
        members[group[i]].append(int(i))
    g_best = np.full(n_groups, -np.inf)
    g_id = np.full(n_groups, -1, np.int64)
    for g, mem in enumerate(members):
        pooled = per_id[mem].max(axis=0)
        k = int(np.argmax(pooled))
        g_best[g], g_id[g] = float(pooled[k]), k
    identity = np.empty(n, dtype=object)
    decision = np.empty(n, dtype=object)
    score = np.full(n, np.nan)
    unmatched = [g for g in range(n_groups) if not g_best[g] >= thr]
    for g, mem in enumerate(members):
        p = g_best[g]
        if p >= thr:
            dec = "known" if p >= hi else "uncertain"
            ident = id_names[g_id[g]]
        else:
            dec = "new" if p < lo else "uncertain"
            ident = None
        for i in mem:
            identity[i], decision[i], score[i] = ident, dec, p if np.isfinite(p) else np.nan

    # --- cluster unmatched bursts into provisional new individuals, join flanks seen together ---------
    cluster_of = _cluster_new(unmatched, members, kept_emb, kept_local, meta["side"].tolist(), matcher, thr, linkage,
                              show=show)
    partners = _flank_partners(meta, pair_seconds, station)
    known_burst = {g: str(id_names[g_id[g]]) for g in range(n_groups) if g_best[g] >= hi}
    cluster_of, other_flank_of = _link_flanks(_paired_bursts(partners, group), cluster_of, known_burst)
    existing = [int(m.group(1)) for m in (re.fullmatch(r"NEW-(\d+)", s) for s in id_names) if m]
    first_new = max(existing, default=0) + 1
    clusters: dict[int, list[int]] = {}
    for g in unmatched:
        clusters.setdefault(cluster_of[g], []).append(g)

    def first_sighting(c: int) -> int:  # meta is sorted by datetime, path, detection
        return min(i for g in clusters[c] for i in members[g])

    new_names: dict[int, str] = {}
    for c in sorted((c for c in clusters if c not in other_flank_of), key=first_sighting):
        new_names[c] = f"{NEW_PREFIX}{first_new + len(new_names):04d}"
    for g in unmatched:
        c = cluster_of[g]
        for i in members[g]:
            if c in other_flank_of:  # the other flank of a known individual: a person confirms it
                identity[i], decision[i] = other_flank_of[c], "uncertain"
            else:
                identity[i] = new_names[c]

    # --- candidates (own scores), occasions -----------------------------------------------------------
    cand_text = [""] * n
    cand_list: list[list[tuple[str, float, int]]] = [[] for _ in range(n)]
    for i in good:
        row = per_id[i]
        top = np.argsort(-row, kind="stable")[:top_k]
        cl = [(str(id_names[k]), float(row[k]), int(per_ex[i, k])) for k in top if np.isfinite(row[k])]
        cand_list[i] = cl
        cand_text[i] = ";".join(f"{a}:{s:.2f}" for a, s, _ in cl)
    start_day = _season_start(season_start, meta["dt"])
    occasion = [
        (int(((t - start_day).total_seconds()) // (occasion_days * 86400)) + 1) if t is not None and start_day else None
        for t in meta["dt"]
    ]
    keys = meta["key"].tolist()
    flank = [";".join(sorted(keys[b] for b in partners[i])) for i in range(n)]
    burst_name = [f"B{int(g) + 1:05d}" if g >= 0 else "" for g in group]

    table = pd.DataFrame({
        "path": meta["path"],
        "bbox": [_fmt_box(b) for b in meta["bbox"]],
        "camera": meta["camera"],
        "datetime": [t.strftime("%Y-%m-%dT%H:%M:%S") if t is not None else "" for t in meta["dt"]],
        "side": meta["side"],
        "identity": identity,
        "score": np.round(score, 4),
        "decision": decision,
        "candidates": cand_text,
        "conf": meta["conf"],
        "burst": burst_name,
        "occasion": pd.array(occasion, dtype="Int64"),
        "flank_link": flank,
    }, columns=MATCH_COLUMNS)
    ok = table[meta["valid"].to_numpy()].reset_index(drop=True)

    # --- write -----------------------------------------------------------------------------------------
    files = {"matches": out / "matches.csv", "decisions": out / "decisions.csv", "errors": out / "errors.csv",
             "review": out / "review.html"}
    ok.to_csv(files["matches"], index=False)
    files["decisions"] = _write_decisions(ok, files["decisions"], notes_run)
    from .io import write_errors

    write_errors(errors, out, command="census")
    _write_run_info(out / "census.json", detections=detections, root=base, gallery_path=gallery_path,
                    method=method, date_order=date_order)
    written, notes = exp.write_exports(
        ok, out, formats=formats, cameras=cams, operation=operation, session=session, season_start=start_day,
        occasion_days=occasion_days, covariates=covariates, append_to=append_to, root=base, utc_offset=utc_offset,
        species=species, method=method, cameras_name=cameras_name)
    files.update(written)
    review_meta = meta[meta["valid"]].reset_index(drop=True)
    keep_map = {int(i): j for j, i in enumerate(good)}
    write_review(
        files["review"], ok, review_meta,
        cand=[cand_list[i] for i in good],
        local={keep_map[i]: f for i, f in kept_local.items() if i in keep_map},
        gallery=gallery, gallery_path=gallery_path, bases=[base, Path.cwd()],
        columns=[*DECISION_COLUMNS, "side", "camera", "datetime"], summary=_review_summary(ok, thr, (lo, hi), errors),
        notes=notes, cams=cams, pictured=review_images,
    )
    dec = ok["decision"].value_counts().to_dict()
    counts.update({
        "detections": int(len(ok)), "known": int(dec.get("known", 0)), "new": int(dec.get("new", 0)),
        "uncertain": int(dec.get("uncertain", 0)), "bursts": int(n_groups),
        "new_individuals": len(new_names), "errors": len(errors),
    })
    return CensusResult(detections=ok, out=out, files=files, errors=errors, counts=counts,
                        seconds=time.perf_counter() - t0, notes=notes_run)


def _detection_rows(
    dets: Sequence[Mapping[str, Any]], base: Path, sight: Mapping[str, Any], errors: list[Any], notes: list[str]
) -> list[dict[str, Any]]:
    """One row per usable detection: its image's size from the header, the box in pixels, and the sighting's
    camera, date and side (else EXIF date and folder name, which ``notes`` then reports). Unreadable images
    and boxes off the image go to ``errors``; when no image at all could be read, :class:`CensusError`
    says where the census looked."""
    info: dict[str, Any] = {}
    rows = []
    used_sightings: set[str] = set()
    without_sighting: set[str] = set()
    for d in dets:
        path = d["path"]
        src = Path(path) if Path(path).is_absolute() else base / _norm_path(path)
        if path not in info:
            try:
                info[path] = _image_info(src)
            except (OSError, ValueError) as err:
                info[path] = err
                errors.append(_err(path, str(err) or type(err).__name__))
        got = info[path]
        if isinstance(got, Exception):
            continue
        size, exif_dt = got
        box = _pixel_box(d["box"], d["box_format"], size)
        if box is None:
            reason = f"detection {d['det']}: bbox {d['box']} lies outside the {size[0]}x{size[1]} image"
            errors.append(_err(path, reason))
            continue
        s = sight.get(_norm_path(path)) or sight.get(str(src.resolve())) or {}
        if s:
            used_sightings.add(_norm_path(path) if _norm_path(path) in sight else str(src.resolve()))
        elif sight:
            without_sighting.add(path)
        camera = s.get("camera") or (Path(_norm_path(path)).parent.name or None)
        rows.append({
            "path": path, "source": str(src), "det": d["det"], "conf": d["conf"], "bbox": box,
            "camera": camera, "dt": s.get("datetime") or exif_dt, "side": s.get("side", "unknown"),
        })
    notes += _sighting_notes(sight, used_sightings, without_sighting)
    if dets and not rows:
        raise CensusError(_nothing_read(dets, base, errors))
    return rows


#: The score range of each method, for checking a threshold before anything is scored.
_SCALES = {"fused": (0.0, 1.0), "global": (-1.0, 1.0), "local": (0.0, math.inf)}


def _check_threshold(method: str, threshold: float | None) -> None:
    if method not in _SCALES:
        raise CensusError(f"unknown method {method!r}; choose one of {', '.join(_SCALES)}")
    if threshold is None:
        return
    lo, hi = _SCALES[method]
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and lo <= threshold <= hi):
        scale = {"fused": "a probability P(same) between 0 and 1", "global": "a cosine between -1 and 1",
                 "local": "a keypoint score >= 0"}[method]
        raise CensusError(f"new_threshold {threshold!r} is off the {method} method's scale ({scale})")


def _sighting_notes(sight: Mapping[str, Any], used: set[str], without: set[str]) -> list[str]:
    """Say which sightings rows matched no detection and which detections fell back to EXIF date and folder."""
    notes = []
    unused = sorted(set(sight) - used)
    if unused:
        notes.append(f"{len(unused)} sightings row(s) match no detection (paths as in the detections file?): "
                     + ", ".join(unused[:5]) + (" ..." if len(unused) > 5 else ""))
    if without:
        listed = sorted(without)
        notes.append(f"{len(listed)} image(s) have no sightings row: their date is the EXIF date and their camera "
                     "the folder name: " + ", ".join(listed[:5]) + (" ..." if len(listed) > 5 else ""))
    return notes


def _nothing_read(dets: Sequence[Mapping[str, Any]], base: Path, errors: Sequence[Any]) -> str:
    first = str(dets[0]["path"])
    reason = getattr(errors[-1], "reason", "") if errors else ""
    return (f"none of the {len({d['path'] for d in dets})} image(s) of the detections could be read: looked in "
            f"{base} (e.g. {base / _norm_path(first)}: {reason or 'unreadable'}); give the folder the "
            "detections' paths are relative to with --root")


def _write_run_info(path: Path, **info: Any) -> None:
    """``census.json``: where this census found its images, so ``apply-review`` finds them too."""
    gp = info.pop("gallery_path")
    det = info.pop("detections")
    data = {"root": str(Path(info.pop("root")).resolve()),
            "detections": str(Path(det).resolve()) if isinstance(det, (str, os.PathLike)) else None,
            "gallery": str(gp.resolve()) if gp is not None else None, **info}
    path.write_text(json.dumps(data, indent=1) + "\n")


def _say(text: str) -> None:
    import sys

    print(text, file=sys.stderr, flush=True)


def _review_summary(table: pd.DataFrame, threshold: float, band: tuple[float, float], errors: Sequence[Any]) -> str:
    """The review page's one-line account of the census: counts, threshold and skipped inputs."""
    counts = table["decision"].value_counts().to_dict()
    return (f"{len(table)} detections: {counts.get('uncertain', 0)} uncertain, {counts.get('new', 0)} new, "
            f"{counts.get('known', 0)} known; P(same) threshold {threshold:.2f}, uncertain band "
            f"[{band[0]:.2f}, {band[1]:.2f}); {len(errors)} input(s) skipped (errors.csv).")


def _tty() -> bool:
    import sys

    return sys.stderr.isatty()


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


def _cluster_new(
    unmatched: list[int],
    members: list[list[int]],
    emb: Mapping[int, np.ndarray],
    local: Mapping[int, Any],
    det_sides: Sequence[str],
    matcher: Any,
    thr: float,
    linkage: str,
    show: bool = False,
) -> dict[int, int]:
    """Agglomerative clustering of unmatched bursts on fused P(same); returns burst -> cluster label."""
    import numpy as np
    from tqdm.auto import tqdm

    if len(unmatched) <= 1:
        return {g: 0 for g in unmatched}
    from sklearn.cluster import AgglomerativeClustering

    from .embed import Features
    from .gallery import Gallery as _G
    from .match import Matcher

    dets = [i for g in unmatched for i in members[g]]
    owner = np.array([k for k, g in enumerate(unmatched) for _ in members[g]])
    e = np.stack([emb[i] for i in dets])
    loc = [local[i] for i in dets] if matcher.method != "global" else None
    sides = [str(det_sides[i]) for i in dets]
    import pandas as pd

    tmp = _G.from_embeddings(e, [f"u{k}" for k in range(len(dets))], local=loc,
                             metadata=pd.DataFrame({"path": [str(i) for i in dets], "side": sides}))
    m = Matcher(method=matcher.method, calibration=matcher.calibration_, shortlist=matcher.shortlist).fit(tmp)
    n = len(dets)
    sim = np.zeros((n, n), np.float32)
    bar = tqdm(total=n, desc="clustering new", unit="det", disable=not show)  # n x n pair scores
    for s in range(0, n, 256):
        idx = list(range(s, min(n, s + 256)))
        f = Features(names=[str(dets[i]) for i in idx], embeddings=e[idx], local=[loc[i] for i in idx] if loc else None,
                     valid=np.ones(len(idx), bool), sides=[sides[i] for i in idx])
        final = m.scores(f, exclude=idx).final
        sim[idx] = np.where(np.isfinite(final), final, -np.inf)
        bar.update(len(idx))
    bar.close()
    np.fill_diagonal(sim, np.inf)
    sim = np.maximum(sim, sim.T)
    # burst-level similarity: the best pair of their detections (dets are listed burst by burst)
    starts = np.flatnonzero(np.r_[True, np.diff(owner) != 0])
    gsim = np.maximum.reduceat(np.maximum.reduceat(sim, starts, axis=0), starts, axis=1)
    np.fill_diagonal(gsim, np.inf)
    labels = AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage=linkage,
        distance_threshold=float(_distance(np.array([thr]), matcher.method)[0]),
    ).fit_predict(_distance(gsim, matcher.method))
    return {g: int(lab) for g, lab in zip(unmatched, labels)}


def _distance(score: np.ndarray, method: str) -> np.ndarray:
    """A non-negative distance that falls as the method's score rises, on every method's scale (fused P in
    [0, 1], cosine in [-1, 1], keypoint score >= 0); -inf (not comparable) is the farthest, +inf is 0.
    ``1 - threshold`` would be negative for a keypoint-score threshold (and crash the clustering)."""
    import numpy as np

    if method == "local":
        return 1.0 / (1.0 + np.clip(np.nan_to_num(score, nan=0.0, posinf=np.inf, neginf=0.0), 0.0, np.inf))
    lo = -1.0 if method == "global" else 0.0
    return 1.0 - np.clip(np.nan_to_num(score, nan=lo, posinf=1.0, neginf=lo), lo, 1.0)


# ---------------------------------------------------------------------------------------------- writers


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
    with open(path, "w", newline="", encoding="utf-8") as fh:
        fh.write(text)
    return path


# ---------------------------------------------------------------------------------------------- review
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

    from .embed import Embedder
    from .gallery import Gallery
    from .io import ImageError, Record, parse_bbox, parse_side

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
    recs = [Record(name=p, source=Path(p) if Path(p).is_absolute() else base / _norm_path(p), bbox=b, side=s)
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


# ---------------------------------------------------------------------------------------------- CLI
def register_cli(sub: Any) -> None:
    """Add ``census`` (and ``census apply-review``) to the ``leopard-reid`` sub-parsers."""
    from .cli import _Formatter, file_path, folder_path, fraction, non_negative_float, positive_float, positive_int

    p = sub.add_parser(
        "census",
        help="identify a season's MegaDetector detections; write matches, capture histories and a review page",
        description="Run a census: leopard-reid census --detections MD.json --gallery G --out DIR ... ; "
        "then apply the reviewed decisions: leopard-reid census apply-review DIR/decisions.csv --gallery G",
        formatter_class=_Formatter,
    )
    p.add_argument("--detections", type=file_path,
                   help="MegaDetector output JSON (batch format or the older list layout)")
    p.add_argument("--root", default=None, type=folder_path, help="folder the JSON's relative paths are relative "
                   "to (default: the JSON's folder)")
    p.add_argument("--gallery", type=file_path, help="gallery of known individuals")
    p.add_argument("--sightings", default=None, type=file_path, help="CSV path,camera,datetime[,side] "
                   "(default: EXIF date, parent folder as camera)")
    p.add_argument("--cameras", default=None, type=file_path, help="CSV camera,x,y[,usage][,station] for traps.txt")
    p.add_argument("--out", type=folder_path, help="output folder")
    p.add_argument("--min-conf", type=fraction, default=0.2, help="MegaDetector confidence below which a "
                   "detection is dropped")
    p.add_argument("--occasion-days", type=positive_float, default=1, help="length of a sampling occasion")
    p.add_argument("--burst-seconds", type=non_negative_float, default=60,
                   help="detections of one camera and flank this close in time are one visit")
    p.add_argument("--pair-seconds", type=non_negative_float, default=10,
                   help="simultaneity window for flank links")
    p.add_argument("--linkage", choices=("average", "single", "complete"), default="average",
                   help="how unmatched detections are clustered into provisional new individuals")
    p.add_argument("--season-start", default=None, help="first day of occasion 1 (default: first detection's)")
    p.add_argument("--date-order", choices=DATE_ORDERS, default=None,
                   help="how the sightings' a/b/yyyy dates read: dmy (day first) or mdy (US); required when "
                   "a date is ambiguous")
    p.add_argument("--method", choices=("global", "local", "fused"), default="fused", help="how photos are compared")
    p.add_argument("--new-threshold", type=float, default=None,
                   help="score below which a detection is new (default: the gallery's calibration)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images embedded at once")
    p.add_argument("--device", default=None, help="cpu, cuda... (default: CUDA when available)")
    p.add_argument("--review-images", type=int, default=None,
                   help="rows of review.html with pictures (default: all; the others are still reviewable)")
    p.add_argument("--export", default="secr", help="capture-history formats, comma-separated: secr, oscr, "
                   "camtrapr, camtrapdp, or all (default: %(default)s)")
    p.add_argument("--session", default="1", help="secr/oSCR session name of this season (default: %(default)s)")
    p.add_argument("--append-to", default=None, help="multi-session secr capthist file to add this session to "
                   "(its other sessions are kept)")
    p.add_argument("--camera-operation", default=None, help="camtrapR-style camera-operation CSV (camera, one "
                   "column per day YYYY-MM-DD, 0..1) for the usage; else the cameras table's usage or start/end")
    p.add_argument("--utc-offset", default="+00:00", help="time zone of the camera clocks, for Camtrap DP "
                   "timestamps (default: %(default)s)")
    p.add_argument("--species", default="Panthera pardus", help="scientific name for camtrapR and Camtrap DP "
                   "(default: %(default)s)")
    p.add_argument("--checkpoint", default=None, help="the fine-tuned checkpoint the gallery was built with")
    p.set_defaults(func=_cmd_census)
    inner = p.add_subparsers(dest="census_command", metavar="apply-review", required=False)
    a = inner.add_parser("apply-review", help="add the confirmed identities of decisions.csv to the gallery",
                         formatter_class=_Formatter)
    a.add_argument("decisions", type=file_path, help="the edited decisions.csv")
    a.add_argument("--gallery", dest="review_gallery", required=True, type=file_path, help="gallery file")
    a.add_argument("--root", dest="review_root", default=None, type=folder_path,
                   help="folder the detections' paths are relative to (default: the root the census recorded "
                   "in census.json beside the CSV, else the CSV's folder)")
    a.add_argument("--checkpoint", dest="review_checkpoint", default=None,
                   help="the fine-tuned checkpoint the gallery was built with")
    a.set_defaults(func=_cmd_apply_review)


def _cmd_census(args: Any) -> int:
    import sys

    from .cli import EXIT_FAIL, EXIT_OK, EXIT_SKIPPED, EXIT_USAGE, check_backbone
    from .embed import Embedder
    from .gallery import Gallery

    missing = [f"--{k}" for k in ("detections", "gallery", "out") if not getattr(args, k)]
    if missing:
        print(f"leopard-reid census: missing {', '.join(missing)} (or use: census apply-review DECISIONS "
              "--gallery G)", file=sys.stderr)
        return EXIT_USAGE
    gallery = Gallery.load(args.gallery)
    if not args.checkpoint:
        check_backbone(gallery.backbone or "efficientnet_lite0", gallery=args.gallery)
    embedder = Embedder(gallery.backbone or "efficientnet_lite0", checkpoint=args.checkpoint, device=args.device,
                        batch_size=args.batch_size, progress=False)
    res = run_census(
        args.detections, gallery=gallery, root=args.root, sightings=args.sightings, cameras=args.cameras,
        out=args.out, min_conf=args.min_conf, occasion_days=args.occasion_days, burst_seconds=args.burst_seconds,
        embedder=embedder, method=args.method, new_threshold=args.new_threshold, pair_seconds=args.pair_seconds,
        season_start=args.season_start, review_images=args.review_images, linkage=args.linkage,
        exports=args.export, session=args.session, append_to=args.append_to, camera_operation=args.camera_operation,
        utc_offset=args.utc_offset, species=args.species,
        date_order=args.date_order,
    )
    c = res.counts
    for note in res.notes:
        print(f"leopard-reid census: note: {note}", file=sys.stderr)
    print(f"{args.out}: {c['detections']} detections ({c['known']} known, {c['new']} new, {c['uncertain']} "
          f"uncertain), {c['new_individuals']} provisional new individual(s); open review.html")
    empty = _empty_capthist(res.files["capthist"])
    if empty:
        print(f"leopard-reid census: error: {res.files['capthist']} has no capture: {empty}", file=sys.stderr)
        return EXIT_FAIL
    if res.errors:
        from .cli import report_skipped

        report_skipped(res.errors)
        print(f"skipped {len(res.errors)} input(s); see {res.files['errors']}", file=sys.stderr)
        return EXIT_SKIPPED
    return EXIT_OK


def _empty_capthist(path: Path) -> str:
    """Why a written capture-history file holds no capture line ("" when it has some)."""
    lines = path.read_text().splitlines() if path.exists() else []
    if any(x.strip() and not x.startswith("#") for x in lines):
        return ""
    notes = [x.split("note: ", 1)[1] for x in lines if x.startswith("#") and "note: " in x]
    return "; ".join(notes) or "no detection has a date, a camera and a decided identity"


def _cmd_apply_review(args: Any) -> int:
    from .cli import EXIT_OK

    embedder = None
    if args.review_checkpoint:
        from .embed import Embedder

        embedder = Embedder(checkpoint=args.review_checkpoint, progress=False)
    s = apply_review(args.decisions, gallery=args.review_gallery, root=args.review_root, embedder=embedder)
    new = ", ".join(s["new_individuals"]) or "none"
    print(f"{args.review_gallery}: +{s['added']} exemplar(s), new individuals: {new}; {s['skipped']} row(s) "
          f"skipped; previous version kept as {args.review_gallery}.bak")
    return EXIT_OK
