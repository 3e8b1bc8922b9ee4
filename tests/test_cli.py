"""The command line skips bad inputs, lists them in errors.csv and says so with its exit code (in-process)."""

from __future__ import annotations

import csv
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leopard_reid.cli import EXIT_FAIL, EXIT_OK, EXIT_SKIPPED, EXIT_USAGE, main
from leopard_reid.gallery import Gallery
from tests.conftest import spots

pytestmark = pytest.mark.filterwarnings("ignore:skipped .* image")




def run(argv: list[str]) -> int:
    """Exit code as the console script gives it (argparse usage errors raise SystemExit(2))."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:
        return int(exc.code or 0)


def read_errors(folder: Path) -> dict[str, str]:
    with open(folder / "errors.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["path", "reason", "command"]
    return {p: r for p, r, _ in rows[1:]}


def _bomb_png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


#: bad file -> a word its reason in errors.csv must contain
BAD = {
    "bad/zero.jpg": "empty file",
    "bad/truncated.jpg": "truncated",
    "bad/truncated.png": "truncated",
    "bad/text.jpg": "not an image",
    "bad/one_pixel.png": "too small",
    "bad/bomb.png": "pixel limit",
    "bad/missing.jpg": "file not found",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Good spot images (plain, CMYK, 16-bit, EXIF-rotated) of 5 animals next to every kind of broken file."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "good").mkdir()
    (root / "bad").mkdir()
    rows = []
    for animal in range(3):
        for shot in range(2):
            name = f"good/L{animal}_{shot}.{'jpg' if shot else 'png'}"
            img = Image.fromarray(spots(10 * animal + shot))
            img.save(root / name, **({"quality": 92} if shot else {}))
            rows.append((name, f"L-{animal}"))
    Image.fromarray(spots(50)).convert("CMYK").save(root / "good/cmyk.jpg", quality=92)
    deep = np.asarray(Image.fromarray(spots(51)).convert("L")).astype(np.uint16) * 257
    Image.fromarray(deep).save(root / "good/deep16.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(spots(52)).save(root / "good/rotated.jpg", quality=92, exif=exif.tobytes())
    rows += [("good/cmyk.jpg", "L-cmyk"), ("good/deep16.png", "L-deep"), ("good/rotated.jpg", "L-rot")]
    buf = io.BytesIO()
    Image.fromarray(spots(60)).save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(spots(61)).save(buf, "PNG")
    png = buf.getvalue()
    (root / "bad/zero.jpg").write_bytes(b"")
    (root / "bad/truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "bad/truncated.png").write_bytes(png[: len(png) // 2])
    (root / "bad/text.jpg").write_text("I am a text file with a .jpg name\n")
    Image.new("RGB", (1, 1)).save(root / "bad/one_pixel.png")
    (root / "bad/bomb.png").write_bytes(_bomb_png())
    rows += [(name, "L-bad") for name in BAD]
    # bad rows interleaved with good ones
    order = [0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11, 12, 13, 14, 15]
    pd.DataFrame([rows[i] for i in order], columns=["path", "identity"]).to_csv(root / "all.csv", index=False)
    return root


GOOD = ["good/L0_0.png", "good/L0_1.jpg", "good/L1_0.png", "good/L1_1.jpg", "good/L2_0.png", "good/L2_1.jpg",
        "good/cmyk.jpg", "good/deep16.png", "good/rotated.jpg"]


@pytest.fixture(scope="module")
def enrolled(corpus, tmp_path_factory):
    """``enroll --no-local`` of the whole corpus: (exit code, gallery path)."""
    out = tmp_path_factory.mktemp("enroll") / "gallery.safetensors"
    code = run(["enroll", "--metadata", corpus / "all.csv", "--out", out, "--no-local", "--batch-size", "8"])
    return code, out


def test_enroll_skips_bad_files_and_lists_them(enrolled, capsys):
    code, out = enrolled
    assert code == EXIT_SKIPPED
    g = Gallery.load(out)
    assert sorted(g.metadata["path"]) == sorted(GOOD)  # CMYK, 16-bit and EXIF-rotated files are good files
    assert g.identities == ["L-0", "L-1", "L-2", "L-cmyk", "L-deep", "L-rot"]
    assert g.local is None
    errors = read_errors(out.parent)
    assert sorted(errors) == sorted(BAD)
    for path, word in BAD.items():
        assert word in errors[path], (path, errors[path])


def test_enroll_again_adds_nothing_twice(enrolled, corpus, capsys):
    _, out = enrolled
    before = Gallery.load(out)
    code = run(["enroll", "--metadata", corpus / "all.csv", "--out", out])
    assert code == EXIT_SKIPPED  # the bad files are still bad
    assert "already in" in capsys.readouterr().err
    after = Gallery.load(out)
    assert np.array_equal(after.embeddings, before.embeddings)
    assert after.local is None  # kept the gallery's kind (no keypoints) rather than mixing


def test_match_global_skips_bad_queries(enrolled, corpus, tmp_path):
    _, gallery = enrolled
    queries = [corpus / p for p in ["good/L1_0.png", "bad/zero.jpg", "good/rotated.jpg", "bad/text.jpg",
                                    "good/cmyk.jpg", "bad/missing.jpg", "good/deep16.png"]]
    out = tmp_path / "res" / "matches.csv"
    code = run(["match", *queries, "--gallery", gallery, "--method", "global", "--top-k", "2", "--out", out])
    assert code == EXIT_SKIPPED
    res = pd.read_csv(out)
    top = res[res["rank"] == 1].set_index("query")
    good = [str(q) for q in queries if "good/" in str(q)]
    assert list(top.index) == [str(q) for q in queries]  # every input has its rank-1 row, in input order
    assert set(top.index[top["decision"] == "unreadable"]) == {str(q) for q in queries if "bad/" in str(q)}
    assert "empty file" in top.loc[str(corpus / "bad/zero.jpg"), "reason"]
    # an enrolled image finds itself: its identity first, cosine 1
    expected = {"L1_0.png": "L-1", "rotated.jpg": "L-rot", "cmyk.jpg": "L-cmyk", "deep16.png": "L-deep"}
    for q in good:
        assert top.loc[q, "identity"] == expected[Path(q).name]
        assert top.loc[q, "score"] == pytest.approx(1.0, abs=1e-4)
    errors = read_errors(out.parent)
    assert sorted(errors) == sorted(str(q) for q in queries if "bad/" in str(q))
    assert "empty file" in errors[str(corpus / "bad/zero.jpg")]
    assert "not found" in errors[str(corpus / "bad/missing.jpg")]


def test_default_fused_path(corpus, tmp_path):
    """Enroll with keypoints (the default) and match with the default method on a small subset."""
    subset = tmp_path / "subset.csv"
    pd.DataFrame({
        "path": ["good/L0_0.png", "good/L1_0.png", "bad/truncated.jpg", "good/L2_0.png", "good/rotated.jpg"],
        "identity": ["L-0", "L-1", "L-x", "L-2", "L-rot"],
    }).to_csv(subset, index=False)
    gallery = tmp_path / "g" / "fused.safetensors"
    code = run(["enroll", "--metadata", subset, "--root", corpus, "--out", gallery])
    assert code == EXIT_SKIPPED
    g = Gallery.load(gallery)
    assert len(g) == 4 and g.local is not None and all(len(f) > 10 for f in g.local)
    assert "truncated" in read_errors(gallery.parent)["bad/truncated.jpg"]

    queries = pd.DataFrame({"path": ["good/L1_0.png", "bad/one_pixel.png", "good/rotated.jpg"]})
    queries.to_csv(tmp_path / "queries.csv", index=False)
    out = tmp_path / "m" / "matches.json"
    code = run(["match", "--metadata", tmp_path / "queries.csv", "--root", corpus, "--gallery", gallery,
                "--out", out, "--format", "json"])
    assert code == EXIT_SKIPPED
    res = pd.read_json(out)
    top = res[res["rank"] == 1].set_index("query")
    assert top.loc["good/L1_0.png", "identity"] == "L-1"
    assert top.loc["good/rotated.jpg", "identity"] == "L-rot"
    assert top.loc["bad/one_pixel.png", "decision"] == "unreadable"
    top = top.drop(index="bad/one_pixel.png")
    assert (top["decision"] == "match").all()  # the same image: keypoints agree, P(same) high
    assert (top["local"] > 0).all()
    assert list(read_errors(out.parent)) == ["bad/one_pixel.png"]  # named as the CSV names it


def test_all_good_is_exit_0(corpus, tmp_path):
    (tmp_path / "ok.csv").write_text("path,identity\ngood/L0_0.png,L-0\ngood/L0_1.jpg,L-0\n")
    out = tmp_path / "ok.safetensors"
    assert run(["enroll", "--metadata", tmp_path / "ok.csv", "--root", corpus, "--out", out, "--no-local"]) == EXIT_OK
    assert not (tmp_path / "errors.csv").exists()


def test_nothing_readable_is_exit_1(corpus, tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("path,identity\nbad/zero.jpg,A\nbad/text.jpg,B\n")
    out = tmp_path / "g.safetensors"
    code = run(["enroll", "--metadata", tmp_path / "bad.csv", "--root", corpus, "--out", out, "--no-local"])
    assert code == EXIT_FAIL
    assert "no readable image" in capsys.readouterr().err
    assert not out.exists()
    assert sorted(read_errors(tmp_path)) == ["bad/text.jpg", "bad/zero.jpg"]


def test_missing_or_damaged_gallery_is_exit_1(corpus, tmp_path, capsys):
    code = run(["match", corpus / "good/L0_0.png", "--gallery", tmp_path / "none.safetensors"])
    assert code == EXIT_FAIL
    assert "gallery file not found" in capsys.readouterr().err
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    code = run(["match", corpus / "good/L0_0.png", "--gallery", tmp_path / "broken.safetensors"])
    assert code == EXIT_FAIL
    assert "damaged or not a leopard_reid gallery" in capsys.readouterr().err


def test_bad_metadata_is_exit_1_with_line_numbers(tmp_path, capsys):
    (tmp_path / "m.csv").write_text("path,identity,side\na.jpg,A,left\na.jpg,B,top\n")
    code = run(["enroll", "--metadata", tmp_path / "m.csv", "--out", tmp_path / "g.safetensors"])
    assert code == EXIT_FAIL
    err = capsys.readouterr().err
    assert "line 3: duplicate path 'a.jpg' (first on line 2)" in err and "line 3: unknown side 'top'" in err
    (tmp_path / "n.csv").write_text("file,animal\na.jpg,A\n")
    assert run(["enroll", "--metadata", tmp_path / "n.csv", "--out", tmp_path / "g.safetensors"]) == EXIT_FAIL
    assert "missing column(s) path, identity" in capsys.readouterr().err


def test_usage_errors_are_exit_2(tmp_path, capsys):
    assert run([]) == EXIT_USAGE
    assert run(["enroll"]) == EXIT_USAGE  # --metadata and --out are required
    assert run(["match", "--gallery", tmp_path / "g.safetensors"]) == EXIT_USAGE  # no images, no CSV
    assert run(["match", "a.jpg", "--metadata", "m.csv", "--gallery", "g"]) == EXIT_USAGE  # both
    assert run(["match", "a.jpg", "--gallery", "g", "--method", "magic"]) == EXIT_USAGE
    assert run(["frobnicate"]) == EXIT_USAGE
    capsys.readouterr()


def test_audit_lists_one_photo_filed_under_two_names(corpus, tmp_path, capsys):
    import shutil

    shutil.copyfile(corpus / "good/L0_0.png", tmp_path / "second_catalogue.png")  # the same photo, a new code
    (tmp_path / "cat.csv").write_text(f"path,identity\ngood/L0_0.png,A\n{tmp_path / 'second_catalogue.png'},B\n"
                                      "good/L1_0.png,C\ngood/L2_0.png,D\n")
    out = tmp_path / "pairs.csv"
    code = run(["audit", "--metadata", tmp_path / "cat.csv", "--root", corpus, "--min-score", "0.9", "--out", out])
    assert code == EXIT_OK
    pairs = pd.read_csv(out)
    assert len(pairs) == 1 and {pairs.at[0, "identity_a"], pairs.at[0, "identity_b"]} == {"A", "B"}
    assert "1 pair(s)" in capsys.readouterr().err


# ---------------------------------------------------------------------- issue 14: a newcomer's path
def test_bad_options_are_usage_errors_without_traceback(corpus, tmp_path, capsys):
    for argv in (["match", "a.jpg", "--gallery", "g", "--top-k", "0"],
                 ["match", "a.jpg", "--gallery", "g", "--top-k", "-3"],
                 ["match", "a.jpg", "--gallery", tmp_path],  # a folder
                 ["calibrate", "--gallery", "g", "--max-false-match", "1.5"],
                 ["enroll", "--metadata", "m.csv", "--out", "g", "--batch-size", "0"],
                 ["audit", "--metadata", "m.csv", "--limit", "0"],
                 ["synth", "--out", tmp_path / "s", "--individuals", "0"],
                 ["census", "--detections", "md.json", "--gallery", "g", "--out", tmp_path / "c", "--max-tilt", "0.5"]):
        assert run(argv) == EXIT_USAGE, argv
    err = capsys.readouterr().err
    assert "Traceback" not in err and "must be at least 1, not 0" in err and "is a folder" in err
    assert "must be at least 1 (1: no tilted views), not 0.5" in err


def test_help_shows_every_default(capsys):
    assert run(["match", "--help"]) == EXIT_OK
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 5)" in text and "(default: fused)" in text
    assert "(default: 8 on a CPU, 32 on a GPU)" in text and "(default: None)" not in text.split("--batch-size")[1][:80]


def test_enroll_dedups_by_path_and_bbox(corpus, tmp_path, capsys):
    out = tmp_path / "g.safetensors"
    (tmp_path / "a.csv").write_text('path,identity,bbox\ngood/L0_0.png,A,"[0, 0, 100, 100]"\n')
    assert run(["enroll", "--metadata", tmp_path / "a.csv", "--root", corpus, "--out", out, "--no-local"]) == EXIT_OK
    (tmp_path / "b.csv").write_text('path,identity,bbox\ngood/L0_0.png,A,"[0, 0, 100, 100]"\n'
                                    'good/L0_0.png,B,"[90, 40, 100, 100]"\n')  # a second animal in the frame
    assert run(["enroll", "--metadata", tmp_path / "b.csv", "--root", corpus, "--out", out, "--no-local"]) == EXIT_OK
    g = Gallery.load(out)
    assert sorted(g.labels) == ["A", "B"] and "1 photo(s) (same path and bbox) already in" in capsys.readouterr().err


def test_one_commands_errors_csv_survives_another(corpus, tmp_path):
    (tmp_path / "m.csv").write_text("path,identity\ngood/L0_0.png,A\nbad/zero.jpg,B\n")
    out = tmp_path / "g.safetensors"
    code = run(["enroll", "--metadata", tmp_path / "m.csv", "--root", corpus, "--out", out, "--no-local"])
    assert code == EXIT_SKIPPED
    code = run(["match", corpus / "good/L0_0.png", "--gallery", out, "--method", "global",
                "--out", tmp_path / "r.csv"])
    assert code == EXIT_OK
    assert list(read_errors(tmp_path)) == ["bad/zero.jpg"]  # match had no errors and left enroll's alone


def test_evaluate_with_nothing_to_evaluate_is_exit_1(corpus, tmp_path, capsys):
    (tmp_path / "one.csv").write_text("path,identity\ngood/L0_0.png,A\ngood/L1_0.png,B\n")
    code = run(["evaluate", "--metadata", tmp_path / "one.csv", "--root", corpus, "--method", "global"])
    assert code == EXIT_FAIL
    assert "nothing to evaluate" in capsys.readouterr().err


def test_evaluate_and_audit_exit_3_when_they_skipped_images(corpus, tmp_path, capsys):
    (tmp_path / "m.csv").write_text("path,identity\ngood/L0_0.png,A\ngood/cmyk.jpg,A\ngood/L1_0.png,B\n"
                                    "good/deep16.png,B\nbad/zero.jpg,B\n")
    args = ["--metadata", tmp_path / "m.csv", "--root", corpus, "--method", "global"]
    assert run(["evaluate", *args]) == EXIT_SKIPPED
    assert run(["audit", *args, "--out", tmp_path / "p.csv"]) == EXIT_SKIPPED
    capsys.readouterr()


def test_backbone_without_weights_fails_at_once_naming_gallery_and_backbone(corpus, tmp_path, capsys):
    import time

    g = Gallery.from_embeddings(np.eye(3), ["a", "b", "c"], backbone="resnet18", weights_sha256="f" * 16)
    g.save(tmp_path / "r.safetensors")
    t0 = time.perf_counter()
    code = run(["match", corpus / "good/L0_0.png", "--gallery", tmp_path / "r.safetensors", "--method", "global"])
    assert code == EXIT_FAIL and time.perf_counter() - t0 < 20
    err = capsys.readouterr().err
    assert "r.safetensors was built with backbone 'resnet18'" in err and "timm.create_model('resnet18'" in err


def test_calibrate_local_then_default_match_accepts_known_photos(population, tmp_path, capsys):
    root, meta = population
    meta.to_csv(tmp_path / "all.csv", index=False)
    out = tmp_path / "g.safetensors"
    assert run(["enroll", "--metadata", tmp_path / "all.csv", "--root", root, "--out", out]) == EXIT_OK
    assert run(["calibrate", "--gallery", out, "--method", "local"]) == EXIT_OK
    said = capsys.readouterr().err
    assert "local method" in said and "Expected on individuals held out" in said
    code = run(["match", *[root / p for p in meta["path"].head(4)], "--gallery", out, "--out", tmp_path / "m.csv"])
    assert code == EXIT_OK
    top = pd.read_csv(tmp_path / "m.csv").query("rank == 1")
    assert (top["decision"] == "match").all() and (top["score"] <= 1).all()


def test_synth_season_runs_through_census_and_apply_review(tmp_path, capsys, monkeypatch):
    """The newcomer's path: synth --season, enroll, census, apply-review from another folder, no extra flags."""
    s = tmp_path / "s"
    assert run(["synth", "--out", s, "--season", "--individuals", "4", "--sightings", "4", "--seed", "2"]) == EXIT_OK
    g = s / "gallery.safetensors"
    assert run(["enroll", "--metadata", s / "known.csv", "--out", g]) == EXIT_OK
    code = run(["census", "--detections", s / "md.json", "--gallery", g, "--sightings", s / "sightings.csv",
                "--cameras", s / "cameras.csv", "--out", s / "census", "--review-images", "0"])
    assert code == EXIT_OK
    m = pd.read_csv(s / "census" / "matches.csv")
    assert len(m) and (m["decision"] == "known").any() and m["identity"].str.startswith("NEW-").any()
    monkeypatch.chdir(tmp_path)  # anywhere: the census recorded where its photos are
    assert run(["census", "apply-review", s / "census" / "decisions.csv", "--gallery", g]) == EXIT_OK
    assert len(Gallery.load(g)) > len(pd.read_csv(s / "known.csv"))
    capsys.readouterr()


