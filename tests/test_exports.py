"""Exports: secr (sessions, covariates, usage), oSCR, camtrapR and Camtrap DP 1.0, parsed back and counted."""

from __future__ import annotations

import json
import re
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leopard_reid.exports import (
    ExportError,
    camera_effort,
    individual_covariates,
    parse_formats,
    read_camera_operation,
    write_camtrapdp,
    write_capthist,
    write_exports,
)

OCCASION_DAYS = 7


def _secr(path: Path) -> list[list[str]]:
    return [ln.split() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def _table(rows: list[tuple[str, str, str, int | None]], decision: str = "known") -> pd.DataFrame:
    """A minimal matches table: (identity, camera, datetime, occasion) per detection."""
    return pd.DataFrame({
        "path": [f"{c}/img{k}.jpg" for k, (_, c, _, _) in enumerate(rows)],
        "bbox": "[10, 20, 30, 40]", "camera": [r[1] for r in rows], "datetime": [r[2] for r in rows],
        "side": "left", "identity": [r[0] for r in rows], "score": 0.97, "decision": decision,
        "occasion": pd.array([r[3] for r in rows], dtype="Int64"), "burst": "B00001",
    })


def _cams(names: list[str], **cols: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"camera": names, "x": [100.0 * i for i in range(len(names))], "y": 5.0, **cols})


# ------------------------------------------------------------------------------------- identifiers, formats
def test_colliding_identifiers_are_refused_not_merged(tmp_path):
    t = _table([("L_01", "A", "2024-01-01T10:00:00", 1), ("L-01", "A", "2024-01-02T10:00:00", 2)])
    with pytest.raises(ExportError, match=r"identity names 'L-01' and 'L_01' would both be written as 'L-01'"):
        write_capthist(t, tmp_path / "c.txt")
    assert not (tmp_path / "c.txt").exists()
    t = _table([("L-01", "cam 1", "2024-01-01T10:00:00", 1)])
    with pytest.raises(ExportError, match=r"camera names 'cam 1' and 'cam_1' would both"):
        write_capthist(t, tmp_path / "c.txt", tmp_path / "t.txt", _cams(["cam 1", "cam_1"]))
    with pytest.raises(ExportError, match="reads as missing"):
        write_capthist(_table([("NA", "A", "2024-01-01T10:00:00", 1)]), tmp_path / "c.txt")


def test_detector_ids_valid_for_secr_and_all_in_traps(tmp_path):
    t = _table([("L 7", "cam#1", "2024-01-01T10:00:00", 1), ("L 7", "Bob's cam", "2024-01-02T10:00:00", 2)])
    write_capthist(t, tmp_path / "c.txt", tmp_path / "t.txt", _cams(["cam#1", "Bob's cam", "C,3"]))
    cap, traps = _secr(tmp_path / "c.txt"), _secr(tmp_path / "t.txt")
    ids = [r[0] for r in traps]
    assert ids == ["cam-1", "Bob-s-cam", "C-3"]
    assert all(re.fullmatch(r"[^\s,_#'\"]+", i) for i in ids + [r[1] for r in cap])
    assert {r[3] for r in cap} <= set(ids) and {r[1] for r in cap} == {"L-7"}
    assert 'detector = "proximity"' in (tmp_path / "c.R").read_text()


def test_parse_formats():
    assert parse_formats("camtrapdp, secr") == ("secr", "camtrapdp")
    assert parse_formats("all") == ("secr", "oscr", "camtrapr", "camtrapdp")
    with pytest.raises(ExportError, match="unknown export format.*spreadsheet"):
        parse_formats("secr,spreadsheet")


# ------------------------------------------------------------------------------------- occasions, usage
def test_detections_before_the_season_start_never_get_occasion_below_one(tmp_path):
    t = _table([("L-1", "A", "", -1), ("L-1", "A", "", 0), ("L-2", "A", "", 1), ("L-2", "B", "", 3)])
    with pytest.warns(UserWarning, match=r"2 detection\(s\) before the season start"):
        notes = write_capthist(t, tmp_path / "c.txt", tmp_path / "t.txt", _cams(["A", "B"]))
    cap = _secr(tmp_path / "c.txt")
    assert sorted(int(r[2]) for r in cap) == [1, 3]
    assert any("before the season start" in n for n in notes)
    assert "before the season start" in (tmp_path / "c.txt").read_text()


