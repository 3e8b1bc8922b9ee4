"""Reading images and metadata tables, with errors a person can act on.

Camera-trap data is messy (truncated files on SD cards, text files named ``.jpg``, 16-bit TIFFs, CMYK scans,
panoramas). Every failure here becomes an :class:`ImageError` that names the file and a plain reason, so a
batch can report it and go on with the rest.
"""

from __future__ import annotations

import contextlib
import csv as _csv
import io as _io
import json
import math
import os
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
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
    "cell_text",
    "load_image",
    "parse_bbox",
    "parse_side",
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


def _is_missing(value: Any) -> bool:
    """None, NaN, ``pd.NA``, ``NaT``: an absent value (never raises, whatever ``value`` is)."""
    if value is None:
        return True
    if isinstance(value, (str, bytes, list, tuple, dict, set, np.ndarray)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def parse_bbox(value: Any) -> BBox | None:
    """Parse an ``[x, y, w, h]`` box in absolute pixels; ``None``/empty/NaN means the whole image.

    Accepts a sequence of four numbers or a string such as ``"[10, 20, 300, 200]"`` or ``"10 20 300 200"``.
    Coordinates are rounded to whole pixels (width and height at least 1); the rounded box must overlap the
    positive quadrant. Raises :class:`ValueError` with the reason for anything else (never another error).
    ``parse_bbox(parse_bbox(v)) == parse_bbox(v)`` for every accepted ``v``.
    """
    if _is_missing(value):
        return None
    original = value
    if isinstance(value, str):
        text = value.strip()
        if not text or text.lower() in {"nan", "none", "null"}:
            return None
        if text.startswith("["):
            try:
                value = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as err:
                raise ValueError(f"bbox {_short(original)} is not a JSON list [x, y, w, h]") from err
        else:
            value = text.replace(",", " ").split()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    shown = _short(original if isinstance(original, str) else value)
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError(f"bbox {shown} must have four numbers [x, y, w, h]")
    try:
        nums = [float(v) for v in value]
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"bbox {shown} must have four numbers [x, y, w, h]") from err
    if not all(math.isfinite(v) for v in nums):
        raise ValueError(f"bbox {shown} has a non-finite number")
    x, y, w, h = nums
    if w <= 0 or h <= 0:
        raise ValueError(f"bbox {shown} must have positive width and height")
    box = (round(x), round(y), max(1, round(w)), max(1, round(h)))
    if box[0] + box[2] <= 0 or box[1] + box[3] <= 0:
        raise ValueError(f"bbox {shown} lies outside the image (left of or above it)")
    return box


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not turn a ValueError into something else
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (CMYK, palette, 16-bit, 32-bit, float, grey, alpha) to 8-bit RGB without clipping.

    16-bit images are scaled by 255/65535 (not clipped); alpha is dropped (the colour under it is kept).
    """
    if img.mode == "RGB":
        return img
    if img.mode in {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}:
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(arr.max(initial=0))
        if img.mode.startswith("I;16") or (img.mode == "I" and top > 255):
            hi = 65535.0 if top <= 65535 else top
        elif img.mode == "F" and top <= 1.0:
            hi = 1.0
        else:
            hi = 255.0 if top <= 255 else top
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if img.mode in {"RGBA", "RGBa", "LA", "La", "PA"} or (img.mode == "P" and "transparency" in img.info):
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def _from_array(arr: np.ndarray, name: str) -> Image.Image:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(name, f"array of shape {arr.shape} is not an HxW, HxWx3 or HxWx4 image")
    if min(arr.shape[:2]) < 1:
        raise ImageError(name, f"empty image (array of shape {arr.shape})")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise ImageError(name, f"array of dtype {arr.dtype} is not an image")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = (arr.astype(np.float64) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
    elif arr.dtype != np.uint8:
        floating = np.issubdtype(arr.dtype, np.floating)
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if floating and float(arr.max(initial=0)) <= 1.0:  # floats in [0, 1]
            arr = arr * 255.0
        arr = np.clip(arr + 0.5, 0, 255).astype(np.uint8)
    return _to_rgb(Image.fromarray(np.ascontiguousarray(arr)))


def load_image(
    source: ImageInput,
    *,
    bbox: BBox | Sequence[float] | str | None = None,
    reduce_to: int | None = None,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> Image.Image:
    """Load an image as 8-bit RGB, EXIF orientation applied, cropped to ``bbox`` (``[x, y, w, h]`` pixels).

    The box is in the coordinates of the upright (EXIF-rotated) image, as annotation tools show it.
    ``reduce_to``: the smallest side the crop needs downstream. JPEGs are then decoded at the largest
    1/2, 1/4 or 1/8 reduction that keeps the crop at least that size (draft mode), which makes cutting a box
    out of a 1080p frame several times cheaper. Every failure (missing, empty, not an image, truncated,
    too small, over ``max_pixels``, bad box...) raises :class:`ImageError` naming the file and the reason.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>"
    try:
        box = parse_bbox(bbox)
    except ValueError as err:
        raise ImageError(name, str(err)) from None
    scale, full = 1.0, None
    if isinstance(source, np.ndarray):
        img = _from_array(source, name)
    elif isinstance(source, Image.Image):
        try:
            img = _to_rgb(_upright(source))
        except Exception as err:  # e.g. a lazily opened file that turns out to be truncated
            raise ImageError(name, _reason(err)) from None
    elif isinstance(source, (str, os.PathLike)):
        img, scale, full = _open_file(Path(source), box=box, reduce_to=reduce_to, max_pixels=max_pixels)
    else:
        raise ImageError(name, "not a file path, PIL image or numpy array")
    if box is not None:
        x, y, w, h = _scale_box(box, scale)
        left, top = max(0, x), max(0, y)
        right, bottom = min(img.width, x + w), min(img.height, y + h)
        if right - left < 1 or bottom - top < 1:
            fw, fh = full or img.size
            raise ImageError(name, f"bbox {list(box)} lies outside the {fw}x{fh} image")
        img = img.crop((left, top, right, bottom))
    # judged at full resolution (draft decoding keeps the crop at least ``reduce_to`` px anyway)
    w_full, h_full = (round(img.width / scale), round(img.height / scale)) if scale != 1.0 else img.size
    if max(w_full, h_full) < min_side or min(w_full, h_full) < min_side // 2:
        raise ImageError(
            name,
            f"too small to match ({w_full}x{h_full} px; needs {min_side} px on its longer side "
            f"and {min_side // 2} px on its shorter)",
        )
    return img


