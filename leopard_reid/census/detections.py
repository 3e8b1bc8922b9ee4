"""MegaDetector detections to pixel boxes on readable images.

:func:`read_detections` parses MegaDetector batch output (both published layouts); :func:`image_info` reads an
image's size and EXIF date from its header only; :func:`_pixel_box` turns a detection box into a pixel box
clipped to the image; :func:`_detection_rows` joins each detection with its sighting (camera, date, side),
reporting unreadable images and unmatched sightings. :func:`norm_path` is the one spelling of a relative image
path (also used by the review page and the Camtrap DP export).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .dates import _parse_datetime
from .results import CensusError

if TYPE_CHECKING:
    from ..io import ImageError

_DEFAULT_CATEGORIES = {"1": "animal", "2": "person", "3": "vehicle"}  # MegaDetector batch format
_LIST_CATEGORIES = {"0": "animal", "1": "person", "2": "vehicle"}  # list layout: model class ids


def norm_path(p: str) -> str:
    """A relative image path as the census compares it: forward slashes, no leading ``./``."""
    p = str(p).replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def _err(path: object, reason: str) -> ImageError:
    from ..io import ImageError

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


def image_info(path: Path) -> tuple[tuple[int, int], datetime | None]:
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


def _fmt_box(b: Sequence[int] | None) -> str:
    return "" if b is None else json.dumps([int(v) for v in b])


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
        src = Path(path) if Path(path).is_absolute() else base / norm_path(path)
        if path not in info:
            try:
                info[path] = image_info(src)
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
        s = sight.get(norm_path(path)) or sight.get(str(src.resolve())) or {}
        if s:
            used_sightings.add(norm_path(path) if norm_path(path) in sight else str(src.resolve()))
        elif sight:
            without_sighting.add(path)
        camera = s.get("camera") or (Path(norm_path(path)).parent.name or None)
        rows.append({
            "path": path, "source": str(src), "det": d["det"], "conf": d["conf"], "bbox": box,
            "camera": camera, "dt": s.get("datetime") or exif_dt, "side": s.get("side", "unknown"),
        })
    notes += _sighting_notes(sight, used_sightings, without_sighting)
    if dets and not rows:
        raise CensusError(_nothing_read(dets, base, errors))
    return rows


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
            f"{base} (e.g. {base / norm_path(first)}: {reason or 'unreadable'}); give the folder the "
            "detections' paths are relative to with --root")
