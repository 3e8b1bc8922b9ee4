"""Synthetic leopard coats: value-noise textures, an individual's coat style, and a flank's rosette sheet.

The pattern generator behind :mod:`leopard_reid.synthetic` (and :mod:`leopard_reid.synthetic_wild`): a coat
style is what both flanks of one animal share (rosette size, density, petal shape, colours); a coat sheet is
one flank's layout of rosettes and spots on a flat 768 x 480 "sheet" (top = spine, bottom = belly), drawn
from its own random stream so the two flanks of one animal differ as on a real leopard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["SHEET_SIZE"]

SHEET_SIZE = (768, 480)  # (width, height) of a flank coat sheet
_SPOT_BGR = np.array([24.0, 24.0, 28.0], np.float32)  # near-black brown of rosette petals and spots


# --------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------


def _noise(rng: np.random.Generator, h: int, w: int, cell: float, channels: int = 1) -> np.ndarray:
    """Smooth random field of shape (h, w[, channels]), roughly unit variance, features ``cell`` px wide."""
    gh = max(2, int(math.ceil(h / cell)) + 3)
    gw = max(2, int(math.ceil(w / cell)) + 3)
    shape = (gh, gw) if channels == 1 else (gh, gw, channels)
    small = rng.standard_normal(shape).astype(np.float32)
    big = cv2.resize(small, (int(round(gw * cell)), int(round(gh * cell))), interpolation=cv2.INTER_CUBIC)
    oy = int(rng.integers(0, max(1, big.shape[0] - h)))
    ox = int(rng.integers(0, max(1, big.shape[1] - w)))
    out = big[oy : oy + h, ox : ox + w]
    return out / max(float(out[::3, ::3].std()), 1e-6)


def _fractal(rng: np.random.Generator, h: int, w: int, cells: Sequence[float]) -> np.ndarray:
    """Sum of smooth noise octaves (each halving in weight), normalised to unit variance."""
    acc = np.zeros((h, w), np.float32)
    for i, c in enumerate(cells):
        acc += _noise(rng, h, w, c) * (0.55**i)
    return acc / max(float(acc.std()), 1e-6)


def _grid(h: int, w: int) -> np.ndarray:
    """(h, w, 2) float32 map of pixel coordinates (x, y), for cv2.remap."""
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)
    return np.dstack(np.broadcast_arrays(xs[None, :], ys[:, None]))


def _jitter_colour(rng: np.random.Generator, bgr: Sequence[float], amount: float) -> np.ndarray:
    return np.clip(np.asarray(bgr, np.float32) * rng.uniform(1 - amount, 1 + amount, 3), 0, 255)


# --------------------------------------------------------------------------------------------------------
# Coats
# --------------------------------------------------------------------------------------------------------


def _coat_style(rng: np.random.Generator) -> dict[str, float | np.ndarray]:
    """An individual's coat style (shared by both flanks): rosette size, density, shape and colours."""
    w = SHEET_SIZE[0]
    flank = _jitter_colour(rng, (62, 138, 196), 0.08) * rng.uniform(0.65, 1.25)  # tawny BGR
    flank = np.clip(flank + rng.uniform(-40, 40) * np.array([0.6, 0.1, -0.5]), 0, 255).astype(np.float32)
    return {
        "r0": w * rng.uniform(0.012, 0.04),  # rosette radius (sheet px)
        "spacing": rng.uniform(2.0, 3.3),  # centre distance in units of summed radii
        "thick": rng.uniform(0.22, 0.6),  # petal thickness / ring radius
        "aspect": rng.uniform(0.72, 0.95),  # rosette ellipticity (stretched along the body)
        "gap_deg": rng.uniform(15.0, 55.0),  # mean gap between petals
        "solid_frac": rng.uniform(0.0, 0.3),  # share of plain spots among the flank rosettes
        "small_density": rng.uniform(0.3, 2.0),  # small filler spots per rosette
        "flank": flank,
        "spine": (flank * rng.uniform(0.72, 0.85)).astype(np.float32),
        "belly": _jitter_colour(rng, (168, 200, 224), 0.06),
        "centre_tint": (np.array([0.80, 0.74, 0.82]) * rng.uniform(0.95, 1.05)).astype(np.float32),
    }