def _scale_box(box: BBox, scale: float) -> BBox:
    if scale == 1.0:
        return box
    x, y, w, h = box
    return (int(x * scale), int(y * scale), max(1, round(w * scale)), max(1, round(h * scale)))


class _Quiet:
    """Warnings ignored while any thread is inside (:data:`quiet_warnings`). ``warnings.catch_warnings`` is not safe
    across threads: when two threads' blocks overlap, each restores the filters it found, and the last to
    leave can restore the other's "ignore" for the whole process. Here the first thread in saves the filters
    and the last one out restores them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.saved: Any = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self.lock:
            if self.inside == 0:
                self.saved = warnings.catch_warnings()
                self.saved.__enter__()
                warnings.simplefilter("ignore")
            self.inside += 1
        try:
            yield
        finally:
            with self.lock:
                self.inside -= 1
                if self.inside == 0:
                    self.saved.__exit__(None, None, None)
                    self.saved = None


#: ``with quiet_warnings():`` ignores warnings, safely when several threads do so at once (describe decodes on
#: a thread per core; a Dask worker may run several tasks): Pillow's while an image is decoded, and more.
quiet_warnings = _Quiet()

_ORIENTATION = 0x0112


def _orientation(img: Image.Image) -> int | None:
    """The EXIF orientation (1 = upright), or None when the EXIF block cannot be read."""
    try:
        with quiet_warnings():  # "Corrupt EXIF data"
            value = img.getexif().get(_ORIENTATION, 1)
        return int(value) if value in range(1, 9) else 1
    except Exception:  # a damaged EXIF block: the pixels may still be fine
        return None


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; an image with damaged EXIF is used as stored."""
    if _orientation(img) in (1, None):
        return img
    try:
        with quiet_warnings():
            return ImageOps.exif_transpose(img) or img
    except Exception:
        return img


