"""Image loading and metadata validation: every bad input becomes a clear, named error; odd formats convert right."""

from __future__ import annotations

import csv
import io
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from leopard_reid.io import ImageError, MetadataError, as_records, load_image, parse_bbox, read_metadata
from tests.conftest import spots

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------------- helpers


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A 100-byte PNG whose header claims ``width x height`` RGB pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def blocks(h: int = 48, w: int = 64) -> np.ndarray:
    """An asymmetric pattern of flat 16 px blocks (survives JPEG almost exactly); no symmetry maps it to itself."""
    colours = np.array(
        [[220, 30, 30], [30, 200, 30], [30, 30, 220], [230, 230, 40], [40, 220, 220], [200, 40, 200],
         [250, 250, 250], [10, 10, 10], [128, 64, 0], [0, 96, 160], [160, 160, 160], [90, 0, 40]],
        np.uint8,
    )
    idx = np.arange((h // 16) * (w // 16)).reshape(h // 16, w // 16) % len(colours)
    return np.kron(colours[idx].transpose(2, 0, 1), np.ones((16, 16), np.uint8)).transpose(1, 2, 0).copy()


def save_jpeg(arr: np.ndarray, path: Path, **kw) -> Path:
    Image.fromarray(arr).save(path, "JPEG", quality=100, subsampling=0, **kw)
    return path


def close(a: Image.Image | np.ndarray, b: np.ndarray, tol: float = 4.0) -> bool:
    a = np.asarray(a, dtype=np.float64)
    return a.shape == b.shape and float(np.abs(a - b).mean()) < tol


# ---------------------------------------------------------------------- failures -> ImageError(path, reason)
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """name -> (file, a word the reason must contain)."""
    d = tmp_path_factory.mktemp("bad")
    good = spots(1)
    buf = io.BytesIO()
    Image.fromarray(good).save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(good).save(buf, "PNG")
    png = buf.getvalue()
    files = {
        "zero.jpg": (b"", "empty file"),
        "trunc.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "trunc.png": (png[: len(png) // 2], "truncated"),
        "header_only.png": (png[:60], "truncated"),
        "text.jpg": (b"this is not a picture\n" * 3, "not an image"),
        "html.jpg": (b"<html><body>404 Not Found</body></html>", "not an image"),
        "bomb.png": (bomb_png(), "pixel limit"),
    }
    out = {}
    for name, (data, why) in files.items():
        (d / name).write_bytes(data)
        out[name] = (d / name, why)
    Image.new("RGB", (1, 1), (9, 9, 9)).save(d / "one_pixel.png")
    out["one_pixel.png"] = (d / "one_pixel.png", "too small")
    (d / "folder.jpg").mkdir()
    out["folder.jpg"] = (d / "folder.jpg", "folder")
    out["missing.jpg"] = (d / "missing.jpg", "not found")
    return out


@pytest.mark.parametrize(
    "name",
    ["zero.jpg", "trunc.jpg", "trunc.png", "header_only.png", "text.jpg", "html.jpg", "bomb.png", "one_pixel.png",
     "folder.jpg", "missing.jpg"],
)
def test_bad_file_gives_image_error_with_plain_reason(bad_files, name):
    path, why = bad_files[name]
    with pytest.raises(ImageError) as info:
        load_image(path, reduce_to=224)
    err = info.value
    assert err.path == str(path)
    assert why in err.reason
    assert str(err) == f"{path}: {err.reason}"
    assert "Traceback" not in err.reason and len(err.reason) < 300


def test_image_error_survives_pickling_across_worker_processes():
    import pickle

    err = pickle.loads(pickle.dumps(ImageError("a/b.jpg", "empty file (0 bytes)")))
    assert (type(err), err.path, err.reason) == (ImageError, "a/b.jpg", "empty file (0 bytes)")


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(spots(2, (400, 300))).save(path)
    assert load_image(path).size == (400, 300)
    with pytest.raises(ImageError, match=r"400x300 px is over 100,000 pixels"):
        load_image(path, max_pixels=100_000)
    (tmp_path / "claims_10000.png").write_bytes(bomb_png(10_000, 10_000))  # 100 Mpx, under Pillow's own bomb limit
    with pytest.raises(ImageError, match="pixel limit"):
        load_image(tmp_path / "claims_10000.png", max_pixels=50_000_000)


def test_bad_boxes_and_sources_are_image_errors(tmp_path):
    path = save_jpeg(spots(3), tmp_path / "a.jpg")
    with pytest.raises(ImageError, match=r"lies outside the 200x150 image"):
        load_image(path, bbox=[500, 500, 50, 50])
    with pytest.raises(ImageError, match="four numbers"):
        load_image(path, bbox="10 20 30")
    with pytest.raises(ImageError, match="positive width"):
        load_image(path, bbox=[0, 0, -5, 10])
    with pytest.raises(ImageError, match="too small"):
        load_image(path, bbox=[0, 0, 10, 10])
    with pytest.raises(ImageError, match="not a file path"):
        load_image(12345)  # type: ignore[arg-type]
    with pytest.raises(ImageError, match="HxW"):
        load_image(np.zeros((4, 40, 40, 3), np.uint8))
    with pytest.raises(ImageError, match="dtype object"):
        load_image(np.full((40, 40), None, dtype=object))


def test_damaged_exif_does_not_lose_a_good_image(tmp_path):
    path = tmp_path / "badexif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    raw = bytearray(exif.tobytes())
    raw[10:20] = b"\xff" * 10  # garble the IFD
    Image.fromarray(blocks()).save(path, "JPEG", quality=100, subsampling=0, exif=bytes(raw))
    img = load_image(path)
    assert img.mode == "RGB" and img.size in ((64, 48), (48, 64))


# ---------------------------------------------------------------------- conversions
EXIF_TRANSFORMS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, k=-1),  # stored image must be turned 90 degrees clockwise to display
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, k=1),
}