def _rosette_size(x: np.ndarray, y: np.ndarray, r0: float) -> np.ndarray:
    """Rosette radius at sheet position (x, y): ``r0``, shrinking toward the spine, belly and both ends."""
    w, h = SHEET_SIZE
    yn, xn = y / h, x / w
    fy = 1.0 - 0.55 * np.clip(np.abs(yn - 0.45) / 0.45, 0, 1) ** 1.5
    fx = 1.0 - 0.25 * np.clip(np.abs(xn - 0.5) / 0.5, 0, 1) ** 2
    return r0 * fy * fx


def _place_rosettes(rng: np.random.Generator, r0: float, spacing: float) -> tuple[np.ndarray, ...]:
    """Rosette centres and radii (x, y, r; float32) by dart throwing: no two closer than ``spacing`` x half
    their summed radii. Vectorised in batches (a candidate also yields to earlier ones in its batch)."""
    w, h = SHEET_SIZE
    margin = 2.0 * r0
    n_cand = int(5.0 * (w + 2 * margin) * (h + 2 * margin) / (math.pi * r0 * r0))
    cx = rng.uniform(-margin, w + margin, n_cand).astype(np.float32)
    cy = rng.uniform(-margin, h + margin, n_cand).astype(np.float32)
    rad = (_rosette_size(np.clip(cx, 0, w), np.clip(cy, 0, h), r0) * rng.uniform(0.8, 1.2, n_cand)).astype(np.float32)
    half = np.float32(0.5 * spacing)
    ax_, ay_, ar_ = (np.zeros(0, np.float32) for _ in range(3))
    batch = 256
    for b in range(0, n_cand, batch):
        x, y, r = cx[b : b + batch], cy[b : b + batch], rad[b : b + batch]
        if len(ax_):
            lim = half * (r[:, None] + ar_[None, :])
            free = ~((x[:, None] - ax_) ** 2 + (y[:, None] - ay_) ** 2 < lim * lim).any(1)
            x, y, r = x[free], y[free], r[free]
        lim = half * (r[:, None] + r[None, :])
        clash = np.triu((x[:, None] - x) ** 2 + (y[:, None] - y) ** 2 < lim * lim, k=1).any(0)
        ax_, ay_, ar_ = (np.concatenate([p, q[~clash]]) for p, q in ((ax_, x), (ay_, y), (ar_, r)))
    return ax_, ay_, ar_