def test_usage_from_start_end_and_problem_dates(tmp_path):
    start = datetime(2024, 1, 1)
    cams = _cams(["A", "B", "C"], start=["2024-01-01", "2024-01-03", "2023-12-20"],
                 end=["2024-01-06", "2024-01-04", "2024-01-06"],
                 problem1_from=["", "", "2024-01-03"], problem1_to=["", "", "2024-01-04"])
    eff = camera_effort(cams, season_start=start, occasion_days=2)
    # occasions of 2 days: Jan 1-2, 3-4, 5-6; C was off on Jan 3-4 and ran before the season (not counted)
    assert eff.to_numpy().tolist() == [[2, 2, 2], [0, 2, 0], [2, 0, 2]]
    t = _table([("L-1", "A", "2024-01-01T10:00:00", 1), ("L-1", "C", "2024-01-03T10:00:00", 2),
                ("L-2", "B", "2024-01-04T10:00:00", 2), ("L-2", "A", "2024-01-06T10:00:00", 3)])
    with pytest.warns(UserWarning, match="camera was not operating"):
        write_capthist(t, tmp_path / "c.txt", tmp_path / "t.txt", cams, season_start=start, occasion_days=2)
    assert [r[3] for r in _secr(tmp_path / "t.txt")] == ["111", "010", "101"]
    assert {(r[1], r[2], r[3]) for r in _secr(tmp_path / "c.txt")} == {("L-1", "1", "A"), ("L-2", "2", "B"),
                                                                      ("L-2", "3", "A")}
    # a camera set up at noon works half of its first day: usage becomes effort in days
    cams.loc[0, "start"] = "2024-01-01 12:00"
    write_capthist(t.iloc[[2]], tmp_path / "c.txt", tmp_path / "t.txt", cams, season_start=start, occasion_days=2)
    assert _secr(tmp_path / "t.txt")[0][3:] == ["1.5", "2", "2"]
    assert "binary.usage = FALSE" in (tmp_path / "c.R").read_text()
    with pytest.raises(ExportError, match="cameras table, camera 'B', end: '04/01/2024' is not an ISO date"):
        camera_effort(cams.assign(end=["2024-01-06", "04/01/2024", "2024-01-06"]), season_start=start)


def test_camera_operation_table_gives_the_same_usage(tmp_path):
    op = pd.DataFrame({"Station": ["A", "B"], "2024-01-01": ["1", "0"], "2024-01-02": ["1", "1"],
                       "2024-01-03": ["0", "1"], "2024-01-04": ["", "0.5"]})
    op.to_csv(tmp_path / "camop.csv", index=False)
    got = read_camera_operation(tmp_path / "camop.csv")
    eff = camera_effort(_cams(["A", "B"]), season_start=datetime(2024, 1, 1), occasion_days=2, operation=got)
    assert eff.to_numpy().tolist() == [[2, 0], [1, 1.5]]
    op["2024-01-02"] = ["1", "yes"]
    with pytest.raises(ExportError, match="values must be numbers from 0 to 1"):
        read_camera_operation(op)


# ------------------------------------------------------------------------------------- sessions, covariates
def test_sessions_append_into_one_capthist_and_rerun_replaces(tmp_path):
    shared = tmp_path / "all" / "capthist.txt"
    shared.parent.mkdir()
    cams = _cams(["A", "B"], usage=["11", "11"])
    y1 = _table([("L-1", "A", "", 1), ("L-2", "B", "", 2)])
    y2 = _table([("L-1", "B", "", 1)])
    write_capthist(y1, shared, shared.with_name("traps-2023.txt"), cams, session="2023", append=True)
    write_capthist(y2, shared, shared.with_name("traps-2024.txt"), cams, session="2024", append=True)
    write_capthist(y2, shared, shared.with_name("traps-2024.txt"), cams, session="2024", append=True)  # rerun
    cap = _secr(shared)
    assert sorted(map(tuple, cap)) == [("2023", "L-1", "1", "A"), ("2023", "L-2", "2", "B"), ("2024", "L-1", "1", "B")]
    r = (shared.parent / "capthist.R").read_text()
    assert 'read.capthist("capthist.txt", c("traps-2023.txt", "traps-2024.txt"), fmt = "trapID"' in r
    assert _secr(shared.with_name("traps-2023.txt"))[0] == ["A", "0.00", "5.00", "1", "1"]  # spaced: any usage mode
    with pytest.raises(ExportError, match="rewrites its own capthist.txt"):
        write_exports(y2, shared.parent, cameras=cams, session="2024", append_to=shared)
    assert len(_secr(shared)) == 3
    cov = pd.DataFrame({"sex": ["F"]}, index=pd.Index(["L-1"], name="identity"))
    with pytest.raises(ExportError, match="differ from this session's"):
        write_capthist(y2, shared, shared.with_name("traps-2025.txt"), cams, session="2025", append=True,
                       covariates=cov)