def _reason(err: BaseException) -> str:
    """A plain reason for a decoding failure."""
    if isinstance(err, MemoryError):
        return "too large to decode (out of memory)"
    text = str(err) or type(err).__name__
    low = text.lower()
    if "truncated" in low or "image file is" in low or "broken" in low or "premature" in low:
        return f"truncated or damaged file ({text})"
    if isinstance(err, PermissionError):
        return "permission denied"
    return f"damaged or unsupported image ({type(err).__name__}: {text})"


def _open_file(
    path: Path, *, box: BBox | None, reduce_to: int | None, max_pixels: int
) -> tuple[Image.Image, float, tuple[int, int]]:
    """Decode ``path`` to upright RGB; returns ``(image, draft_scale, full_upright_size)``."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except OSError as err:  # name too long, broken link loop, unreadable folder...
        raise ImageError(path, f"cannot access file ({err.strerror or err})") from None
    if path.is_dir():
        raise ImageError(path, "is a folder, not an image")
    if st.st_size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    img = None
    try:
        with quiet_warnings():
            # Pillow's own bomb warning (at ~89 Mpx) is replaced by the ``max_pixels`` check below (Pillow
            # still refuses outright anything over twice its limit); "Corrupt EXIF data" is not our concern.
            img = Image.open(path)
        if img.width * img.height > max_pixels:
            raise ImageError(
                path,
                f"larger than the pixel limit: {img.width}x{img.height} px is over {max_pixels:,} pixels "
                "(possible decompression bomb)",
            )
        orient = _orientation(img)
        full = img.size if orient not in (5, 6, 7, 8) else img.size[::-1]
        scale = 1.0
        if reduce_to and img.format == "JPEG" and orient == 1:  # draft coordinates are pre-rotation
            bw, bh = (box[2], box[3]) if box else img.size
            requested = (
                max(1, math.ceil(img.width * reduce_to / max(1, min(bw, bh)))),
                max(1, math.ceil(img.height * reduce_to / max(1, min(bw, bh)))),
            )
            img.draft("RGB", requested)
            scale = img.size[0] / full[0]
        with quiet_warnings():  # e.g. "Corrupt EXIF data": the pixels are what matter
            img.load()
            rgb = _to_rgb(_upright(img))
    except ImageError:
        _close(img)
        raise
    except UnidentifiedImageError:
        _close(img)
        raise ImageError(path, "not an image (unrecognised file format)") from None
    except Image.DecompressionBombError:
        _close(img)
        raise ImageError(path, "larger than the pixel limit (possible decompression bomb)") from None
    except Exception as err:  # OSError, SyntaxError, ValueError, struct.error, MemoryError... on bad files
        _close(img)
        raise ImageError(path, _reason(err)) from None
    if rgb is not img:
        _close(img)
    return rgb, scale, full


def _close(img: Image.Image | None) -> None:
    if img is not None:
        with contextlib.suppress(Exception):
            img.close()


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
        table = read_metadata(images, require=("path",))  # the one validator: bad boxes and sides are named
        boxes = table["bbox"].tolist() if "bbox" in table.columns else [None] * len(table)
        sides = table["side"].tolist() if "side" in table.columns else ["unknown"] * len(table)
        out = []
        for p, b, s in zip(table["path"], boxes, sides):
            src = Path(p) if base is None or Path(p).is_absolute() else base / p
            out.append(Record(name=p, source=src, bbox=b, side=s))
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


#: Columns the library understands; matched case-insensitively in a CSV header ("Path" is ``path``).
KNOWN_COLUMNS = ("path", "identity", "bbox", "side", "datetime", "camera")
_SIDE_ALIASES = {"": "unknown", "l": "left", "r": "right", "nan": "unknown", "none": "unknown"}


def cell_text(value: Any) -> str:
    """A table cell as stripped text; None/NaN/NA are empty.

    Shared by every table reader (metadata here, the census's sightings and cameras) so a blank, a NaN
    from pandas and a ``None`` all read as "no value" the same way.
    """
    return "" if _is_missing(value) else str(value).strip()


def _side(value: Any) -> str | None:
    """``left``/``right``/``unknown`` (accepting L, R, Left, any case, empty), or None when unrecognised."""
    s = cell_text(value).lower()
    s = _SIDE_ALIASES.get(s, s)
    return s if s in SIDES else None


def parse_side(value: Any) -> str:
    """The flank side of ``value`` as ``left``, ``right`` or ``unknown`` (L, R, Left, any case; empty or NaN is
    unknown). Raises :class:`ValueError` naming the value otherwise, so a typo is never read as unknown.
    The one side parser of metadata tables, galleries, census tables and decisions files."""
    s = _side(value)
    if s is None:
        raise ValueError(f"unknown side {_short(value, 40)} (use left, right or unknown)")
    return s


def _read_csv(path: Path, name: str) -> tuple[pd.DataFrame, list[str], list[tuple[int, str]]]:
    """Parse a CSV file as text; returns ``(table, where, problems)`` with ``where[i]`` = ``"line N"`` of row i.

    Line numbers are the file's own (blank lines and quoted multi-line fields counted), so a person can
    go straight to the row. The delimiter is ``,`` unless the header has none and has ``;`` or a tab.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise MetadataError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise MetadataError(f"{name}: is a folder, not a CSV file") from None
    except UnicodeDecodeError as err:
        raise MetadataError(
            f"{name}: not UTF-8 text (byte {err.start} cannot be decoded); save it as 'CSV UTF-8'"
        ) from None
    except OSError as err:
        raise MetadataError(f"{name}: cannot read ({err.strerror or err})") from None
    if not text.strip():
        raise MetadataError(f"{name}: empty file (no header line)")
    first = text.lstrip("\r\n").splitlines()[0]
    delimiter = ","
    if "," not in first:
        delimiter = next((d for d in (";", "\t") if d in first), ",")
    from io import StringIO

    reader = _csv.reader(StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[list[str]] = []
    where: list[str] = []
    problems: list[tuple[int, str]] = []
    previous = 0
    try:
        for record in reader:
            start, previous = previous + 1, reader.line_num
            if not any(field.strip() for field in record):  # blank line, or a row of empty cells
                continue
            if header is None:
                header = [field.strip() for field in record]
                continue
            rows.append(record)
            where.append(f"line {start}")
    except _csv.Error as err:
        raise MetadataError(f"{name}: line {reader.line_num}: not valid CSV ({err})") from None
    assert header is not None
    n = len(header)
    fixed = []
    for i, (w, record) in enumerate(zip(where, rows)):
        if len(record) > n and any(f.strip() for f in record[n:]):
            problems.append((i, f"{w}: {len(record)} fields, but the header has {n}"))
        fixed.append((record + [""] * n)[:n])
    return pd.DataFrame(fixed, columns=header), where, problems


def read_metadata(
    csv: str | os.PathLike | pd.DataFrame,
    *,
    require: Sequence[str] = ("path",),
) -> pd.DataFrame:
    """Read and validate a metadata table (``path`` required; ``identity``, ``bbox``, ``side``, ``datetime``,
    ``camera`` optional; other columns are kept).

    Problems are reported all at once (the first 20) with the CSV's line numbers (``row i`` for a
    DataFrame): missing or repeated columns, rows with too many fields, empty or duplicate paths (also
    ``a/b.jpg`` vs ``./a/b.jpg``), empty identities (when required), bad boxes, unknown sides. Known column
    names are matched case-insensitively. Returns a copy with text cells stripped, ``bbox`` parsed to tuples
    (or ``None``) and ``side`` normalised to ``left|right|unknown``. Raises :class:`MetadataError`.
    """
    if isinstance(csv, pd.DataFrame):
        name = "table"
        df = csv.copy().reset_index(drop=True)
        where = [f"row {i}" for i in range(len(df))]
        problems: list[tuple[int, str]] = []
    else:
        name = str(csv)
        df, where, problems = _read_csv(Path(csv), name)
    columns = [str(c).strip() for c in df.columns]
    present = set(columns)
    for i, c in enumerate(columns):  # "Path" -> "path", unless both are there
        if c.lower() in KNOWN_COLUMNS and c != c.lower() and c.lower() not in present:
            present.add(c.lower())
            columns[i] = c.lower()
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise MetadataError(f"{name}: column(s) {', '.join(map(repr, repeated))} appear more than once in the header")
    df.columns = columns
    missing = [c for c in require if c not in df.columns]
    if missing:
        raise MetadataError(
            f"{name}: missing column(s) {', '.join(missing)}; found {', '.join(map(repr, columns)) or 'none'}"
        )
    if "path" in df.columns:
        df["path"] = [cell_text(v) for v in df["path"]]
        problems += [(i, f"{where[i]}: empty path") for i, p in enumerate(df["path"]) if not p]
    if "identity" in df.columns:
        df["identity"] = [cell_text(v) for v in df["identity"]]
        if "identity" in require:
            problems += [(i, f"{where[i]}: empty identity") for i, v in enumerate(df["identity"]) if not v]
    if "bbox" in df.columns:
        boxes: list[BBox | None] = []
        for i, v in enumerate(df["bbox"].tolist()):
            try:
                boxes.append(parse_bbox(v))
            except ValueError as err:
                problems.append((i, f"{where[i]}: {err}"))
                boxes.append(None)
        df["bbox"] = pd.Series(boxes, index=df.index, dtype=object)
    if "path" in df.columns:  # one photo may hold two animals: a duplicate is the same path and box
        first_seen: dict[tuple[str, Any], int] = {}
        boxes_of = df["bbox"].tolist() if "bbox" in df.columns else [None] * len(df)
        for i, (p, b) in enumerate(zip(df["path"], boxes_of)):
            key = (os.path.normpath(p), b)
            if not p:
                continue
            if key in first_seen:
                box = f" with bbox {list(b)}" if b is not None else ""
                problems.append((i, f"{where[i]}: duplicate path {p!r}{box} (first on {where[first_seen[key]]})"))
            else:
                first_seen[key] = i
    if "side" in df.columns:
        sides = []
        for i, v in enumerate(df["side"].tolist()):
            s = _side(v)
            if s is None:
                problems.append((i, f"{where[i]}: unknown side {_short(v, 40)} (use left, right or unknown)"))
            sides.append(s or "unknown")
        df["side"] = sides
    if problems:
        listed = [text for _, text in sorted(problems, key=lambda p: p[0])]  # in file order
        more = f" (and {len(listed) - 20} more)" if len(listed) > 20 else ""
        raise MetadataError(f"{name}: " + "; ".join(listed[:20]) + more)
    return df.reset_index(drop=True)


ERRORS_FILE = "errors.csv"


def write_errors(errors: Sequence[Any], folder: str | os.PathLike, *, command: str) -> Path | None:
    """Record the inputs ``command`` skipped in ``<folder>/errors.csv`` (``path, reason, command``).

    The one writer of that file: rows of other commands (an ``enroll`` and a ``match`` writing into one
    folder) are kept, this command's earlier rows are replaced, and the file is removed only when no row
    is left. Returns the file's path, or None when this command skipped nothing.
    """
    out = Path(folder) / ERRORS_FILE
    kept: list[list[str]] = []
    if out.exists():
        try:
            with open(out, newline="", encoding="utf-8") as fh:
                rows = list(_csv.reader(fh))
        except (OSError, UnicodeDecodeError, _csv.Error):
            rows = []
        for row in rows[1:]:
            row = (row + ["", "", ""])[:3]
            if row[2] != command:
                kept.append(row)
    new = [[getattr(e, "path", ""), getattr(e, "reason", str(e)), command] for e in errors]
    if not kept and not new:
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    from .files import atomic_write

    buf = _io.StringIO(newline="")
    w = _csv.writer(buf)
    w.writerow(["path", "reason", "command"])
    w.writerows(kept + new)
    atomic_write(out, buf.getvalue().encode("utf-8"))
    return out if new else None
