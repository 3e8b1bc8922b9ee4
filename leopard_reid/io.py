"""Reading images and metadata tables, with errors a person can act on.

Camera-trap data is messy (truncated files on SD cards, text files named ``.jpg``, 16-bit TIFFs, CMYK scans,
panoramas). Every failure here becomes an :class:`ImageError` that names the file and a plain reason, so a
batch can report it and go on with the rest.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "BBox",
    "ImageError",
    "ImageInput",
    "MetadataError",
    "Record",
    "as_records",
    "load_image",
    "parse_bbox",
    "read_metadata",
]

BBox = tuple[int, int, int, int]
ImageInput = str | os.PathLike | Image.Image | np.ndarray
OnError = Literal["raise", "skip"]

#: Largest image accepted, in pixels (a 1.5-gigapixel panorama is refused before it is decoded).
MAX_PIXELS = 250_000_000
#: Smallest side, in pixels, of a crop that still carries a usable rosette pattern.
MIN_SIDE = 32
SIDES = ("left", "right", "unknown")


class ImageError(ValueError):
    """An image that cannot be used: ``str(err)`` is ``"<file>: <reason>"``."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # crosses DataLoader worker processes intact
        return (type(self), (self.path, self.reason))


class MetadataError(ValueError):
    """A metadata table that cannot be used (missing column, bad row...)."""


@dataclass(frozen=True)
class Record:
    """One image to process: where it comes from, what to call it, and its optional box and flank side."""

    name: str
    source: ImageInput
    bbox: BBox | None = None
    side: str = "unknown"


def parse_bbox(value: Any) -> BBox | None:
    """Parse an ``[x, y, w, h]`` box in absolute pixels; ``None``/empty/NaN means the whole image.

    Accepts a sequence of four numbers or a string such as ``"[10, 20, 300, 200]"`` or ``"10 20 300 200"``.
    Raises :class:`ValueError` with the reason for anything else.
    """
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text or text.lower() in {"nan", "none", "null"}:
            return None
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(f"bbox {text!r} is not a JSON list [x, y, w, h]") from err
        else:
            value = text.replace(",", " ").split()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError(f"bbox {value!r} must have four numbers [x, y, w, h]")
    try:
        nums = [float(v) for v in value]
    except (TypeError, ValueError) as err:
        raise ValueError(f"bbox {value!r} must have four numbers [x, y, w, h]") from err
    if not all(math.isfinite(v) for v in nums):
        raise ValueError(f"bbox {value!r} has a non-finite number")
    x, y, w, h = nums
    if w <= 0 or h <= 0:
        raise ValueError(f"bbox {value!r} must have positive width and height")
    if x + w <= 0 or y + h <= 0:
        raise ValueError(f"bbox {value!r} lies outside the image")
    return (round(x), round(y), max(1, round(w)), max(1, round(h)))


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (CMYK, palette, 16-bit, grey, alpha) to 8-bit RGB without clipping."""
    if img.mode == "RGB":
        return img
    if img.mode in {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}:
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def _from_array(arr: np.ndarray, name: str) -> Image.Image:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(name, f"array of shape {arr.shape} is not an HxW, HxWx3 or HxWx4 image")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    return _to_rgb(Image.fromarray(arr))


def load_image(
    source: ImageInput,
    *,
    bbox: BBox | Sequence[float] | str | None = None,
    reduce_to: int | None = None,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> Image.Image:
    """Load an image as 8-bit RGB, EXIF orientation applied, cropped to ``bbox`` (``[x, y, w, h]`` pixels).

    ``reduce_to``: the smallest side the crop needs downstream. JPEGs are then decoded at the largest
    1/2, 1/4 or 1/8 reduction that keeps the crop at least that size (draft mode), which makes cutting a box
    out of a 1080p frame several times cheaper. Raises :class:`ImageError` naming the file and the reason.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>"
    try:
        box = parse_bbox(bbox)
    except ValueError as err:
        raise ImageError(name, str(err)) from None
    if isinstance(source, np.ndarray):
        img = _from_array(source, name)
    elif isinstance(source, Image.Image):
        img = _to_rgb(ImageOps.exif_transpose(source) or source)
    else:
        img = _open_file(Path(source), box=box, reduce_to=reduce_to, max_pixels=max_pixels)
        box = _scale_box(box, img.info.get("leopard_reid_scale", 1.0))
    if box is not None:
        x, y, w, h = box
        left, top = max(0, x), max(0, y)
        right, bottom = min(img.width, x + w), min(img.height, y + h)
        if right - left < 1 or bottom - top < 1:
            raise ImageError(name, f"bbox {list(box)} lies outside the {img.width}x{img.height} image")
        img = img.crop((left, top, right, bottom))
    if max(img.size) < min_side or min(img.size) < min_side // 2:
        raise ImageError(
            name,
            f"too small to match ({img.width}x{img.height} px; needs {min_side} px on its longer side "
            f"and {min_side // 2} px on its shorter)",
        )
    return img


def _scale_box(box: BBox | None, scale: float) -> BBox | None:
    if box is None or scale == 1.0:
        return box
    x, y, w, h = box
    return (int(x * scale), int(y * scale), max(1, round(w * scale)), max(1, round(h * scale)))