def test_individual_covariates_from_gallery_metadata(tmp_path):
    meta = pd.DataFrame({"identity": ["L-1", "L-1", "L-2", "L-3"], "sex": ["female", "", "M", None]})
    cov = individual_covariates(meta)
    assert cov["sex"].to_dict() == {"L-1": "F", "L-2": "M"}
    t = _table([("L-1", "A", "", 1), ("L-2", "A", "", 1), ("L-3", "A", "", 2)])
    write_capthist(t, tmp_path / "c.txt", covariates=cov)
    assert sorted((r[1], r[4]) for r in _secr(tmp_path / "c.txt")) == [("L-1", "F"), ("L-2", "M"), ("L-3", "NA")]
    assert "# Session ID Occasion Detector sex" in (tmp_path / "c.txt").read_text()
    with pytest.raises(ExportError, match="'L-1' has sex 'F' and 'M'"):
        individual_covariates(pd.DataFrame({"identity": ["L-1", "L-1"], "sex": ["F", "male"]}))
    assert individual_covariates(pd.DataFrame({"identity": ["L-1"]})).empty


# ------------------------------------------------------------------------------------- Camtrap DP schema facts
# Camtrap DP 1.0 (https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0/<table>-table-schema.json), written down
# here: (field, type, required, constraint). Types: s string, n number, i integer, d datetime
# (%Y-%m-%dT%H:%M:%S%z), b boolean; constraint: a tuple of allowed values or a (min, max) range.
DP = {
    "deployments": [
        ("deploymentID", "s", True, None), ("locationID", "s", False, None), ("locationName", "s", False, None),
        ("latitude", "n", True, (-90, 90)), ("longitude", "n", True, (-180, 180)),
        ("coordinateUncertainty", "i", False, (1, None)), ("deploymentStart", "d", True, None),
        ("deploymentEnd", "d", True, None), ("setupBy", "s", False, None), ("cameraID", "s", False, None),
        ("cameraModel", "s", False, None), ("cameraDelay", "i", False, (0, None)),
        ("cameraHeight", "n", False, (0, None)), ("cameraDepth", "n", False, (0, None)),
        ("cameraTilt", "i", False, (-90, 90)), ("cameraHeading", "i", False, (0, 360)),
        ("detectionDistance", "n", False, (0, None)), ("timestampIssues", "b", False, None),
        ("baitUse", "b", False, None), ("featureType", "s", False, None), ("habitat", "s", False, None),
        ("deploymentGroups", "s", False, None), ("deploymentTags", "s", False, None),
        ("deploymentComments", "s", False, None)],
    "media": [
        ("mediaID", "s", True, None), ("deploymentID", "s", True, None),
        ("captureMethod", "s", False, ("activityDetection", "timeLapse")), ("timestamp", "d", True, None),
        ("filePath", "s", True, None), ("filePublic", "b", True, None), ("fileName", "s", False, None),
        ("fileMediatype", "s", True, None), ("exifData", "s", False, None), ("favorite", "b", False, None),
        ("mediaComments", "s", False, None)],
    "observations": [
        ("observationID", "s", True, None), ("deploymentID", "s", True, None), ("mediaID", "s", False, None),
        ("eventID", "s", False, None), ("eventStart", "d", True, None), ("eventEnd", "d", True, None),
        ("observationLevel", "s", True, ("media", "event")),
        ("observationType", "s", True, ("animal", "human", "vehicle", "blank", "unknown", "unclassified")),
        ("cameraSetupType", "s", False, ("setup", "calibration")), ("scientificName", "s", False, None),
        ("count", "i", False, (1, None)), ("lifeStage", "s", False, ("adult", "subadult", "juvenile")),
        ("sex", "s", False, ("female", "male")), ("behavior", "s", False, None), ("individualID", "s", False, None),
        ("individualPositionRadius", "n", False, (0, None)), ("individualPositionAngle", "n", False, (-90, 90)),
        ("individualSpeed", "n", False, (0, None)), ("bboxX", "n", False, (0, 1)), ("bboxY", "n", False, (0, 1)),
        ("bboxWidth", "n", False, (1e-15, 1)), ("bboxHeight", "n", False, (1e-15, 1)),
        ("classificationMethod", "s", False, ("human", "machine")), ("classifiedBy", "s", False, None),
        ("classificationTimestamp", "d", False, None), ("classificationProbability", "n", False, (0, 1)),
        ("observationTags", "s", False, None), ("observationComments", "s", False, None)],
}
_PRIMARY = {"deployments": "deploymentID", "media": "mediaID", "observations": "observationID"}
_FILEPATH = re.compile(r"^(?=^[^./~])(^((?!\.{2}).)*$).*$")  # media.filePath pattern of the 1.0 schema