@pytest.mark.parametrize("orientation", sorted(EXIF_TRANSFORMS))
def test_exif_orientation_is_applied(tmp_path, orientation):
    stored = blocks()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save_jpeg(stored, tmp_path / f"o{orientation}.jpg", exif=exif.tobytes())
    shown = np.ascontiguousarray(EXIF_TRANSFORMS[orientation](stored))
    for reduce_to in (None, 16):  # draft decoding must not bypass the rotation
        img = load_image(path, reduce_to=reduce_to, min_side=8)
        img = img.resize(shown.shape[1::-1], Image.NEAREST)  # a draft-decoded upright file is smaller
        assert close(img, shown, 8), f"orientation {orientation} (reduce_to={reduce_to}) not applied"
    # the box is in the coordinates of the upright image
    crop = load_image(path, bbox=[16, 0, 32, 32], min_side=8)
    assert close(crop, shown[0:32, 16:48])


def test_exif_rotated_pil_image_is_rotated_too():
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(blocks()).save(buf, "JPEG", quality=100, subsampling=0, exif=exif.tobytes())
    img = Image.open(io.BytesIO(buf.getvalue()))
    assert close(load_image(img), np.rot90(blocks(), k=-1))


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    arr = np.zeros((40, 64), np.uint16)
    arr[:, :16] = 65535
    arr[:, 16:32] = 32768
    arr[:, 32:48] = 256  # would be 255 (white) if clipped, 1 when scaled
    arr[:, 48:] = 0
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode.startswith("I")
    out = np.asarray(load_image(path))
    assert out.dtype == np.uint8 and out.shape == (40, 64, 3)
    assert (out[:, :16] == 255).all()
    assert (np.abs(out[:, 16:32].astype(int) - 128) <= 1).all()
    assert (out[:, 32:48] <= 2).all()
    assert (out[:, 48:] == 0).all()
    # the same from a uint16 array
    assert np.array_equal(np.asarray(load_image(arr)), out)


def test_cmyk_red_stays_red(tmp_path):
    cmyk = Image.new("CMYK", (64, 48), (0, 255, 255, 0))  # pure red in CMYK
    for fmt, name in (("JPEG", "red.jpg"), ("TIFF", "red.tif")):
        cmyk.save(tmp_path / name, fmt)
        r, g, b = np.asarray(load_image(tmp_path / name)).reshape(-1, 3).mean(0)
        assert r > 200 and g < 60 and b < 60, (fmt, r, g, b)


