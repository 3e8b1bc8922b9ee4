"""The gallery file's safetensors layout: its header parsed strictly, its checksum read alone, and its arrays read
with the large ones left in place (:func:`arrays_in_place`, for ``Gallery.load(keypoints="disk")``).

A safetensors file is an 8-byte little-endian header length, a JSON header (each array's dtype, shape and
byte range in the data that follows; ``__metadata__``), then the arrays' raw bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class InFile:
    """An array of a gallery file left in place: where it is, what it is, and its SHA-256 as read."""

    path: Path
    at: int  # byte offset in the file
    dtype: np.dtype
    shape: tuple[int, ...]
    sha256: str


_ST_DTYPES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16", "U32": "uint32",
              "I32": "int32", "U64": "uint64", "I64": "int64", "F16": "float16", "F32": "float32", "F64": "float64"}


def parse_header(raw: bytes) -> dict[str, Any]:
    """The safetensors JSON header, parsed strictly as its specification says: a JSON object from the first
    byte, then only space (0x20) padding; so a changed padding byte is not absorbed as harmless whitespace."""
    if len(raw) < 8:
        raise ValueError("file too short")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError("header length beyond end of file")
    text = raw[8 : 8 + n].decode("utf-8")
    header, end = json.JSONDecoder().raw_decode(text)
    if text[end:].strip(" "):
        raise ValueError("unexpected bytes after the header")
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header


def read_checksum(path: Path) -> str | None:
    """The checksum a gallery file's header records (its header alone is read); None where unreadable."""
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(min(n, 1 << 30)).decode("utf-8"))
        return header["__metadata__"]["checksum"]
    except (OSError, ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError):
        return None


def read_head(path: Path) -> bytes:
    """The first bytes of a safetensors file: its header's length and the header."""
    with open(path, "rb") as fh:
        first = fh.read(8)
        if len(first) < 8:
            return first
        # a damaged length may be huge: never ask for more than the file holds
        return first + fh.read(min(struct.unpack("<Q", first)[0], os.fstat(fh.fileno()).st_size))


def arrays_in_place(path: Path, header: dict[str, Any], start: int, in_place: Sequence[str]) -> dict[str, Any]:
    """The arrays of a safetensors file from its parsed ``header`` (the data from byte ``start``: the length of
    :func:`read_head`): those named ``in_place`` as :class:`InFile` (hashed as they stream past, never held),
    the others read into memory."""
    specs = sorted((tuple(int(x) for x in spec["data_offsets"]), name, spec)
                   for name, spec in header.items() if name != "__metadata__")
    spans = [0] + [x for (begin, end), _, _ in specs for x in (begin, end)] + [path.stat().st_size - start]
    if spans[0::2] != spans[1::2]:  # as safetensors requires: the arrays tile the data, to the file's end
        raise ValueError("the arrays' bytes overlap, leave gaps or do not end with the file")
    out: dict[str, Any] = {}
    with open(path, "rb") as fh:
        for (begin, end), name, spec in specs:
            dtype, shape = np.dtype(_ST_DTYPES[spec["dtype"]]), tuple(int(d) for d in spec["shape"])
            if end - begin != dtype.itemsize * int(np.prod(shape)):
                raise ValueError(f"array {name!r}: {end - begin} bytes for shape {list(shape)} of {dtype}")
            fh.seek(start + begin)
            if name not in in_place:
                out[name] = np.frombuffer(fh.read(end - begin), dtype).reshape(shape)
                continue
            h, left = hashlib.sha256(), end - begin
            while left:
                block = fh.read(min(left, 1 << 24))
                if not block:
                    raise ValueError(f"array {name!r}: file truncated")
                h.update(block)
                left -= len(block)
            out[name] = InFile(path, start + begin, dtype, shape, h.hexdigest())
    return out