def _cell_ok(v: str, kind: str, rule) -> bool:
    if kind == "d":
        datetime.strptime(v, "%Y-%m-%dT%H:%M:%S%z")  # raises on a timestamp without its offset
        return True
    if kind == "b":
        return v in ("true", "false")
    if kind in ("n", "i"):
        x = float(v) if kind == "n" else int(v)
        lo, hi = rule if isinstance(rule, tuple) and len(rule) == 2 and not isinstance(rule[0], str) else (None, None)
        return (lo is None or x >= lo) and (hi is None or x <= hi)
    return rule is None or not isinstance(rule[0], str) or v in rule


def validate_camtrapdp(folder: Path) -> dict[str, pd.DataFrame]:
    """Check a package against the 1.0 facts above: profile keys, resources, headers in schema order, required
    cells, types, ranges, enums, unique keys, foreign keys; returns the tables."""
    pkg = json.loads((folder / "datapackage.json").read_text())
    for key in ("profile", "created", "contributors", "project", "spatial", "temporal", "taxonomic", "resources"):
        assert key in pkg, key
    assert pkg["profile"] == "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0/camtrap-dp-profile.json"
    for key in ("title", "samplingDesign", "captureMethod", "individualAnimals", "observationLevel"):
        assert key in pkg["project"], key
    assert pkg["project"]["samplingDesign"] in ("simpleRandom", "systematicRandom", "clusteredRandom",
                                                "experimental", "targeted", "opportunistic")
    assert all(c.get("title") for c in pkg["contributors"])
    assert datetime.strptime(pkg["temporal"]["start"], "%Y-%m-%d") <= datetime.strptime(pkg["temporal"]["end"],
                                                                                         "%Y-%m-%d")
    datetime.fromisoformat(pkg["created"])
    assert all(t["scientificName"] for t in pkg["taxonomic"])
    tables = {}
    for res in pkg["resources"]:
        name = res["name"]
        assert res["profile"] == "tabular-data-resource"
        assert res["schema"] == f"https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0/{name}-table-schema.json"
        df = pd.read_csv(folder / res["path"], dtype=str, keep_default_na=False)
        assert list(df.columns) == [f[0] for f in DP[name]], name
        for field, kind, required, rule in DP[name]:
            cells = df[field]
            if required:
                assert (cells != "").all(), f"{name}.{field} has empty required cells"
            assert all(_cell_ok(v, kind, rule) for v in cells if v != ""), f"{name}.{field}"
        assert df[_PRIMARY[name]].is_unique
        tables[name] = df
    assert {r["name"] for r in pkg["resources"]} == {"deployments", "media", "observations"}
    deps = set(tables["deployments"]["deploymentID"])
    assert set(tables["media"]["deploymentID"]) <= deps and set(tables["observations"]["deploymentID"]) <= deps
    assert set(tables["observations"]["mediaID"]) - {""} <= set(tables["media"]["mediaID"])
    assert all(_FILEPATH.match(p) for p in tables["media"]["filePath"])
    return tables