@pytest.mark.parametrize(
    "mode",
    ["L", "1", "P", "P_transparent", "LA", "RGBA", "I", "F", "YCbCr"],
)
def test_other_modes_become_8_bit_rgb(tmp_path, mode):
    base = Image.fromarray(blocks())
    if mode == "P_transparent":
        img = base.convert("P")
        img.info["transparency"] = 0
    elif mode == "I":
        img = Image.fromarray(np.asarray(base.convert("L")).astype(np.int32) * 257)
    elif mode == "F":
        img = Image.fromarray(np.asarray(base.convert("L")).astype(np.float32) / 255.0)
    else:
        img = base.convert(mode)
    if mode == "YCbCr":  # no lossless format round-trips YCbCr in every Pillow (12.3 writes a truncated TIFF)
        out = load_image(img)
    else:
        path = tmp_path / ("m.tif" if mode in ("I", "F") else "m.png")
        img.save(path, **({"transparency": 0} if mode == "P_transparent" else {}))
        out = load_image(path)
    assert out.mode == "RGB" and out.size == (64, 48)
    grey = np.asarray(base.convert("L"), dtype=np.float64)
    got = np.asarray(out.convert("L"), dtype=np.float64)
    if mode == "1":
        assert set(np.unique(got)) <= {0.0, 255.0}
    else:  # brightness preserved (not clipped, not scaled to black or white)
        assert np.abs(got - grey).mean() < 12, mode


def test_arrays_of_any_usual_dtype(tmp_path):
    rgb = blocks()
    assert np.array_equal(np.asarray(load_image(rgb)), rgb)
    assert close(load_image(rgb.astype(np.float32) / 255.0), rgb, 1.0)
    assert close(load_image(rgb.astype(np.int64)), rgb, 0.01)
    assert close(load_image(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])), rgb, 0.01)
    grey = load_image(np.ones((48, 64), bool))
    assert np.asarray(grey).min() == 255


def test_draft_decoding_crops_the_same_region(tmp_path):
    big = np.kron(blocks(), np.ones((8, 8, 1), np.uint8))  # 512 x 384, flat 128 px blocks
    path = save_jpeg(big, tmp_path / "frame.jpg")
    box = [128, 128, 256, 128]
    full = load_image(path, bbox=box)
    small = load_image(path, bbox=box, reduce_to=32)
    assert full.size == (256, 128)
    assert min(small.size) >= 32 and small.size[0] < 256  # decoded at a reduced scale
    assert close(small.resize(full.size, Image.NEAREST), np.asarray(full), 12)


# ---------------------------------------------------------------------- hypothesis: boxes
coords = st.one_of(
    st.integers(-10**6, 10**6),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-(10**400), 10**400),
)
anything = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.lists(coords, max_size=6),
    st.tuples(coords, coords, coords, coords),
    st.lists(st.one_of(st.text(max_size=4), st.none(), st.booleans(), st.lists(st.integers(), max_size=2)),
             min_size=4, max_size=4),
    st.builds(lambda xs: "[" + ", ".join(map(str, xs)) + "]", st.lists(coords, max_size=5)),
    st.builds(lambda xs: " ".join(map(str, xs)), st.lists(coords, max_size=5)),
    st.just("[" * 5000 + "]" * 5000),
    st.floats(),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@FAST
@given(anything)
def test_parse_bbox_raises_only_value_error_and_is_idempotent(value):
    try:
        box = parse_bbox(value)
    except ValueError:
        return
    if box is None:
        return
    x, y, w, h = box
    assert all(isinstance(v, int) for v in box)
    assert w >= 1 and h >= 1 and x + w > 0 and y + h > 0
    assert parse_bbox(box) == box
    assert parse_bbox(list(box)) == box
    assert parse_bbox(str(list(box))) == box
    assert parse_bbox(" ".join(map(str, box))) == box
    assert parse_bbox(np.array(box)) == box


valid_box = st.tuples(
    st.integers(-500, 5000), st.integers(-500, 5000), st.integers(1, 5000), st.integers(1, 5000)
).filter(lambda b: b[0] + b[2] > 0 and b[1] + b[3] > 0)


@FAST
@given(valid_box)
def test_parse_bbox_round_trips_valid_boxes(box):
    for form in (box, list(box), f"[{box[0]}, {box[1]}, {box[2]}, {box[3]}]", "{} {} {} {}".format(*box),
                 "{}, {}, {}, {}".format(*box), [float(v) for v in box]):
        assert parse_bbox(form) == box


