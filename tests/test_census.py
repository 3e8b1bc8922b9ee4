"""Census workflow: MegaDetector input, decisions, bursts, secr files, review page, apply-review."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leopard_reid.census import read_detections, run_census

OCCASION_DAYS = 7


# ------------------------------------------------------------------------------------------ parsing
def test_batch_layout_failures_low_conf_and_categories():
    md = {
        "info": {"format_version": "1.4"},
        "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
        "images": [
            {"file": "a/1.jpg", "detections": [
                {"category": "1", "conf": 0.9, "bbox": [0.1, 0.2, 0.3, 0.4]},
                {"category": "1", "conf": 0.1, "bbox": [0.5, 0.5, 0.1, 0.1]},  # below min_conf
                {"category": "2", "conf": 0.95, "bbox": [0.0, 0.0, 0.2, 0.9]},  # person
            ]},
            {"file": "a/2.jpg", "failure": "Failure image access", "detections": None},
            {"file": "a/3.jpg", "detections": []},
            {"file": "a/4.jpg", "failure": None, "detections": [{"category": "1", "conf": 0.2, "bbox": [0, 0, 1, 1]}]},
            {"file": "a/5.jpg", "detections": [{"category": "1", "conf": 0.8, "bbox": [10, 20, 300, 200]}]},
        ],
    }
    dets, errors, counts = read_detections(md, min_conf=0.2)
    assert [(d["path"], d["det"]) for d in dets] == [("a/1.jpg", 0), ("a/4.jpg", 0)]
    assert dets[0]["box"] == [0.1, 0.2, 0.3, 0.4] and dets[0]["box_format"] == "norm_xywh"
    reasons = {e.path: e.reason for e in errors}
    assert "Failure image access" in reasons["a/2.jpg"]
    assert "normalised" in reasons["a/5.jpg"]  # pixel box in the normalised layout
    assert counts["low_conf"] == 1 and counts["other_category"] == 1 and counts["failed"] == 1


def test_list_layout_pixel_corner_boxes(tmp_path):
    md = [
        {"file": "cam1/IMG_1.jpg", "detections": [
            {"category": "animal", "confidence": 0.93, "bbox": [102.4, 88.1, 540.7, 470.2]},
            {"category": "person", "confidence": 0.81, "bbox": [12.0, 40.5, 96.3, 510.9]},
            {"category": "animal", "confidence": 0.05, "bbox": [1, 1, 50, 50]},
        ]},
        {"file": "cam1/IMG_2.jpg", "detections": []},
        {"file": "cam1/IMG_3.jpg", "failure": "corrupt file"},
    ]
    path = tmp_path / "md.json"
    path.write_text(json.dumps(md))
    dets, errors, counts = read_detections(path)
    assert len(dets) == 1 and dets[0]["box_format"] == "px_xyxy" and dets[0]["conf"] == pytest.approx(0.93)
    assert [e.path for e in errors] == ["cam1/IMG_3.jpg"]
    assert counts == {"images": 3, "failed": 1, "low_conf": 1, "other_category": 1, "animal": 1}
    from leopard_reid.census.detections import _pixel_box

    assert _pixel_box(dets[0]["box"], "px_xyxy", (1280, 720)) == (102, 88, 439, 383)
    assert _pixel_box([0.5, 0.5, 0.25, 0.5], "norm_xywh", (1000, 600)) == (500, 300, 250, 300)
    assert _pixel_box([0.9, 0.9, 0.5, 0.5], "norm_xywh", (100, 100)) == (90, 90, 10, 10)  # clipped


# ------------------------------------------------------------------------------------------ season
@pytest.fixture(scope="module")
def season(tmp_path_factory, embedder):
    """4 synthetic leopards x 4 framed sightings; L-001/L-002 enrolled (first sighting per flank)."""
    from leopard_reid import Gallery
    from leopard_reid.synthetic import generate

    root = tmp_path_factory.mktemp("season")
    df = generate(root, n_individuals=4, sightings_per_individual=4, seed=5, frame=True,
                  frame_size=(640, 400), size=(320, 200))
    enrolled = df[df["identity"].isin(["L-001", "L-002"])].groupby(["identity", "side"]).head(1)
    gallery_df = enrolled[["path", "identity", "side", "bbox"]].reset_index(drop=True)
    gallery = Gallery.build(embedder, gallery_df, root=root)
    gpath = root / "gallery.lrg"
    gallery.save(gpath)
    s = df.drop(index=enrolled.index).reset_index(drop=True)
    # a burst: L-004's two left sightings at one camera, 30 s apart
    left4 = s.index[(s["identity"] == "L-004") & (s["side"] == "left")][:2]
    t = datetime.fromisoformat(s.at[left4[0], "datetime"])
    s.loc[left4[1], ["camera", "datetime"]] = [s.at[left4[0], "camera"], (t + timedelta(seconds=30)).isoformat()]
    # a paired station: L-003 left and right 3 s apart at one camera
    l3 = s.index[(s["identity"] == "L-003") & (s["side"] == "left")][0]
    r3 = s.index[(s["identity"] == "L-003") & (s["side"] == "right")][0]
    t3 = datetime.fromisoformat(s.at[l3, "datetime"])
    s.loc[r3, ["camera", "datetime"]] = [s.at[l3, "camera"], (t3 + timedelta(seconds=3)).isoformat()]
    images = []
    for k, (p, b) in enumerate(zip(s["path"], s["bbox"])):
        w, h = Image.open(root / p).size
        x, y, bw, bh = json.loads(b)
        dets = [{"category": "1", "conf": 0.9, "bbox": [x / w, y / h, bw / w, bh / h]}]
        if k == 0:
            dets += [{"category": "1", "conf": 0.03, "bbox": [0, 0, 0.3, 0.3]},
                     {"category": "2", "conf": 0.9, "bbox": [0.6, 0, 0.3, 0.9]}]
        images.append({"file": p, "detections": dets})
    images.append({"file": "L-009/missing.jpg", "detections": [{"category": "1", "conf": 0.9, "bbox": [0, 0, .5, .5]}]})
    images.append({"file": "L-009/failed.jpg", "failure": "Failure image access", "detections": None})
    md = root / "md.json"
    md.write_text(json.dumps({"detection_categories": {"1": "animal", "2": "person"}, "images": images}))
    sightings = root / "sightings.csv"
    s[["path", "camera", "datetime", "side"]].to_csv(sightings, index=False)
    days = pd.to_datetime(s["datetime"]).dt.normalize()
    n_occ = int(((days.max() - days.min()).days) // OCCASION_DAYS + 1)
    cams = sorted(s["camera"].unique())
    cameras = root / "cameras.csv"
    pd.DataFrame({"camera": cams, "x": np.arange(len(cams)) * 500.0, "y": 100.0,
                  "usage": ["1" * n_occ] * len(cams)}).to_csv(cameras, index=False)
    out = root / "out"
    res = run_census(md, gallery=gpath, out=out, sightings=sightings, cameras=cameras, embedder=embedder,
                     occasion_days=OCCASION_DAYS, burst_seconds=60, progress=False)
    return {"root": root, "df": df, "season": s, "md": md, "sightings": sightings, "cameras": cameras,
            "gallery": gpath, "res": res, "out": out, "n_occ": n_occ, "burst": list(left4), "pair": (l3, r3)}


def test_outputs_and_errors(season):
    res, s = season["res"], season["season"]
    m = pd.read_csv(season["out"] / "matches.csv", dtype=str, keep_default_na=False)
    assert list(m.columns)[:9] == ["path", "bbox", "camera", "datetime", "side", "identity", "score", "decision",
                                   "candidates"]
    assert sorted(m["path"]) == sorted(s["path"])  # one row per animal detection; decoys dropped
    assert set(m["decision"]) <= {"known", "new", "uncertain"}
    assert all(re.fullmatch(r"(L-00[12]:\d\.\d\d;?)+", c) for c in m["candidates"])
    err = pd.read_csv(season["out"] / "errors.csv")
    assert set(err["path"]) == {"L-009/missing.jpg", "L-009/failed.jpg"}
    assert res.counts["low_conf"] == 1 and res.counts["other_category"] == 1
    truth = dict(zip(s["path"], s["identity"]))
    for p, ident in zip(m["path"], m["identity"]):  # a new individual is never given a known identity
        if truth[p] in ("L-003", "L-004"):
            assert ident.startswith("NEW-")


def test_burst_grouping_and_flank_link(season):
    m = pd.read_csv(season["out"] / "matches.csv", dtype=str, keep_default_na=False).set_index("path")
    s = season["season"]
    a, b = (s.at[i, "path"] for i in season["burst"])
    assert m.at[a, "burst"] == m.at[b, "burst"] and m.at[a, "identity"] == m.at[b, "identity"]
    l3, r3 = (s.at[i, "path"] for i in season["pair"])
    assert r3 in m.at[l3, "flank_link"] and l3 in m.at[r3, "flank_link"]
    assert m.at[l3, "burst"] != m.at[r3, "burst"]  # opposite flanks' scores are never pooled
    # ...but a new animal's two flanks seen together at a paired station become one provisional individual
    assert m.at[l3, "identity"] == m.at[r3, "identity"] and m.at[l3, "identity"].startswith("NEW-")
    others = m.drop(index=[l3, r3])
    assert (others["flank_link"] == "").all()
    cap = _read_secr(season["out"] / "capthist.txt")
    ident = m.at[a, "identity"]
    occ = int(m.at[a, "occasion"])
    assert len([r for r in cap if r[1] == ident and int(r[2]) == occ and r[3] == m.at[a, "camera"]]) == 1


def test_paired_bursts_skip_ambiguous_visits():
    from leopard_reid.census.grouping import _paired_bursts

    # detections 0 (burst 0, left) and 1 (burst 1, right) seen together; 2 and 3 belong to bursts 2 and 3
    assert _paired_bursts([{1}, {0}, set(), set()], [0, 1, 2, 3]) == [(0, 1)]
    # two animals passing a station together: left burst 0 sees right bursts 1 and 2 -> no link at all
    assert _paired_bursts([{1, 2}, {0}, {0}], [0, 1, 2]) == []
    # a burst of two left frames, both seen with the one right detection: still one link
    assert _paired_bursts([{2}, {2}, {0, 1}], [0, 0, 1]) == [(0, 1)]


def test_link_flanks_merges_new_and_proposes_known_other_flank():
    from leopard_reid.census.grouping import _link_flanks

    # bursts 0..4 unmatched in clusters 0..3 (bursts 3 and 4 already clustered together); burst 9 known L-7
    cluster_of = {0: 0, 1: 1, 2: 2, 3: 3, 4: 3}
    merged, other = _link_flanks([(0, 1), (3, 9)], cluster_of, {9: "L-7"})
    assert merged[0] == merged[1] and len({merged[0], merged[2], merged[3]}) == 3
    assert merged[3] == merged[4] and other == {merged[3]: "L-7"}
    # a cluster seen with two different known individuals is not given either
    merged, other = _link_flanks([(2, 8), (2, 9)], cluster_of, {8: "L-6", 9: "L-7"})
    assert other == {}


def test_link_flanks_needs_most_paired_visits_to_agree():
    from leopard_reid.census.grouping import _link_flanks

    # a new animal seen at three paired visits: twice both flanks unmatched (bursts 0-1, 2-3), once its
    # right flank wrongly called known L-7 (burst 9, with its left flank burst 4): one wrong call must not
    # rename the animal's every sighting
    cluster_of = {0: 0, 1: 1, 2: 0, 3: 1, 4: 0}
    merged, other = _link_flanks([(0, 1), (2, 3), (4, 9)], cluster_of, {9: "L-7"})
    assert len(set(merged.values())) == 1 and other == {}
    # seen with L-7 at two visits and unmatched on both flanks at one: L-7's other flank, for a person to confirm
    merged, other = _link_flanks([(0, 1), (2, 9), (4, 8)], cluster_of, {8: "L-7", 9: "L-7"})
    assert other == {merged[0]: "L-7"}
    # a tie (one visit each way) proposes nothing
    merged, other = _link_flanks([(0, 1), (4, 9)], cluster_of, {9: "L-7"})
    assert other == {}


def _read_secr(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_capthist_and_traps_secr_format(season):
    text = (season["out"] / "capthist.txt").read_text()
    assert text.splitlines()[0].startswith("#") and "# Session ID Occasion Detector" in text
    cap = _read_secr(season["out"] / "capthist.txt")
    traps = _read_secr(season["out"] / "traps.txt")
    assert all(len(r) == 4 for r in cap) and all(len(r) == 4 for r in traps)
    detectors = {r[0]: r for r in traps}
    assert all(len(r[3]) == season["n_occ"] and set(r[3]) == {"1"} for r in traps)
    assert all(float(r[1]) >= 0 for r in traps)
    m = pd.read_csv(season["out"] / "matches.csv", dtype=str, keep_default_na=False)
    m = m[m["decision"] != "uncertain"]
    first = pd.to_datetime(season["season"]["datetime"]).min().normalize()
    expected = set()
    for ident, cam, when in zip(m["identity"], m["camera"], m["datetime"]):
        occ = (pd.Timestamp(when).normalize() - first).days // OCCASION_DAYS + 1
        expected.add(("1", ident, str(occ), cam))
    assert {tuple(r) for r in cap} == expected
    assert all(r[3] in detectors for r in cap)
    assert all(1 <= int(r[2]) <= season["n_occ"] for r in cap)
    assert len(cap) == len(expected)  # one line per individual, occasion and detector


def test_new_ids_stable_across_reruns(season, tmp_path, monkeypatch):
    from leopard_reid import cli

    m1 = pd.read_csv(season["out"] / "matches.csv", dtype=str, keep_default_na=False)
    new = m1[m1["identity"].str.startswith("NEW-")]
    assert len(new)
    order = list(dict.fromkeys(new.sort_values(["datetime", "path"])["identity"]))
    assert order == [f"NEW-{k:04d}" for k in range(1, len(order) + 1)]  # numbered by first sighting
    out2 = tmp_path / "rerun"
    code = cli.main(["census", "--detections", str(season["md"]), "--gallery", str(season["gallery"]),
                     "--sightings", str(season["sightings"]), "--cameras", str(season["cameras"]),
                     "--out", str(out2), "--occasion-days", str(OCCASION_DAYS), "--review-images", "0"])
    assert code == cli.EXIT_SKIPPED  # the missing and failed images are reported
    m2 = pd.read_csv(out2 / "matches.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(m1[["path", "identity", "decision"]], m2[["path", "identity", "decision"]])
    assert (out2 / "capthist.txt").read_text() == (season["out"] / "capthist.txt").read_text()


def test_apply_review_atomic_and_reversible(season, tmp_path):
    import shutil

    from leopard_reid import Gallery, cli

    gpath = tmp_path / "g.lrg"
    shutil.copyfile(season["gallery"], gpath)
    before = gpath.read_bytes()
    n_before = len(Gallery.load(gpath))
    dec = pd.read_csv(season["out"] / "decisions.csv", dtype=str, keep_default_na=False)
    assert list(dec.columns)[:5] == ["path", "bbox", "proposed", "decision", "identity"]
    # a broken row: nothing may be written
    bad = dec.copy()
    bad["decision"] = "confirm"
    bad.loc[0, "path"] = "nowhere/missing.jpg"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    code = cli.main(["census", "apply-review", str(tmp_path / "bad.csv"), "--gallery", str(gpath),
                     "--root", str(season["root"])])
    assert code == cli.EXIT_FAIL
    assert gpath.read_bytes() == before and not (tmp_path / "g.lrg.bak").exists()
    # confirm everything proposed, rename one provisional individual
    dec["decision"] = "confirm"
    new_ids = sorted({i for i in dec["proposed"] if i.startswith("NEW-")})
    dec.loc[dec["proposed"] == new_ids[0], ["decision", "identity"]] = ["change", "L-NEW-A"]
    dec.to_csv(tmp_path / "decisions.csv", index=False)
    code = cli.main(["census", "apply-review", str(tmp_path / "decisions.csv"), "--gallery", str(gpath),
                     "--root", str(season["root"])])
    assert code == cli.EXIT_OK
    g = Gallery.load(gpath)
    assert len(g) == n_before + len(dec)
    assert "L-NEW-A" in g.identities and new_ids[0] not in g.identities
    assert set(new_ids[1:]) <= set(g.identities) and {"L-001", "L-002"} <= set(g.identities)
    assert set(g.metadata["side"]) <= {"left", "right"}
    backup = gpath.with_name(gpath.name + ".bak")
    assert backup.read_bytes() == before and len(Gallery.load(backup)) == n_before
    # applying the same decisions again adds nothing
    from leopard_reid.census import apply_review

    assert apply_review(tmp_path / "decisions.csv", gallery=gpath, root=season["root"])["added"] == 0



def test_apply_review_refuses_an_unreadable_decisions_file_by_name(tmp_path):
    from leopard_reid.census import CensusError, apply_review

    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "broken.csv").write_text('path,bbox\n"a.jpg,[0, 0, 5, 5]\n')  # unterminated quote
    (tmp_path / "columns.csv").write_text("path,bbox\na.jpg,\n")
    cases = {"empty.csv": "not a readable CSV file", "broken.csv": "not a readable CSV file",
             "columns.csv": "missing proposed, decision, identity", "none.csv": "file not found", "": "is a folder"}
    for name, reason in cases.items():
        path = tmp_path / name
        with pytest.raises(CensusError) as err:
            apply_review(path, gallery=tmp_path / "g.lrg")  # refused before the gallery is opened
        assert str(err.value).startswith(f"{path}: ") and reason in str(err.value)

def test_cli_shape():
    from leopard_reid.cli import build_parser

    p = build_parser()
    a = p.parse_args(["census", "--detections", "md.json", "--gallery", "g", "--out", "o", "--min-conf", "0.3"])
    assert a.detections == "md.json" and a.min_conf == 0.3 and a.census_command is None
    b = p.parse_args(["census", "apply-review", "d.csv", "--gallery", "g", "--root", "r"])
    assert b.census_command == "apply-review" and b.decisions == "d.csv" and b.review_gallery == "g"


def test_progress_bars_cover_scoring_and_clustering(season, tmp_path, embedder, capsys):
    run_census(season["md"], gallery=season["gallery"], out=tmp_path / "p", sightings=season["sightings"],
               embedder=embedder, progress=True, review_images=0)
    err = capsys.readouterr().err
    assert "census: 100%" in err and "clustering new: 100%" in err
    n = len(season["season"])
    assert f"census:  {100 // n}%" in err or f"census:   {100 // n}%" in err  # moved after one detection


def test_progress_lines_off_a_terminal(season, tmp_path, embedder, capsys, monkeypatch):
    import leopard_reid.census.pipeline as census

    monkeypatch.setattr(census, "_tty", lambda: False)
    run_census(season["md"], gallery=season["gallery"], out=tmp_path / "p", sightings=season["sightings"],
               embedder=embedder, review_images=0, chunk_size=4)
    err = capsys.readouterr().err
    assert "census: 4/" in err and "detections scored" in err and "\r" not in err


# ------------------------------------------------------------------------------------------ issue 14: integrity
def test_known_animals_are_identified(season):
    m = pd.read_csv(season["out"] / "matches.csv", dtype=str, keep_default_na=False)
    truth = dict(zip(season["season"]["path"], season["season"]["identity"]))
    enrolled = [(truth[p], i, d) for p, i, d in zip(m["path"], m["identity"], m["decision"])
                if truth[p] in ("L-001", "L-002")]
    # never a wrong name: each is its own identity (known or awaiting review) -- no silent 50 % tolerance
    assert enrolled and all(ident == t for t, ident, _ in enrolled)


def test_rerun_keeps_an_edited_decisions_file_and_reports_unmatched_sightings(season, tmp_path, embedder):
    out = tmp_path / "again"
    out.mkdir()
    edited = "path,bbox,proposed,decision,identity\nx.jpg,,L-001,confirm,L-001\n"
    (out / "decisions.csv").write_text(edited)
    sightings = pd.read_csv(season["sightings"], dtype=str)
    extra = pd.DataFrame({"path": ["L-077/not_in_detections.jpg"], "camera": ["C1"],
                          "datetime": ["2023-06-01T10:00:00"], "side": ["left"]})
    pd.concat([sightings, extra]).to_csv(tmp_path / "s.csv", index=False)
    res = run_census(season["md"], gallery=season["gallery"], out=out, sightings=tmp_path / "s.csv",
                     embedder=embedder, occasion_days=OCCASION_DAYS, progress=False, review_images=0)
    assert (out / "decisions.csv").read_text() == edited  # the reviewer's file is untouched
    assert res.files["decisions"] != out / "decisions.csv" and res.files["decisions"].parent == out
    assert len(pd.read_csv(res.files["decisions"])) == len(res.detections)
    assert any("may hold a reviewer's edits" in n for n in res.notes)
    assert any("1 sightings row(s) match no detection" in n and "not_in_detections" in n for n in res.notes)
    info = json.loads((out / "census.json").read_text())
    assert Path(info["root"]) == season["root"].resolve()


def test_inputs_are_checked_before_any_detection_is_scored(season, tmp_path, monkeypatch):
    from leopard_reid.census import CensusError
    from leopard_reid.embed import Embedder

    def boom(*a, **k):
        raise AssertionError("scored before the inputs were checked")

    monkeypatch.setattr(Embedder, "describe", boom)
    cams = pd.DataFrame({"camera": ["C1", "C2"], "x": [0.0, 1.0], "y": [0.0, 0.0], "usage": ["111", "11"]})
    cases = [
        ({"cameras": cams}, "usage strings of different lengths"),
        ({"new_threshold": 3.0}, "off the fused method's scale"),
        ({"method": "local", "new_threshold": -1.0}, "off the local method's scale"),
        ({"season_start": "the first full moon"}, "is not a date"),
        ({"sightings": pd.DataFrame({"path": ["a.jpg"], "datetime": ["05/03/2024 10:00"]})}, "ambiguous"),
        ({"sightings": pd.DataFrame({"path": ["a.jpg"], "side": ["top"]})}, "unknown side 'top'"),
    ]
    for kwargs, reason in cases:
        with pytest.raises(CensusError, match=reason):
            run_census(season["md"], gallery=season["gallery"], out=tmp_path / "o", progress=False, **kwargs)


def test_date_order_is_explicit():
    from leopard_reid.census import CensusError
    from leopard_reid.census.dates import _parse_datetime

    with pytest.raises(CensusError, match="ambiguous"):
        _parse_datetime("05/03/2024 10:00")
    assert _parse_datetime("05/03/2024 10:00", "mdy") == datetime(2024, 5, 3, 10, 0)
    assert _parse_datetime("05/03/2024 10:00", "dmy") == datetime(2024, 3, 5, 10, 0)
    assert _parse_datetime("25/03/2024") == datetime(2024, 3, 25)  # unambiguous: day first
    assert _parse_datetime("03/25/2024 08:30:15") == datetime(2024, 3, 25, 8, 30, 15)
    assert _parse_datetime("2024:03:05 10:00:00") == datetime(2024, 3, 5, 10, 0)  # EXIF
    assert _parse_datetime("2024-03-05T10:00:00") == datetime(2024, 3, 5, 10, 0)  # ISO


def test_missing_station_is_the_camera_itself():
    from leopard_reid.census.sightings import _read_cameras

    cams = _read_cameras(pd.DataFrame({"camera": ["C1", "C2", "C3"], "x": [0, 1, 2], "y": [0, 0, 0],
                                       "station": [None, "S1", np.nan]}))
    assert list(cams["station"]) == ["C1", "S1", "C3"]


def test_census_that_reads_nothing_says_where_it_looked(season, tmp_path, capsys):
    from leopard_reid import cli

    code = cli.main(["census", "--detections", str(season["md"]), "--root", str(tmp_path), "--gallery",
                     str(season["gallery"]), "--out", str(tmp_path / "o")])
    assert code == cli.EXIT_FAIL
    err = capsys.readouterr().err
    assert "could be read" in err and f"looked in {tmp_path}" in err and "--root" in err
    assert "Traceback" not in err


def test_census_options_are_checked_at_parse_time(season, tmp_path, capsys):
    from leopard_reid import cli

    base = ["census", "--gallery", str(season["gallery"]), "--out", str(tmp_path / "o")]
    assert cli.main([*base, "--detections", str(tmp_path)]) == cli.EXIT_USAGE  # a folder
    assert "is a folder" in capsys.readouterr().err
    for opt, value in (("--min-conf", "1.5"), ("--occasion-days", "0"), ("--batch-size", "0"),
                       ("--burst-seconds", "-1"), ("--date-order", "ymd")):
        assert cli.main([*base, "--detections", str(season["md"]), opt, value]) == cli.EXIT_USAGE, opt
    assert "Traceback" not in capsys.readouterr().err


def test_empty_capture_history_is_an_error(season, tmp_path, capsys):
    from leopard_reid import cli

    cams = tmp_path / "cams.csv"
    pd.DataFrame({"camera": ["nowhere-1"], "x": [0.0], "y": [0.0]}).to_csv(cams, index=False)
    code = cli.main(["census", "--detections", str(season["md"]), "--gallery", str(season["gallery"]),
                     "--sightings", str(season["sightings"]), "--cameras", str(cams), "--out", str(tmp_path / "o"),
                     "--review-images", "0"])
    assert code == cli.EXIT_FAIL
    err = capsys.readouterr().err
    assert "has no capture" in err and "missing from the cameras table" in err


def test_apply_review_finds_the_photos_the_census_read(season, tmp_path):
    import shutil

    from leopard_reid.census import apply_review

    gpath = tmp_path / "g.lrg"
    shutil.copyfile(season["gallery"], gpath)
    s = apply_review(season["out"] / "decisions.csv", gallery=gpath)  # no root: census.json says where
    assert s["added"] > 0


def test_census_with_a_keypoint_score_threshold_clusters_new_animals(season, tmp_path, embedder):
    """A local-method threshold is on the keypoint-score scale (> 1): clustering must not get a negative cut."""
    res = run_census(season["md"], gallery=season["gallery"], out=tmp_path / "local", sightings=season["sightings"],
                     embedder=embedder, method="local", new_threshold=5.0, progress=False, review_images=0)
    truth = dict(zip(season["season"]["path"], season["season"]["identity"]))
    new = res.detections[[truth[p] in ("L-003", "L-004") for p in res.detections["path"]]]
    assert len(new) and new["identity"].str.startswith("NEW-").all()
    assert res.counts["new_individuals"] >= 2  # L-003 and L-004 are not one animal
    from leopard_reid.census.identities import _distance

    assert _distance(np.array([5.0]), "local")[0] > 0


def test_census_options_are_run_census_keyword_arguments():
    """CensusOptions holds run_census's settings under the same names and defaults (the signature is the API)."""
    import dataclasses
    import inspect

    from leopard_reid.census import CensusOptions

    params = inspect.signature(run_census).parameters
    settings = {k: p.default for k, p in params.items() if k not in ("detections", "gallery", "out", "embedder",
                                                                     "client")}
    assert {f.name: f.default for f in dataclasses.fields(CensusOptions)} == settings
    with pytest.raises(dataclasses.FrozenInstanceError):
        CensusOptions().method = "local"  # type: ignore[misc]