def test_camtrapdp_validator_catches_a_broken_package(tmp_path):
    """The validator above is a real check: an offset-less timestamp and a bbox over 1 are both caught."""
    root = tmp_path / "img"
    (root / "A").mkdir(parents=True)
    Image.new("RGB", (100, 50)).save(root / "A" / "img0.jpg")
    t = _table([("L-1", "A", "2024-01-01T10:00:00", 1)])
    cams = _cams(["A"], latitude=["-1.5"], longitude=["36.9"])
    write_camtrapdp(t, tmp_path, cams, root=root, utc_offset="+03:00")
    obs = validate_camtrapdp(tmp_path)["observations"]
    assert obs.loc[0, ["bboxX", "bboxY", "bboxWidth", "bboxHeight"]].astype(float).tolist() == [0.1, 0.4, 0.3, 0.8]
    assert obs.loc[0, "eventStart"] == "2024-01-01T10:00:00+03:00"
    bad = pd.read_csv(tmp_path / "observations.csv", dtype=str, keep_default_na=False)
    bad.loc[0, "bboxHeight"] = "1.6"
    bad.to_csv(tmp_path / "observations.csv", index=False)
    with pytest.raises(AssertionError, match="bboxHeight"):
        validate_camtrapdp(tmp_path)
    write_camtrapdp(t, tmp_path, cams, root=root)
    media = pd.read_csv(tmp_path / "media.csv", dtype=str, keep_default_na=False)
    media.loc[0, "timestamp"] = "2024-01-01T10:00:00"
    media.to_csv(tmp_path / "media.csv", index=False)
    with pytest.raises(ValueError):
        validate_camtrapdp(tmp_path)
    t2 = pd.concat([t, _table([("L-2", "Z", "2024-01-02T10:00:00", 2), ("L-2", "A", "", None)])], ignore_index=True)
    with pytest.warns(UserWarning, match=r"1 detection\(s\) without a date and 1 at camera\(s\) missing"):
        write_camtrapdp(t2, tmp_path, cams, root=root)
    assert validate_camtrapdp(tmp_path)["observations"]["individualID"].tolist() == ["L-1"]
    with pytest.raises(ExportError, match="^cams.csv: the camtrapdp export needs latitude and longitude"):
        write_exports(t, tmp_path, formats=("camtrapdp",), cameras=_cams(["A"]), cameras_name="cams.csv")