def _coat_sheet(rng: np.random.Generator, style: dict) -> np.ndarray:
    """One flank's coat pattern as a uint8 BGR image of :data:`SHEET_SIZE` (top = spine, bottom = belly).

    Rosettes are placed by dart throwing (no overlaps) with a size that shrinks toward the spine, belly
    and shoulder/hip ends; the gaps get small solid spots.  Edges are roughened by a fine displacement
    field so petals look organic rather than drawn with a compass.
    """
    w, h = SHEET_SIZE
    r0, thick, aspect = style["r0"], style["thick"], style["aspect"]
    gap_deg, solid_frac, small_density = style["gap_deg"], style["solid_frac"], style["small_density"]
    flank, spine, belly, centre_tint = style["flank"], style["spine"], style["belly"], style["centre_tint"]

    def size_at(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return _rosette_size(x, y, r0)

    ax_, ay_, ar_ = _place_rosettes(rng, r0, style["spacing"])

    # --- draw: rosette rings of petals (thick arcs) + darker centres; solid spots at spine and belly -----
    n = len(ax_)
    spots = np.zeros((h, w), np.uint8)
    centres = np.zeros((h, w), np.uint8)
    sh = 4  # sub-pixel bits for cv2 drawing
    sc = float(1 << sh)
    lt = cv2.LINE_AA
    yn_ = ay_ / h
    solid = (yn_ > 0.8) | (yn_ < 0.08) | (rng.random(n) < solid_frac)
    ang = rng.uniform(-25, 25, n)
    n_pet = rng.integers(3, 8, n)
    spans = rng.gamma(4.0, size=(n, 7)) * (np.arange(7) < n_pet[:, None])
    spans = spans / spans.sum(1, keepdims=True) * 360.0
    starts = rng.uniform(0, 360, n)[:, None] + np.cumsum(spans, 1) - spans
    gaps = np.minimum(spans * 0.6, gap_deg * rng.uniform(0.4, 1.6, (n, 7)))
    drawn = (spans > 0) & (rng.random((n, 7)) >= 0.12)  # ~1 in 8 petals missing: the ring breaks wider
    pr = ar_[:, None] * rng.uniform(0.9, 1.12, (n, 7))
    pt = np.maximum(2, np.round(ar_[:, None] * thick * rng.uniform(0.7, 1.3, (n, 7)))).astype(int)
    blot = rng.uniform(0, 1, (n, 2, 6))  # solid-spot parameters: size, shape, offset x/y, angle, 2nd?
    for i in range(n):
        x, y, r = float(ax_[i]), float(ay_[i]), float(ar_[i])
        if solid[i]:  # belly blotch / spine spot: one or two solid ellipses
            for j in range(1 + int(blot[i, 0, 5] < 0.3)):
                p = blot[i, j]
                a_ = r * (0.35 + 0.35 * p[0])
                cc = (int((x + (p[2] - 0.5) * r) * sc), int((y + (p[3] - 0.5) * r) * sc))
                axes = (max(1, int(a_ * sc)), max(1, int(a_ * (0.55 + 0.45 * p[1]) * sc)))
                cv2.ellipse(spots, cc, axes, 180 * p[4], 0, 360, 255, -1, lt, sh)
            continue
        c = (int(x * sc), int(y * sc))
        cv2.ellipse(centres, c, (int(0.8 * r * sc), int(0.8 * r * aspect * sc)), ang[i], 0, 360, 255, -1, lt, sh)
        for j in np.flatnonzero(drawn[i]):
            rr = pr[i, j] * sc
            s0 = starts[i, j] + gaps[i, j] / 2
            s1 = starts[i, j] + spans[i, j] - gaps[i, j] / 2
            cv2.ellipse(spots, c, (int(rr), int(rr * aspect)), ang[i], s0, s1, 255, int(pt[i, j]), lt, sh)
    # small solid spots in the gaps between rosettes
    n_small = int(small_density * n)
    sx = rng.uniform(0, w, n_small)
    sy = rng.uniform(0, h, n_small)
    sr = size_at(sx, sy) * rng.uniform(0.12, 0.28, n_small)
    sq = rng.uniform(0.6, 1.0, n_small)
    sa = rng.uniform(0, 180, n_small)
    for x, y, r, q, a_ in zip(sx.tolist(), sy.tolist(), sr.tolist(), sq.tolist(), sa.tolist(), strict=True):
        axes = (max(1, int(r * sc)), max(1, int(r * q * sc)))
        cv2.ellipse(spots, (int(x * sc), int(y * sc)), axes, a_, 0, 360, 255, -1, lt, sh)

    # --- organic edges: fine + coarse displacement of both masks ---------------------------------------
    u = w / 1024.0
    disp = _noise(rng, h, w, 7.0 * u, 2) * (1.8 * u) + _noise(rng, h, w, 60.0 * u, 2) * (4.0 * u) + _grid(h, w)
    masks = cv2.remap(np.dstack([spots, centres]), disp, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    masks = cv2.GaussianBlur(masks, (0, 0), 0.7).astype(np.float32) / 255.0
    spot_m, centre_m = masks[..., 0], masks[..., 1]

    # --- colour: spine -> flank -> belly ground, mottled; centres darker, spots near-black ------------
    yn = (np.arange(h, dtype=np.float32) / h)[:, None, None]
    t_sp = np.clip((0.22 - yn) / 0.22, 0, 1)
    t_be = np.clip((yn - 0.62) / 0.3, 0, 1) ** 1.3
    ground = (flank * (1 - t_sp - t_be) + spine * t_sp + belly * t_be).astype(np.float32)  # (h, 1, 3)
    mottle = 1.0 + 0.05 * _noise(rng, h, w, 45.0 * u)
    spot_a = 0.95 * spot_m[..., None]
    coat = ground * (mottle[..., None] * (1.0 - centre_m[..., None] * (1.0 - centre_tint)))
    coat = coat * (1.0 - spot_a) + _SPOT_BGR * spot_a
    return np.clip(coat, 0, 255).astype(np.uint8)
