"""Keypoints from the animal, not the scene: the foreground map on synthetic wild photos."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leopard_reid.foreground import Foreground, foreground_mask
from leopard_reid.local import extract_features, verify
from leopard_reid.synthetic import generate
from leopard_reid.synthetic_wild import read_truth


@pytest.fixture(scope="module")
def wild(tmp_path_factory) -> tuple[Path, pd.DataFrame, dict[str, tuple]]:
    """8 animals x 3 wild photos (shared trap backgrounds, photographers' watermarks), with plain-SIFT
    features of each photo extracted without and with the foreground mask."""
    out = tmp_path_factory.mktemp("wild")
    generate(out, wild=True, n_individuals=8, sightings_per_individual=3, seed=5)
    truth = read_truth(out)
    feats = {}
    for path in truth["path"]:
        img = np.asarray(Image.open(out / path).convert("RGB"))
        feats[path] = (extract_features(img, max_tilt=1, foreground=False),
                       extract_features(img, max_tilt=1, foreground=True))
    return out, truth, feats


def _animal(out: Path, mask_path: str) -> np.ndarray:
    return cv2.imread(str(out / mask_path), cv2.IMREAD_UNCHANGED) > 0


def _share_on(points: np.ndarray, animal: np.ndarray) -> float:
    x = np.clip(np.round(points[:, 0]).astype(int), 0, animal.shape[1] - 1)
    y = np.clip(np.round(points[:, 1]).astype(int), 0, animal.shape[0] - 1)
    return float(animal[y, x].mean()) if len(points) else 0.0


def test_the_map_covers_the_animal_and_most_keypoints_land_on_it(wild) -> None:
    out, truth, feats = wild
    cover, plain, kept = [], [], []
    for r in truth.itertuples():
        animal = _animal(out, r.mask)
        mask = foreground_mask(Image.open(out / r.path))
        assert mask.shape == animal.shape and mask.dtype == bool
        cover.append((mask & animal).sum() / animal.sum())
        plain.append(_share_on(feats[r.path][0].points, animal))
        kept.append(_share_on(feats[r.path][1].points, animal))
    assert np.mean(cover) > 0.75  # measured 0.88
    assert np.mean(kept) > 0.8 and np.mean(kept) > np.mean(plain) + 0.08  # measured 0.90 vs 0.74


def _pairs(truth: pd.DataFrame, same) -> list[tuple[str, str]]:
    return [(a.path, b.path) for a, b in itertools.combinations(truth.itertuples(), 2)
            if a.identity != b.identity and same(a, b)]


def _verified(feats: dict, pairs: list[tuple[str, str]], which: int) -> np.ndarray:
    return np.array([verify(feats[p][which], feats[q][which]).n_inliers for p, q in pairs])


def test_two_animals_at_one_camera_trap_do_not_match_through_the_background(wild) -> None:
    _, truth, feats = wild
    pairs = _pairs(truth, lambda a, b: a.site == b.site == "trap" and a.camera == b.camera)
    assert len(pairs) >= 10
    plain, kept = _verified(feats, pairs, 0), _verified(feats, pairs, 1)
    assert np.mean(plain >= 4) > 0.8  # the shared scene verifies (measured: every pair, 7-71 inliers)
    assert np.mean(kept >= 4) < 0.4 and kept.sum() < plain.sum() / 4  # measured 5 of 19 pairs, 41 vs 419


def test_a_watermark_shared_by_two_animals_does_not_match_them(wild) -> None:
    _, truth, feats = wild
    pairs = _pairs(truth, lambda a, b: pd.notna(a.photographer) and pd.notna(b.photographer)
                   and a.photographer == b.photographer)
    plain, kept = _verified(feats, pairs, 0), _verified(feats, pairs, 1)
    matched = plain >= 10  # the photographer's text verified as one rigid pattern
    assert matched.any()
    assert (kept[matched] < 4).all()


def test_building_a_foreground_loads_no_model_and_options_are_kept() -> None:
    fg = Foreground(threshold=0.4, dilate=0.0, long_side=320)
    assert "_model" not in vars(fg)
    img = np.zeros((120, 200, 3), np.uint8)
    img[30:90, 60:140] = (200, 150, 90)
    mask = fg(img)
    assert mask.shape == (120, 200) and "_model" in vars(fg)


def test_an_animal_filling_the_frame_keeps_the_whole_photo(wild) -> None:
    out, truth, _ = wild
    img = Image.open(out / truth["path"].iloc[0])
    partial = Foreground(max_cover=1.0)(img)
    assert 0.05 < partial.mean() < 1.0
    whole = Foreground(max_cover=partial.mean() - 0.05)(img)  # the mask now counts as "fills the frame"
    assert whole.all()


def test_describe_masks_photos_without_a_box_and_leaves_detector_crops_whole(wild) -> None:
    """The default ``foreground="unboxed"``: a detector box already says where the animal is."""
    from leopard_reid import Embedder

    out, truth, feats = wild
    path = truth["path"].iloc[0]
    w, h = Image.open(out / path).size
    meta = pd.DataFrame({"path": [path, path], "bbox": [None, [0, 0, w, h]]})  # the box is the whole photo
    described = Embedder(progress=False, num_workers=0).describe(meta, root=out, local={"max_tilt": 1})
    unboxed, boxed = described.local
    plain, masked = feats[path]
    assert len(masked) < len(plain)  # the map leaves part of this scene out
    np.testing.assert_array_equal(unboxed.points, masked.points)
    np.testing.assert_array_equal(boxed.points, plain.points)


def test_an_unknown_foreground_option_is_refused() -> None:
    with pytest.raises(ValueError, match="foreground must be"):
        extract_features(np.zeros((80, 80, 3), np.uint8) + 100, foreground="boxed")