@pytest.mark.parametrize(
    "value",
    [[0, 0, 0, 10], [0, 0, 10, -1], [-20, 0, 10, 10], [0, -20, 10, 10], [1, 2, 3], "a b c d", "[1, 2, 3, null]",
     [1, 2, 3, float("inf")], [1, 2, 3, 10**400], "[1, 2", [-0.6, 0, 1.0, 5], {"x": 1}, "[" * 3000,
     [np.nan, 1, 2, 3]],
)
def test_parse_bbox_rejects_invalid_boxes(value):
    with pytest.raises(ValueError):
        parse_bbox(value)


@pytest.mark.parametrize("value", [None, "", "  ", "nan", "None", float("nan"), np.float32("nan"), pd.NA, pd.NaT])
def test_parse_bbox_missing_means_whole_image(value):
    assert parse_bbox(value) is None


@pytest.fixture(scope="module")
def small_jpeg(tmp_path_factory) -> Path:
    return save_jpeg(spots(4, (120, 90)), tmp_path_factory.mktemp("crop") / "c.jpg")


@FAST
@given(box=st.tuples(*[st.integers(-300, 300)] * 4), reduce_to=st.sampled_from([None, 16, 64]))
def test_crop_with_any_box_is_within_bounds_or_image_error(small_jpeg, box, reduce_to):
    try:
        img = load_image(small_jpeg, bbox=list(box), reduce_to=reduce_to, min_side=2)
    except ImageError as err:
        assert err.path == str(small_jpeg)
        return
    x, y, w, h = box
    assert w > 0 and h > 0
    assert 1 <= img.width <= min(120, x + w) - max(0, x)
    assert 1 <= img.height <= min(90, y + h) - max(0, y)
    if reduce_to is None:
        assert img.size == (min(120, x + w) - max(0, x), min(90, y + h) - max(0, y))


