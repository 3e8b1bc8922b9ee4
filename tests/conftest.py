"""Shared fixtures: the real embedded model, a small synthetic population, and the shared real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "leopardtrails"


@pytest.fixture(scope="session")
def embedder():
    """The embedded offline EfficientNet-Lite0 (real weights; loads in about a second)."""
    from leopard_reid import Embedder

    return Embedder(progress=False, num_workers=0)


@pytest.fixture(scope="session")
def population(tmp_path_factory):
    """8 synthetic leopards x 4 sightings (two per flank) as (root, metadata)."""
    from leopard_reid.synthetic import generate

    root = tmp_path_factory.mktemp("population")
    meta = generate(root, n_individuals=8, sightings_per_individual=4, seed=11)
    return root, meta


@pytest.fixture(scope="session")
def leopardtrails() -> Path:
    """The real forehead crops beside the project (skips when absent)."""
    if not (SHARED / "metadata.csv").exists():
        pytest.skip("../shared/data/leopardtrails is not present")
    return SHARED


def spots(seed: int, size: tuple[int, int] = (200, 150), n: int = 40) -> np.ndarray:
    """A random dark-spot pattern on a tawny ground, RGB uint8 (a cheap stand-in for a coat)."""
    import cv2

    rng = np.random.default_rng(seed)
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (200, 160, 100)
    for _ in range(n):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        ax = (int(rng.integers(3, 9)), int(rng.integers(3, 9)))
        cv2.ellipse(img, c, ax, float(rng.uniform(0, 180)), 0, 360, (40, 30, 20), -1, cv2.LINE_AA)
    return img