def test_one_line_per_skipped_file(corpus, tmp_path, capsys):
    import warnings

    (tmp_path / "m.csv").write_text("path,identity\ngood/L0_0.png,A\nbad/zero.jpg,B\nbad/text.jpg,C\n")
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as outside pytest
        code = run(["enroll", "--metadata", tmp_path / "m.csv", "--root", corpus, "--out", tmp_path / "g.safetensors",
                    "--no-local"])
    assert code == EXIT_SKIPPED
    err = capsys.readouterr().err
    assert err.count("bad/zero.jpg") == 1 and err.count("bad/text.jpg") == 1
    assert "UserWarning" not in err and "warnings.warn" not in err


def test_every_option_has_help():
    import argparse

    from leopard_reid.cli import build_parser

    def parsers(p):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    if name != "train":  # the training command has its own owner
                        yield name, sub
                        yield from parsers(sub)

    missing = [f"{name} {a.option_strings[0]}" for name, sub in parsers(build_parser()) for a in sub._actions
               if a.option_strings and a.help is None]
    assert missing == []


def test_the_library_never_imports_the_cli():
    """Exit codes and argparse live in the CLI; library modules raise exceptions it maps to exit codes."""
    import re

    import leopard_reid

    pkg = Path(leopard_reid.__file__).parent
    offenders = [str(p.relative_to(pkg)) for p in pkg.rglob("*.py") if p.name != "cli.py"
                 and re.search(r"^\s*(from\s+(\.+cli|leopard_reid\.cli)\b|import\s+leopard_reid\.cli\b)",
                               p.read_text(), re.M)]
    assert offenders == []