# ---------------------------------------------------------------------- metadata CSV
def write(tmp_path: Path, text: str, name: str = "meta.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_read_metadata_parses_and_normalises(tmp_path):
    path = write(
        tmp_path,
        "path,identity,bbox,side,camera,notes\n"
        " a.jpg ,L-1,\"[10, 20, 300, 200]\",L,c1,first\n"
        "b.jpg, L-2 ,10 20 30 40,Right,c2,\n"
        "c.jpg,L-1,,,c1,\"multi\nline\"\n",
    )
    df = read_metadata(path, require=("path", "identity"))
    assert df["path"].tolist() == ["a.jpg", "b.jpg", "c.jpg"]
    assert df["identity"].tolist() == ["L-1", "L-2", "L-1"]
    assert df["bbox"].tolist() == [(10, 20, 300, 200), (10, 20, 30, 40), None]
    assert df["side"].tolist() == ["left", "right", "unknown"]
    assert df["notes"].tolist() == ["first", "", "multi\nline"]


def test_missing_columns_are_named(tmp_path):
    path = write(tmp_path, "file,animal\na.jpg,L-1\n")
    with pytest.raises(MetadataError, match=r"missing column\(s\) path, identity; found 'file', 'animal'"):
        read_metadata(path, require=("path", "identity"))


def test_problems_are_reported_together_with_line_numbers(tmp_path):
    path = write(
        tmp_path,
        "path,identity,bbox,side\n"  # line 1
        "a.jpg,L-1,,left\n"  # 2
        "\n"  # 3 (blank: skipped, still counted)
        "b.jpg,L-2,\"[1, 2, 3]\",left\n"  # 4: bad bbox
        "c.jpg,L-3,,,\n"  # 5: fine (trailing empty field)
        "./a.jpg,L-1,,left\n"  # 6: duplicate of line 2
        "d.jpg,L-4,,up\n"  # 7: unknown side
        "e.jpg,,,left\n"  # 8: empty identity
        ",L-5,,left\n"  # 9: empty path
        "f.jpg,\"L\n6\",0 0 -1 5,left\n"  # 10-11: two-line field, bad bbox
        "g.jpg,L-7,,left,extra\n",  # 12: too many fields
    )
    with pytest.raises(MetadataError) as info:
        read_metadata(path, require=("path", "identity"))
    msg = str(info.value)
    assert msg.startswith(str(path))
    expected = [
        "line 4: bbox '[1, 2, 3]' must have four numbers",
        "line 6: duplicate path './a.jpg' (first on line 2)",
        "line 7: unknown side 'up'",
        "line 8: empty identity",
        "line 9: empty path",
        "line 10: bbox '0 0 -1 5' must have positive width and height",
        "line 12: 5 fields, but the header has 4",
    ]
    for part in expected:
        assert part in msg, part
    assert "line 5" not in msg and "line 2:" not in msg


def test_csv_variants(tmp_path):
    # Excel's UTF-8 BOM, semicolons and capitalised headers
    path = write(tmp_path, "\ufeffPath;Identity;Side\nä.jpg;L-1;R\n", "excel.csv")
    df = read_metadata(path, require=("path", "identity"))
    assert df.columns.tolist() == ["path", "identity", "side"]
    assert df.iloc[0].tolist() == ["ä.jpg", "L-1", "right"]
    with pytest.raises(MetadataError, match="not UTF-8"):
        read_metadata(write(tmp_path, "path\nä.jpg\n", "latin.csv", "latin-1"))
    with pytest.raises(MetadataError, match="empty file"):
        read_metadata(write(tmp_path, "", "empty.csv"))
    with pytest.raises(MetadataError, match="file not found"):
        read_metadata(tmp_path / "nope.csv")
    with pytest.raises(MetadataError, match="more than once"):
        read_metadata(write(tmp_path, "path,path\na,b\n", "twice.csv"))
    assert read_metadata(write(tmp_path, "path,identity\n", "header.csv")).empty


def test_dataframe_input_uses_row_numbers_and_handles_missing_cells():
    df = pd.DataFrame({"path": ["a.jpg", None, "a.jpg"], "identity": ["x", np.nan, pd.NA]})
    with pytest.raises(MetadataError) as info:
        read_metadata(df, require=("path", "identity"))
    msg = str(info.value)
    assert "row 1: empty path" in msg and "row 2: duplicate path 'a.jpg' (first on row 0)" in msg
    assert "row 1: empty identity" in msg and "row 2: empty identity" in msg
    records = as_records(pd.DataFrame({"path": ["a.jpg"], "bbox": [None], "side": ["L"]}), root="/r")
    assert records[0].source == Path("/r/a.jpg") and records[0].bbox is None and records[0].side == "left"
    # a raw DataFrame's bad box or side is reported as read_metadata reports it, never read as the whole frame
    with pytest.raises(MetadataError, match="row 0: bbox 'bad'"):
        as_records(pd.DataFrame({"path": ["a.jpg"], "bbox": ["bad"], "side": ["L"]}), root="/r")
    with pytest.raises(MetadataError, match="row 0: unknown side 'up'"):
        as_records(pd.DataFrame({"path": ["a.jpg"], "side": ["up"]}))


def test_one_photo_may_hold_two_animals_but_not_the_same_box_twice():
    df = pd.DataFrame({"path": ["a.jpg", "a.jpg", "a.jpg"], "bbox": ["[0, 0, 40, 40]", "[50, 0, 40, 40]",
                                                                       "[0, 0, 40, 40]"]})
    with pytest.raises(MetadataError) as info:
        read_metadata(df)
    assert "row 2: duplicate path 'a.jpg' with bbox [0, 0, 40, 40] (first on row 0)" in str(info.value)
    assert "row 1" not in str(info.value)
    assert len(read_metadata(df.head(2))) == 2


safe_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=0, max_size=12
)
rows = st.lists(
    st.tuples(
        safe_text.filter(lambda s: s.strip() != ""),
        safe_text,
        st.one_of(st.none(), valid_box),
        st.sampled_from(["left", "right", "unknown", "", "L", "r", "LEFT"]),
        safe_text,
    ),
    max_size=12,
    unique_by=lambda r: __import__("os").path.normpath(r[0].strip()),
)


@FAST
@given(rows)
def test_read_metadata_round_trips_generated_tables(tmp_path, rows):
    path = tmp_path / "gen.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "identity", "bbox", "side", "notes"])
        for p, ident, box, side, note in rows:
            w.writerow([p, ident, "" if box is None else str(list(box)), side, note])
    df = read_metadata(path)
    kept = [r for r in rows if any(f.strip() for f in (r[0], r[1], r[4])) or r[2] is not None or r[3].strip()]
    assert df["path"].tolist() == [r[0].strip() for r in kept]
    assert df["identity"].tolist() == [r[1].strip() for r in kept]
    assert df["bbox"].tolist() == [r[2] for r in kept]
    side = {"": "unknown", "l": "left", "r": "right"}
    assert df["side"].tolist() == [side.get(r[3].lower(), r[3].lower()) for r in kept]
    assert df["notes"].tolist() == [r[4] for r in kept]