# ------------------------------------------------------------------------------------- a real census
@pytest.fixture(scope="module")
def census(tmp_path_factory, embedder):
    """4 synthetic leopards x 4 framed sightings; L-001 (female) and L-002 (male) enrolled; all exports."""
    from leopard_reid import Gallery
    from leopard_reid.census import run_census
    from leopard_reid.synthetic import generate

    root = tmp_path_factory.mktemp("exports")
    df = generate(root, n_individuals=4, sightings_per_individual=4, seed=5, frame=True,
                  frame_size=(640, 400), size=(320, 200))
    enrolled = df[df["identity"].isin(["L-001", "L-002"])].groupby(["identity", "side"]).head(1)
    g = enrolled[["path", "identity", "side", "bbox"]].assign(
        sex=enrolled["identity"].map({"L-001": "female", "L-002": "M"})).reset_index(drop=True)
    gpath = root / "gallery.lrg"
    Gallery.build(embedder, g, root=root).save(gpath)
    s = df.drop(index=enrolled.index).reset_index(drop=True)
    cam0 = sorted(s["camera"].unique())[0]
    s["camera"] = s["camera"].replace({cam0: f"{cam0[0]}_{cam0[1:]}"})  # C_02: written as C-02 in secr files
    images = []
    for p, b in zip(s["path"], s["bbox"]):
        w, h = Image.open(root / p).size
        x, y, bw, bh = json.loads(b)
        box = [x / w, y / h, bw / w, bh / h]
        images.append({"file": p, "detections": [{"category": "1", "conf": 0.9, "bbox": box}]})
    md = root / "md.json"
    md.write_text(json.dumps({"detection_categories": {"1": "animal"}, "images": images}))
    s[["path", "camera", "datetime", "side"]].to_csv(root / "sightings.csv", index=False)
    days = pd.to_datetime(s["datetime"]).dt.normalize()
    cams = sorted(s["camera"].unique())
    pd.DataFrame({
        "camera": cams, "x": np.arange(len(cams)) * 500.0, "y": 100.0,
        "start": (days.min() - timedelta(days=3)).strftime("%Y-%m-%d"), "end": days.max().strftime("%Y-%m-%d"),
        "latitude": -2.0 - np.arange(len(cams)) * 0.01, "longitude": 34.8, "habitat": "woodland",
    }).to_csv(root / "cameras.csv", index=False)
    out = root / "out"
    res = run_census(md, gallery=gpath, out=out, sightings=root / "sightings.csv", cameras=root / "cameras.csv",
                     embedder=embedder, occasion_days=OCCASION_DAYS, progress=False, review_images=0,
                     exports="all", session="2023", utc_offset="+03:00")
    m = pd.read_csv(out / "matches.csv", dtype=str, keep_default_na=False)
    k = int(((days.max() - days.min()).days + 1 + OCCASION_DAYS - 1) // OCCASION_DAYS)
    return {"root": root, "out": out, "res": res, "m": m, "k": k, "season": s, "md": md, "gallery": gpath}


def _expected_lines(m: pd.DataFrame) -> set[tuple[str, str, str]]:
    ok = m[m["decision"] != "uncertain"]
    return set(zip(ok["identity"], ok["occasion"], ok["camera"]))


def test_census_secr_matches_the_matches_table(census):
    out, m = census["out"], census["m"]
    cap = _secr(out / "capthist.txt")
    want = {(i, o, c.replace("_", "-")) for i, o, c in _expected_lines(m)}
    assert {(r[1], r[2], r[3]) for r in cap} == want and len(cap) == len(want)
    assert {r[0] for r in cap} == {"2023"}
    want_sex = {"L-001": "F", "L-002": "M"}
    assert {r[1] for r in cap} & set(want_sex)
    assert all(r[4] == want_sex.get(r[1], "NA") for r in cap)  # the gallery's sex; NA for new individuals
    traps = _secr(out / "traps.txt")
    assert all(r[3] == "1" * census["k"] for r in traps)  # every camera ran the whole season
    assert {r[0] for r in traps} == {c.replace("_", "-") for c in census["season"]["camera"]}
    r = (out / "capthist.R").read_text()
    assert 'read.capthist("capthist.txt", "traps.txt", fmt = "trapID", detector = "proximity"' in r
    assert 'covnames = c("sex")' in r


def test_census_oscr_tables(census):
    out, m, k = census["out"], census["m"], census["k"]
    edf = pd.read_csv(out / "oscr_edf.csv", dtype=str)
    tdf = pd.read_csv(out / "oscr_tdf.csv", dtype=str)
    assert list(edf.columns) == ["session", "individual", "occasion", "trap", "sex"]
    assert set(zip(edf["individual"], edf["occasion"], edf["trap"])) == _expected_lines(m)
    assert len(edf) == len(_expected_lines(m))
    assert list(tdf.columns) == ["TrapID", "X", "Y", *[f"occ{j}" for j in range(1, k + 1)], "sep", "habitat"]
    assert (tdf["sep"] == "/").all() and set(edf["trap"]) <= set(tdf["TrapID"])
    assert edf["occasion"].astype(int).between(1, k).all()
    assert set(edf.loc[edf["individual"] == "L-001", "sex"]) <= {"F"} and set(edf["sex"]) <= {"F", "M", "U"}


def test_census_camtrapr_tables(census):
    out, m = census["out"], census["m"]
    rec = pd.read_csv(out / "camtrapr_records.csv", dtype=str)
    ct = pd.read_csv(out / "camtrapr_cameras.csv", dtype=str)
    assert list(rec.columns) == ["Station", "Species", "Individual", "DateTimeOriginal", "Date", "Time", "Directory",
                                 "FileName"]
    assert list(ct.columns) == ["Station", "utm_x", "utm_y", "Setup_date", "Retrieval_date"]
    ok = m[m["decision"] != "uncertain"]
    assert len(rec) == len(ok)
    assert sorted(zip(rec["Directory"] + "/" + rec["FileName"], rec["Individual"])) == sorted(
        zip(ok["path"], ok["identity"]))
    assert set(rec["Station"]) <= set(ct["Station"]) and (rec["Species"] == "Panthera pardus").all()
    for v in rec["DateTimeOriginal"]:
        datetime.strptime(v, "%Y-%m-%d %H:%M:%S")  # camtrapR's recordDateTimeFormat = "ymd HMS"
    cams = pd.read_csv(census["root"] / "cameras.csv", dtype=str)
    assert ct["Setup_date"].tolist() == cams["start"].tolist() and ct["Retrieval_date"].tolist() == cams["end"].tolist()


def test_census_camtrapdp_package(census):
    out, m = census["out"], census["m"]
    tables = validate_camtrapdp(out)
    obs, media = tables["observations"], tables["media"]
    assert len(obs) == len(m) and len(media) == m["path"].nunique()
    assert (obs["classificationMethod"] == "machine").all() and (obs["observationType"] == "animal").all()
    by_path = dict(zip(media["mediaID"], media["filePath"]))
    got = sorted(zip([by_path[i] for i in obs["mediaID"]], obs["individualID"]))
    assert got == sorted(zip(m["path"], m["identity"]))
    known = obs["observationTags"] == "decision:known"
    assert (obs.loc[known, "classificationProbability"] != "").all()
    assert obs.loc[known, "classificationProbability"].astype(float).tolist() == pytest.approx(
        m.loc[m["decision"] == "known", "score"].astype(float).tolist(), abs=1e-4)
    # the relative box times the image size gives back the census's pixel box
    first = obs.iloc[0]
    path = by_path[first["mediaID"]]
    w, h = Image.open(census["root"] / path).size
    px = json.loads(m.loc[m["path"] == path, "bbox"].iloc[0])
    assert [round(float(first["bboxX"]) * w), round(float(first["bboxY"]) * h)] == px[:2]
    assert all(v.endswith("+03:00") for v in obs["eventStart"])
    assert (obs.loc[obs["individualID"] == "L-001", "sex"].isin(["female"])).all()


def test_census_season_start_after_first_detection(census, tmp_path, embedder):
    """Issue 14: a later --season-start left occasion 0 and negative occasions in capthist.txt."""
    from leopard_reid.census import run_census

    first = pd.to_datetime(census["season"]["datetime"]).min()
    later = (first + timedelta(days=20)).strftime("%Y-%m-%d")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_census(census["md"], gallery=census["gallery"], out=tmp_path, sightings=census["root"] / "sightings.csv",
                   embedder=embedder, occasion_days=OCCASION_DAYS, progress=False, review_images=0,
                   season_start=later)
    m = pd.read_csv(tmp_path / "matches.csv", dtype=str, keep_default_na=False)
    early = (m["occasion"].astype(int) < 1) & (m["decision"] != "uncertain")
    assert early.any()
    assert any("before the season start" in str(w.message) for w in caught)
    cap = _secr(tmp_path / "capthist.txt")
    assert cap and all(int(r[2]) >= 1 for r in cap)
    assert {(r[1], r[2]) for r in cap} == {(i, o) for i, o, _ in _expected_lines(m[m["occasion"].astype(int) >= 1])}


def test_cli_export_options():
    from leopard_reid.cli import build_parser

    a = build_parser().parse_args(["census", "--detections", "md.json", "--gallery", "g", "--out", "o"])
    assert a.export == "secr" and a.session == "1" and a.append_to is None and a.utc_offset == "+00:00"
    b = build_parser().parse_args(["census", "--detections", "md.json", "--gallery", "g", "--out", "o", "--export",
                                   "all", "--session", "2024", "--append-to", "all/capthist.txt",
                                   "--camera-operation", "camop.csv", "--utc-offset", "+05:30"])
    assert parse_formats(b.export) == ("secr", "oscr", "camtrapr", "camtrapdp")
    assert (b.session, b.append_to, b.camera_operation, b.utc_offset) == ("2024", "all/capthist.txt", "camop.csv",
                                                                         "+05:30")


def test_census_refuses_colliding_names_before_scoring(census, tmp_path):
    from leopard_reid import Gallery
    from leopard_reid.census import run_census

    cams = pd.read_csv(census["root"] / "cameras.csv", dtype=str)
    under = cams.index[cams["camera"].str.contains("_")][0]
    cams.loc[len(cams)] = cams.loc[under]
    cams.loc[len(cams) - 1, "camera"] = cams.loc[under, "camera"].replace("_", " ")  # C_02 and C 02
    cams.to_csv(tmp_path / "cams.csv", index=False)
    with pytest.raises(ExportError, match=r"cams.csv: camera names .* would both be written as 'C-02'"):
        run_census(census["md"], gallery=census["gallery"], out=tmp_path / "o", cameras=tmp_path / "cams.csv",
                   sightings=census["root"] / "sightings.csv", progress=False)
    g = Gallery.from_embeddings(np.eye(2, 8, dtype=np.float32), ["L_01", "L-01"])
    g.save(tmp_path / "g.lrg")
    with pytest.raises(ExportError, match=r"g.lrg: identity names 'L-01' and 'L_01' would both"):
        run_census(census["md"], gallery=tmp_path / "g.lrg", out=tmp_path / "o", progress=False)
    assert not (tmp_path / "o" / "matches.csv").exists()  # refused before any detection was scored