def _open_file(path: Path, *, box: BBox | None, reduce_to: int | None, max_pixels: int) -> Image.Image:
    if not path.exists():
        raise ImageError(path, "file not found")
    if path.is_dir():
        raise ImageError(path, "is a folder, not an image")
    if path.stat().st_size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            if img.width * img.height > max_pixels:
                raise ImageError(
                    path, f"{img.width}x{img.height} px is larger than the {max_pixels:,} pixel limit"
                )
            scale = 1.0
            if reduce_to and img.format == "JPEG":
                orient = img.getexif().get(0x0112, 1)
                if orient in (1, None):  # draft coordinates are pre-rotation: only for upright files
                    bw, bh = (box[2], box[3]) if box else img.size
                    requested = (
                        max(1, math.ceil(img.width * reduce_to / max(1, min(bw, bh)))),
                        max(1, math.ceil(img.height * reduce_to / max(1, min(bw, bh)))),
                    )
                    full = img.size
                    img.draft("RGB", requested)
                    scale = img.size[0] / full[0]
            img.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(path, "not an image (unrecognised file format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(path, "larger than the pixel limit (possible decompression bomb)") from None
    except (OSError, SyntaxError, ValueError) as err:
        reason = str(err) or type(err).__name__
        if "truncated" in reason.lower() or "image file is" in reason.lower():
            reason = f"truncated or damaged ({reason})"
        raise ImageError(path, f"unreadable: {reason}") from None
    rgb = _to_rgb(ImageOps.exif_transpose(img) or img)
    rgb.info["leopard_reid_scale"] = scale
    return rgb


def _name_of(item: object, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    return f"<image {index}>"


def as_records(
    images: Iterable[ImageInput | Record] | pd.DataFrame, *, root: str | os.PathLike | None = None
) -> list[Record]:
    """Normalise the accepted inputs (paths, PIL images, arrays or a metadata DataFrame) to records.

    A DataFrame needs a ``path`` column; ``bbox`` and ``side`` are used when present. Relative paths are
    resolved against ``root``; ``Record.name`` keeps the path as given, for reports.
    """
    base = Path(root) if root is not None else None
    if isinstance(images, pd.DataFrame):
        if "path" not in images.columns:
            raise MetadataError("the table needs a 'path' column")
        boxes = images["bbox"].tolist() if "bbox" in images.columns else [None] * len(images)
        sides = images["side"].tolist() if "side" in images.columns else ["unknown"] * len(images)
        out = []
        for p, b, s in zip(images["path"].astype(str).tolist(), boxes, sides):
            src = Path(p) if base is None or Path(p).is_absolute() else base / p
            side = s if isinstance(s, str) and s in SIDES else "unknown"
            out.append(Record(name=p, source=src, bbox=_lenient_box(b), side=side))
        return out
    if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
        images = [images]
    out = []
    for i, item in enumerate(images):
        if isinstance(item, Record):
            out.append(item)
            continue
        src = item
        if isinstance(item, (str, os.PathLike)) and base is not None and not Path(item).is_absolute():
            src = base / item
        out.append(Record(name=_name_of(item, i), source=src))
    return out


def _lenient_box(value: Any) -> BBox | None:
    try:
        return parse_bbox(value)
    except ValueError:
        return None  # validated by read_metadata; a raw DataFrame's bad box is reported at load time


def read_metadata(
    csv: str | os.PathLike | pd.DataFrame,
    *,
    require: Sequence[str] = ("path",),
) -> pd.DataFrame:
    """Read and validate a metadata table (``path`` required; ``identity``, ``bbox``, ``side``, ``datetime``,
    ``camera`` optional; other columns are kept).

    Problems are reported all at once with CSV line numbers: missing columns, empty or duplicate paths,
    bad boxes, unknown sides. Returns a copy with ``bbox`` parsed to tuples (or ``None``) and ``side``
    normalised to ``left|right|unknown``.
    """
    name = "table"
    if isinstance(csv, pd.DataFrame):
        df = csv.copy()
    else:
        name = str(csv)
        try:
            df = pd.read_csv(csv, dtype=str, keep_default_na=False)
        except FileNotFoundError:
            raise MetadataError(f"{name}: file not found") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise MetadataError(f"{name}: not a readable CSV ({err})") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in require if c not in df.columns]
    if missing:
        raise MetadataError(f"{name}: missing column(s) {', '.join(missing)}; found {', '.join(df.columns)}")
    problems: list[str] = []
    df["path"] = df["path"].astype(str).str.strip()
    for i, p in enumerate(df["path"]):
        if not p or p.lower() == "nan":
            problems.append(f"line {i + 2}: empty path")
    dup = df["path"].duplicated(keep="first")
    for i in np.flatnonzero(dup.to_numpy()):
        first = int(np.flatnonzero((df["path"] == df["path"].iloc[i]).to_numpy())[0])
        problems.append(f"line {i + 2}: duplicate path {df['path'].iloc[i]!r} (first on line {first + 2})")
    if "identity" in df.columns:
        df["identity"] = df["identity"].astype(str).str.strip()
        if "identity" in require:
            for i, v in enumerate(df["identity"]):
                if not v or v.lower() == "nan":
                    problems.append(f"line {i + 2}: empty identity")
    if "bbox" in df.columns:
        boxes: list[BBox | None] = []
        for i, v in enumerate(df["bbox"].tolist()):
            try:
                boxes.append(parse_bbox(v))
            except ValueError as err:
                problems.append(f"line {i + 2}: {err}")
                boxes.append(None)
        df["bbox"] = pd.Series(boxes, index=df.index, dtype=object)
    if "side" in df.columns:
        sides = []
        for i, v in enumerate(df["side"].tolist()):
            s = str(v).strip().lower() if isinstance(v, str) else ""
            s = {"": "unknown", "l": "left", "r": "right", "nan": "unknown"}.get(s, s)
            if s not in SIDES:
                problems.append(f"line {i + 2}: unknown side {v!r} (use left, right or unknown)")
            sides.append(s)
        df["side"] = sides
    if problems:
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise MetadataError(f"{name}: " + "; ".join(problems[:20]) + more)
    return df.reset_index(drop=True)