@FAST
@given(rows.filter(lambda rs: len(rs) >= 1), st.data())
def test_read_metadata_reports_the_right_line(tmp_path, rows, data):
    bad = data.draw(st.integers(0, len(rows) - 1))
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["path", "identity", "bbox", "side", "notes"])
    starts = []
    for i, (p, ident, _box, _side, note) in enumerate(rows):
        starts.append(len(re.findall(r"\r\n|\r|\n", buf.getvalue())) + 1)
        w.writerow([p, ident, "[1, 2, 3]" if i == bad else "", "left", note])
    path = tmp_path / "bad.csv"
    path.write_text(buf.getvalue(), encoding="utf-8", newline="")
    with pytest.raises(MetadataError, match=rf"line {starts[bad]}: bbox '\[1, 2, 3\]' must have four numbers"):
        read_metadata(path)


# ---------------------------------------------------------------------- Embedder.embed / describe on_error
@pytest.fixture(scope="module")
def lite0():
    from leopard_reid import Embedder

    return Embedder(progress=False, num_workers=0, batch_size=8)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, bad_files) -> list[Path]:
    d = tmp_path_factory.mktemp("mixed")
    good = [save_jpeg(spots(10 + i), d / f"good{i}.jpg") for i in range(3)]
    bad = [bad_files[n][0] for n in ("zero.jpg", "trunc.png", "text.jpg", "bomb.png", "one_pixel.png")]
    return [good[0], bad[0], bad[1], good[1], bad[2], bad[3], bad[4], good[2]]


def test_describe_skip_gives_nan_rows_and_named_errors(lite0, mixed):
    with pytest.warns(UserWarning, match="skipped 5 of 8"):
        feats = lite0.describe(mixed, on_error="skip")
    assert feats.valid.tolist() == [True, False, False, True, False, False, False, True]
    assert np.isnan(feats.embeddings[~feats.valid]).all()
    assert np.allclose(np.linalg.norm(feats.embeddings[feats.valid], axis=1), 1, atol=1e-5)
    assert [e.path for e in feats.errors] == [str(p) for p, ok in zip(mixed, feats.valid) if not ok]
    assert all(isinstance(e, ImageError) and e.reason for e in feats.errors)
    good = [p for p, ok in zip(mixed, feats.valid) if ok]
    assert np.allclose(lite0.embed(good), feats.embeddings[feats.valid], atol=1e-5)


def test_describe_raise_names_the_file(lite0, mixed):
    with pytest.raises(ImageError) as info:
        lite0.embed(mixed, on_error="raise")
    assert info.value.path == str(mixed[1]) and "empty file" in info.value.reason
    with pytest.raises(ValueError, match="on_error"):
        lite0.embed(mixed, on_error="ignore")  # type: ignore[arg-type]


def test_errors_cross_dataloader_workers(lite0, mixed, monkeypatch):
    monkeypatch.setattr(lite0, "num_workers", 1)  # images decoded in a worker process
    monkeypatch.setattr(lite0, "batch_size", 4)
    with pytest.warns(UserWarning):
        feats = lite0.describe(mixed[:5], on_error="skip")
    assert feats.valid.tolist() == [True, False, False, True, False]
    assert [type(e) for e in feats.errors] == [ImageError] * 3
    assert "empty file" in feats.errors[0].reason and "truncated" in feats.errors[1].reason


def test_quieting_warnings_on_overlapping_threads_restores_the_filters():
    """Two threads decoding at once: A in, B in, A out, B out. With ``warnings.catch_warnings`` B would then
    restore A's "ignore" for the whole process, and a warning the caller waits for would never come."""
    import threading
    import warnings

    from leopard_reid.io import quiet_warnings

    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a() -> None:
        with quiet_warnings():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b() -> None:
        a_in.wait(5)
        with quiet_warnings():
            b_in.set()
            a_out.wait(5)
            warnings.warn("inside: ignored", UserWarning, stacklevel=1)

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        warnings.warn("after: shown", UserWarning, stacklevel=1)
    assert a_out.is_set() and [str(w.message) for w in seen] == ["after: shown"]
