"""Synthetic leopard camera-trap data: a reproducible stand-in for real photos in tests, demos and docs.

Real leopard re-identification data sets are small, licensed and cannot ship with the library, yet
every component (embedding, keypoint matching, galleries, census) needs photos in which the *same coat
pattern* reappears under a different view.  :func:`generate` draws such a set from scratch:

* **Coats.**  Each flank is a random layout of rosettes on a flat "sheet" (768 x 480 px, top = spine,
  bottom = belly): broken rings of 3-7 dark petals around a slightly darker tawny centre, plus solid
  spots that get smaller and denser toward the spine and belly.  Ground colour, rosette size, density,
  petal thickness and openness are an individual's *style* (shared by its two flanks); the layout of each
  flank comes from its own random stream, so a left-flank sighting never matches its own animal's right
  flank (as on a real leopard).
* **Sightings.**  A sighting sees part of one flank sheet (windows of one flank overlap by roughly
  60-95 %) through a perspective transform (scale, rotation, translation, cylinder foreshortening of the
  body) plus a smooth non-rigid displacement field.  The flank is cut out by a side-view silhouette
  (torso, head, legs, tail; proportions per individual, pose per sighting) in front of the camera's
  fixed, cluttered scene (soil, grass, rocks, trunks, twigs; one habitat per site), then photographed:
  body shading, lighting gradients, dappled light, colour casts, infrared night shots (grey, low
  contrast, flash fall-off, noise), motion or defocus blur, grass/branch occlusions, JPEG compression.
  Crops are ``size`` around the animal; with ``frame=True`` the animal stands somewhere in a full
  camera-trap frame with an info bar (camera, time, temperature) instead.
* **Wild photos.**  ``wild=True`` composes these pieces into what real wild photos do to a matcher (whole
  animals at shared sites, flank / three-quarter / face-on views, watermarks, info bars; ground truth in
  ``truth.json`` and ``masks/``): see :mod:`leopard_reid.synthetic_wild`.

Determinism: flank layouts come from ``np.random.default_rng([seed, individual, side, 0])``, sightings
from ``np.random.default_rng([seed, individual, sighting, 1])``, an individual's style, body and flank
order from ``[seed, individual, 2]`` and camera scenes from ``[seed, 2**20, camera]``; the same seed gives
byte-identical JPEGs (for a given OpenCV build), different seeds give different animals.

Measured difficulty (defaults: 40 individuals x 4 sightings = 2 per flank, 25 % night;
``python benchmarks/bench_synthetic.py --seed S``; leave-one-out, label identity + side, gallery = the
other images of the query's side): the global ImageNet embedding (tf_efficientnet_lite0, bbox crop,
cosine 1-NN) reaches top-1 0.18 / 0.14 / 0.13 for seeds 0 / 1 / 2 (0.12 / 0.09 / 0.11 when the other
flanks stay in the gallery), while RootSIFT + ratio test + RANSAC keypoint matching (FLANN 2-NN, RANSAC
similarity, score = inliers) reaches 0.975 / 1.00 / 0.99.  So the global CNN struggles (real leopards:
0.04-0.13) while the spot pattern itself stays matchable.  Through the library
(``leopard-reid evaluate --method global``, seed 0): top-1 0.225; ``fused``: 1.000.  Generating the 160
images takes about 8 s on 2 CPU cores.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from .synthetic_coat import (
    SHEET_SIZE,
    _coat_sheet,
    _coat_style,
    _fractal,
    _jitter_colour,
    _noise,
)

__all__ = ["METADATA_COLUMNS", "generate"]

#: Columns written to ``metadata.csv`` (the CLI's metadata format).
METADATA_COLUMNS = ["path", "identity", "side", "datetime", "camera", "bbox"]



# --------------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------------

_PALETTES = {  # ground, vegetation (BGR)
    "savanna": ((96, 150, 178), (70, 150, 170)),
    "bush": ((70, 100, 110), (50, 115, 80)),
    "rock": ((120, 128, 132), (80, 120, 110)),
    "forest": ((45, 62, 70), (35, 85, 55)),
}


def _grass(rng: np.random.Generator, img: np.ndarray, n: int, colour: np.ndarray, top: float, bottom: float,
           length: tuple[float, float], width: tuple[int, int]) -> None:
    """Draw ``n`` curved grass blades rooted between rows ``bottom`` and below, in place (float image)."""
    h, w = img.shape[:2]
    if n <= 0:
        return
    x0 = rng.uniform(-0.05 * w, 1.05 * w, n)
    y0 = rng.uniform(bottom, h + 0.05 * h, n) if bottom < h else np.full(n, h + 2.0)
    ln = rng.uniform(*length, n) * h
    lean = rng.normal(0, 0.35, n)
    curl = rng.normal(0, 0.25, n)
    tt = np.linspace(0, 1, 8)[None, :]
    xs = x0[:, None] + ln[:, None] * (lean[:, None] * tt + curl[:, None] * tt**2)
    ys = y0[:, None] - ln[:, None] * tt * (1 - 0.15 * tt)
    ys = np.maximum(ys, top)
    pts = np.stack([xs, ys], -1).round().astype(np.int32)
    shades = rng.uniform(0.55, 1.3, n)
    widths = rng.integers(width[0], width[1] + 1, n)
    for p, s, wd in zip(pts, shades, widths, strict=True):
        cv2.polylines(img, [p], False, (colour * s).tolist(), int(wd), cv2.LINE_AA)


def _site_palettes(rng: np.random.Generator, n_cameras: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ground, vegetation) colours per camera: one habitat for the study site, varied per camera."""
    name = list(_PALETTES)[int(rng.integers(len(_PALETTES)))]
    base = _PALETTES[name]
    return [tuple(_jitter_colour(rng, c, 0.08) * rng.uniform(0.85, 1.15) for c in base) for _ in range(n_cameras)]


def _background(rng: np.random.Generator, w: int, h: int, palette: tuple[np.ndarray, np.ndarray],
                ground_frac: float = 0.6) -> np.ndarray:
    """Cluttered out-of-focus vegetation/soil scene in the camera's ``palette``, float32 BGR (h, w, 3)."""
    g_col, v_col = (_jitter_colour(rng, c, 0.05) for c in palette)
    horizon = h * (1 - ground_frac) + rng.normal(0, 0.05 * h)
    yy = np.arange(h, dtype=np.float32)[:, None]
    t = np.clip((yy - horizon) / (0.15 * h) + 0.5, 0, 1)[..., None]
    bush = _fractal(rng, h, w, (w / 6, w / 20, 6.0))
    img = (v_col * (1 + 0.3 * bush[..., None])) * (1 - t) + g_col * t
    img = img * (1.0 + 0.18 * _fractal(rng, h, w, (w / 10, w / 40, 3.0)))[..., None]
    img = img.astype(np.float32)
    for _ in range(int(rng.integers(0, 5))):  # rocks / logs
        cx, cy = rng.uniform(0, w), rng.uniform(horizon, h * 1.05)
        ax = (int(rng.uniform(0.04, 0.18) * w), int(rng.uniform(0.03, 0.10) * h))
        col = (_jitter_colour(rng, (105, 115, 125), 0.05) * rng.uniform(0.5, 1.1)).tolist()
        cv2.ellipse(img, (int(cx), int(cy)), ax, rng.uniform(-20, 20), 0, 360, col, -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 3))):  # tree trunks behind
        x = rng.uniform(0, w)
        tw = rng.uniform(0.02, 0.07) * w
        col = (_jitter_colour(rng, (50, 60, 70), 0.3)).tolist()
        cv2.line(img, (int(x), -5), (int(x + rng.normal(0, 0.05 * w)), int(horizon + 0.1 * h)), col, int(tw))
    _grass(rng, img, int(rng.uniform(0.2, 1.0) * w), v_col, 0, horizon, (0.05, 0.3), (1, 2))
    _grass(rng, img, int(rng.uniform(0.0, 0.4) * w), g_col * 1.2, 0, horizon, (0.05, 0.25), (1, 2))
    for _ in range(int(rng.integers(0, 12))):  # twigs
        x, y = rng.uniform(0, w, 2), rng.uniform(0, h, 2)
        col = (_jitter_colour(rng, (40, 50, 60), 0.3)).tolist()
        cv2.line(img, (int(x[0]), int(y[0])), (int(x[1]), int(y[1])), col, int(rng.integers(1, 3)), cv2.LINE_AA)
    sigma = rng.uniform(1.5, 3.5)  # shallow depth of field
    return cv2.GaussianBlur(img, (0, 0), sigma)


# --------------------------------------------------------------------------------------------------------
# Sightings
# --------------------------------------------------------------------------------------------------------


def _build(rng: np.random.Generator) -> dict[str, np.ndarray | float]:
    """An individual's body proportions (shared by all its sightings; poses then vary a little)."""
    return {
        "rx": rng.uniform(0.29, 0.36),  # torso half-length / canvas width
        "ry": rng.uniform(0.26, 0.35),  # torso half-height / canvas height
        "n": rng.uniform(2.3, 3.0),  # superellipse exponent
        "leg": rng.uniform(0.055, 0.095),
        "tail": rng.uniform(0.22, 0.32),
        "head": rng.uniform(0.13, 0.19),  # head radius / canvas height
        "wob": rng.normal(0, 0.025, (4, 1)),
        "phase": rng.uniform(0, 6.3, (4, 1)),
    }


def _silhouette(rng: np.random.Generator, w: int, h: int, front: float, build: dict
                ) -> tuple[np.ndarray, np.ndarray, tuple, tuple]:
    """Masks (float32 0..1) of a side view filling a (w, h) canvas, facing ``front`` (+1 right, -1 left).

    Returns the torso mask, the head/neck/legs/tail mask, the torso ellipse (cx, cy, rx, ry) and the head
    ellipse (hx, hy, hr).
    """
    cx, cy = w * (0.5 - front * rng.uniform(0.04, 0.07)), h * rng.uniform(0.44, 0.48)
    rx, ry = w * build["rx"] * rng.uniform(0.96, 1.04), h * build["ry"] * rng.uniform(0.96, 1.04)
    th = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    k = np.arange(2, 6)[:, None]
    wob = build["wob"] + rng.normal(0, 0.008, (4, 1))
    wobble = 1 + (wob * np.cos(k * th + build["phase"])).sum(0)
    n = build["n"]
    c, s = np.cos(th), np.sin(th)
    px = cx + rx * wobble * np.sign(c) * np.abs(c) ** (2 / n)
    py = cy + ry * wobble * np.sign(s) * np.abs(s) ** (2 / n)
    py += np.where(s > 0, ry * 0.12 * front * (px - cx) / rx, 0)  # deep chest, tucked-up belly
    torso = np.zeros((h, w), np.uint8)
    cv2.fillPoly(torso, [np.stack([px, py], 1).round().astype(np.int32)], 255, cv2.LINE_AA)
    limbs = np.zeros((h, w), np.uint8)
    lt = cv2.LINE_AA
    leg_w = w * build["leg"]
    for end in (-1, 1):  # hind and front pairs; the far leg set back a little and thinner
        for far in (1, 0):
            lx = cx + end * rx * rng.uniform(0.55, 0.72) - far * rng.uniform(0.06, 0.12) * w * end
            top, bot = cy + 0.3 * ry, h * rng.uniform(0.97, 1.05)
            dx = rng.normal(0, 0.03 * w)
            lw = leg_w * (0.85 if far else 1.0)
            quad = np.array([[lx - lw / 2, top], [lx + lw / 2, top], [lx + dx + lw * 0.33, bot],
                             [lx + dx - lw * 0.33, bot]])
            cv2.fillPoly(limbs, [quad.round().astype(np.int32)], 255, lt)
    # neck and head at the front, slightly raised or lowered
    hr = h * build["head"] * rng.uniform(0.95, 1.05)
    hx = cx + front * (rx + 0.55 * hr)
    hy = cy - ry * rng.uniform(0.35, 0.75)
    neck = np.array([[cx + front * rx * 0.55, cy - ry * 0.85], [hx, hy - 0.6 * hr], [hx, hy + 0.7 * hr],
                     [cx + front * rx * 0.8, cy + ry * 0.35]])
    cv2.fillPoly(limbs, [neck.round().astype(np.int32)], 255, lt)
    cv2.ellipse(limbs, (int(hx), int(hy)), (int(hr * 0.95), int(hr * 0.8)), 0, 0, 360, 255, -1, lt)
    mz = (int(hx + front * hr * 0.75), int(hy + hr * 0.3))  # muzzle
    cv2.ellipse(limbs, mz, (int(hr * 0.45), int(hr * 0.4)), 0, 0, 360, 255, -1, lt)
    for ex in (-0.45, 0.05):  # ears
        ec = (int(hx + front * ex * hr), int(hy - 0.75 * hr))
        cv2.ellipse(limbs, ec, (max(1, int(hr * 0.22)), max(1, int(hr * 0.3))), 0, 0, 360, 255, -1, lt)
    # tail from the rump, drooping and curling up at the tip
    tt = np.linspace(0, 1, 14)
    tlen = w * build["tail"] * rng.uniform(0.9, 1.1)
    tx = cx - front * (rx * 0.95 + tlen * (0.45 * tt - 0.15 * tt**3))
    ty = cy - 0.6 * ry + tlen * (1.1 * tt + rng.uniform(-0.5, 0.0) * tt**3)
    cv2.polylines(limbs, [np.stack([tx, ty], 1).round().astype(np.int32)], False, 255,
                  max(2, int(w * 0.03)), lt)
    torso_a = cv2.GaussianBlur(torso, (0, 0), 0.8).astype(np.float32) / 255.0
    limbs_a = cv2.GaussianBlur(limbs, (0, 0), 0.8).astype(np.float32) / 255.0
    return torso_a, limbs_a, (cx, cy, rx, ry), (hx, hy, hr)


def _render_animal(rng: np.random.Generator, sheet: np.ndarray, w: int, h: int, facing_left: bool,
                   anchor: np.ndarray, build: dict) -> tuple[np.ndarray, np.ndarray]:
    """Textured, shaded animal on a (w, h) canvas: float32 BGR image and alpha mask.

    The torso box is mapped onto a window of the flank sheet near ``anchor`` (the flank's fixed viewing
    centre) through cylinder foreshortening, a random perspective transform and a smooth displacement.
    Head, legs and tail reuse the sheet's spine band, minified, so they carry small solid spots.
    """
    front = -1.0 if facing_left else 1.0
    torso, limbs, (cx, cy, rx, ry), (hx, hy, hr) = _silhouette(rng, w, h, front, build)
    sw, _ = SHEET_SIZE
    cw = sw * 0.46 * rng.uniform(0.92, 1.09)  # sheet window size seen by this torso box
    ch = cw * 0.62 * rng.uniform(0.93, 1.07)
    ccx = anchor[0] + rng.uniform(-0.1, 0.1) * cw
    ccy = anchor[1] + rng.uniform(-0.08, 0.08) * ch
    rot = math.radians(rng.uniform(-10, 10))
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * [cw / 2, ch / 2]
    corners += rng.normal(0, 0.03, (4, 2)) * [cw, ch]  # perspective
    rm = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
    dst = corners @ rm.T + [ccx, ccy]
    src = np.array([[cx - rx, cy - ry], [cx + rx, cy - ry], [cx + rx, cy + ry], [cx - rx, cy + ry]])
    hom = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float32)

    # cylinder foreshortening: image row offset t maps to arc length asin(k t) / asin(k)
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (vv - cy) / ry
    kf = rng.uniform(0.45, 0.75)
    norm = math.asin(kf)
    slope = kf / (math.sqrt(1 - kf * kf) * norm)
    tc = np.clip(t, -1, 1)
    v2 = cy + (np.arcsin(kf * tc) / norm + (t - tc) * slope) * ry
    den = hom[2, 0] * uu + hom[2, 1] * v2 + hom[2, 2]
    mx = (hom[0, 0] * uu + hom[0, 1] * v2 + hom[0, 2]) / den
    my = (hom[1, 0] * uu + hom[1, 1] * v2 + hom[1, 2]) / den
    amp = rng.uniform(0.008, 0.018) * cw  # smooth non-rigid warp (muscles, skin sliding, fur)
    mx += _noise(rng, h, w, w / 2.5) * amp
    my += _noise(rng, h, w, w / 2.5) * amp
    # limbs: the spine band (small spots) at 2.5x the torso's minification
    scale = (2 * rx) / cw  # output px per sheet px
    lim = 2.5 / scale
    lx = anchor[0] + (uu - cx) * lim
    ly = 0.06 * SHEET_SIZE[1] + (vv - (cy - ry)) * lim * 0.5
    sel = (limbs > 0.01) & (torso < 0.99)
    mx = np.where(sel, lx, mx).astype(np.float32)
    my = np.where(sel, ly, my).astype(np.float32)
    src_img = cv2.GaussianBlur(sheet, (0, 0), max(0.3, 0.45 / scale)) if scale < 0.9 else sheet
    tex = cv2.remap(src_img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101).astype(np.float32)

    # shading: lit cylinder torso (light from above-ish), rounder head, darker legs
    light = rng.uniform(-0.5, 0.0)
    shade = 0.55 + 0.45 * np.clip(np.cos(np.arcsin(tc) - light), 0, 1)
    limb_shade = np.clip(1.0 - 0.45 * np.clip((vv - cy) / (h - cy), 0, 1), 0.4, 1.0)
    head_d = ((uu - hx) ** 2 + (vv - hy) ** 2) / (hr * hr)
    limb_shade = np.where(head_d < 1.2, 1.0 - 0.3 * np.clip(head_d, 0, 1), limb_shade)
    shade = np.where(sel, limb_shade, shade)
    tex *= shade[..., None].astype(np.float32)
    # eye, nose and dark ear backs on the head
    eye = (int(hx + front * hr * 0.45), int(hy - hr * 0.1))
    cv2.ellipse(tex, eye, (max(1, int(hr * 0.12)), max(1, int(hr * 0.07))), 0, 0, 360, (40, 90, 80), -1, cv2.LINE_AA)
    nose = (int(hx + front * hr * 1.12), int(hy + hr * 0.12))
    cv2.circle(tex, nose, max(1, int(hr * 0.1)), (60, 60, 90), -1, cv2.LINE_AA)
    alpha = np.maximum(torso, limbs)
    return tex, alpha


def _occlude(rng: np.random.Generator, img: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """Grass blades and the odd branch in front of the animal (in place)."""
    x, y, bw, bh = box
    roi = img[y : y + bh, x : x + bw]
    if rng.random() < 0.4:
        col = _jitter_colour(rng, [(70, 150, 170), (50, 120, 85), (90, 160, 190)][int(rng.integers(3))], 0.15)
        n = int(rng.uniform(0.02, 0.08) * bw)
        _grass(rng, roi, n, col, 0.0, bh * 0.85, (0.15, 0.55), (1, max(1, int(bw / 150))))
    if rng.random() < 0.2:
        col = _jitter_colour(rng, (35, 45, 55), 0.3).tolist()
        p0 = np.array([rng.uniform(-0.1, 0.3) * bw, rng.uniform(0, bh)])
        p1 = np.array([rng.uniform(0.7, 1.1) * bw, rng.uniform(0, bh)])
        mid = (p0 + p1) / 2 + rng.normal(0, 0.1 * bh, 2)
        tt = np.linspace(0, 1, 16)[:, None]
        pts = (1 - tt) ** 2 * p0 + 2 * (1 - tt) * tt * mid + tt**2 * p1
        th = max(2, int(rng.uniform(0.01, 0.025) * bw))
        cv2.polylines(roi, [pts.round().astype(np.int32)], False, col, th, cv2.LINE_AA)
        for q in pts[2::3]:  # leaves
            ax = (max(2, int(0.025 * bw)), max(1, int(0.01 * bw)))
            leaf = (_jitter_colour(rng, (40, 100, 60), 0.3)).tolist()
            cv2.ellipse(roi, (int(q[0]), int(q[1] - ax[0])), ax, rng.uniform(0, 180), 0, 360, leaf, -1, cv2.LINE_AA)


def _photograph(rng: np.random.Generator, img: np.ndarray, night: bool, centre: tuple[float, float]) -> np.ndarray:
    """Camera response: lighting, colour cast or infrared, blur and sensor noise -> uint8 BGR."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = rng.normal(0, 1, 2)
    d /= np.linalg.norm(d) + 1e-9
    ramp = ((xx - w / 2) * d[0] + (yy - h / 2) * d[1]) / max(w, h)
    img = img * (1.0 + rng.uniform(0.05, 0.3) * ramp)[..., None]
    if night:
        grey = img @ np.array([0.25, 0.35, 0.40], np.float32)  # fur reflects near-IR well
        r2 = ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (0.6 * max(w, h)) ** 2
        flash = np.clip(1.3 - rng.uniform(0.5, 0.9) * r2, 0.25, 1.3)
        grey = grey * flash
        mean = float(grey.mean())
        grey = mean + (grey - mean) * rng.uniform(0.55, 0.8)
        grey = grey * rng.uniform(0.8, 1.2) + rng.uniform(-10, 15)
        grey = grey + rng.normal(0, rng.uniform(3, 8), grey.shape).astype(np.float32)
        img = np.repeat(grey[..., None], 3, axis=2) + rng.uniform(-3, 3, 3).astype(np.float32)
    else:
        if rng.random() < 0.2:  # dappled light through foliage
            dap = _noise(rng, h, w, max(w, h) / rng.uniform(4, 10))
            img = img * (1.0 + 0.15 * np.tanh(1.5 * dap))[..., None]
        gains = rng.uniform(0.92, 1.08, 3).astype(np.float32)
        img = img * gains * rng.uniform(0.85, 1.15)
        grey = img.mean(axis=2, keepdims=True)
        img = grey + (img - grey) * rng.uniform(0.75, 1.15)
        img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** rng.uniform(0.85, 1.15)
        img = img + rng.normal(0, rng.uniform(1, 3), img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.float32)
    u = rng.random()
    scale = max(w, h) / 384.0
    if u < 0.1:  # motion blur
        n = max(3, int(rng.uniform(3, 7) * scale)) | 1
        k = np.zeros((n, n), np.float32)
        k[n // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), rng.uniform(0, 180), 1.0)
        k = cv2.warpAffine(k, rot, (n, n))
        img = cv2.filter2D(img, -1, k / max(float(k.sum()), 1e-6))
    elif u < 0.2:  # defocus
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.3) * scale)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _info_bar_height(frame_height: int) -> int:
    """Height of the black camera-trap info strip at the bottom of a full frame."""
    return max(12, int(0.045 * frame_height))


def _info_strip(caption: str, width: int, bar: int) -> np.ndarray:
    """The black camera-trap info strip (``bar`` px high) with ``caption`` in white, uint8 BGR."""
    strip = np.zeros((bar, width, 3), np.uint8)
    fs = bar / 32.0
    cv2.putText(strip, caption, (int(0.01 * width), int(bar * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, fs,
                (235, 235, 235), max(1, int(round(fs * 2))), cv2.LINE_AA)
    return strip


def _sighting(rng: np.random.Generator, sheet: np.ndarray, anchor: np.ndarray, build: dict, side: str, night: bool,
              size: tuple[int, int], frame: bool, frame_size: tuple[int, int], caption: str,
              scene: np.ndarray) -> tuple[np.ndarray, list[int], int]:
    """Render one photo in front of the camera's ``scene``; returns (uint8 BGR, bbox [x, y, w, h], quality).

    A camera trap is fixed, so in frame mode the scene is the whole background; in crop mode the photo
    is a random window of a scene larger than ``size`` (where the animal happened to be).
    """
    facing_left = side == "left"
    if frame:
        fw, fh = frame_size
        bar = fh - scene.shape[0]
        img = scene.copy()
        aw = int(fw * rng.uniform(0.25, 0.55))
        ah = int(aw * size[1] / size[0])
        aw, ah = min(aw, fw), min(ah, fh - bar)
        ox = int(rng.integers(0, fw - aw + 1))
        oy = int(rng.integers(max(0, int((fh - bar) * 0.3) - ah // 3), fh - bar - ah + 1))
    else:
        fw, fh = size
        bar = 0
        sx = int(rng.integers(0, scene.shape[1] - fw + 1))
        sy = int(rng.integers(0, scene.shape[0] - fh + 1))
        img = scene[sy : sy + fh, sx : sx + fw].copy()
        aw, ah, ox, oy = fw, fh, 0, 0
    tex, alpha = _render_animal(rng, sheet, aw, ah, facing_left, anchor, build)
    # soft contact shadow under the animal
    ys, xs = np.nonzero(alpha > 0.5)
    shadow = np.zeros(alpha.shape, np.float32)
    cv2.ellipse(shadow, (int(xs.mean()), int(ys.max())), (int(0.45 * aw), max(2, int(0.06 * ah))), 0, 0, 360, 1.0, -1)
    shadow = cv2.GaussianBlur(shadow, (0, 0), 0.03 * aw + 1)
    roi = img[oy : oy + ah, ox : ox + aw]
    roi *= (1.0 - 0.35 * shadow)[..., None]
    roi[:] = roi * (1.0 - alpha[..., None]) + tex * alpha[..., None]
    bbox = [int(xs.min()) + ox, int(ys.min()) + oy, int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
    bbox[2] = min(bbox[2], fw - bbox[0])
    bbox[3] = min(bbox[3], fh - bar - bbox[1])
    _occlude(rng, img, (ox, oy, aw, ah))
    centre = (bbox[0] + bbox[2] / 2, bbox[1] + bbox[3] / 2)
    photo = _photograph(rng, img, night, centre)
    if frame:  # camera-trap info bar
        photo = np.vstack([photo, _info_strip(caption, fw, bar)])
    quality = int(rng.integers(55, 95))
    return photo, bbox, quality


# --------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------


def _flank_sheet(seed: int, individual: int, side: int, style: dict) -> tuple[np.ndarray, np.ndarray]:
    """One flank's coat sheet and its anchor point: fixed per (seed, individual, side)."""
    coat_rng = np.random.default_rng([seed, individual, side, 0])
    sheet = _coat_sheet(coat_rng, style)
    anchor = np.array(SHEET_SIZE, np.float64) / 2 + coat_rng.uniform(-0.06, 0.06, 2) * SHEET_SIZE
    return sheet, anchor


def _camera_scene(
    seed: int,
    cam: int,
    unit: int,
    palette: tuple[np.ndarray, np.ndarray],
    size: tuple[int, int],
    frame: bool,
    frame_size: tuple[int, int],
) -> np.ndarray:
    """The fixed background of a camera unit (0: the station's camera, 1: its paired camera opposite)."""
    scene_rng = np.random.default_rng([seed, 1 << 20, cam] + [unit] * unit)
    if frame:
        sw, sh = frame_size[0], frame_size[1] - _info_bar_height(frame_size[1])
    else:
        sw, sh = size[0] * 2, size[1] * 3 // 2
    return _background(scene_rng, sw, sh, palette, scene_rng.uniform(0.45, 0.7))


def _checked_options(
    n_individuals: int, sightings_per_individual: int, seed: int, sides: Sequence[str], night_fraction: float,
    n_cameras: int, paired_fraction: float, size: tuple[int, int], frame: bool, frame_size: tuple[int, int],
) -> tuple[tuple[str, ...], tuple[int, int], tuple[int, int]]:
    """:func:`generate`'s options checked (``ValueError`` naming the bad one): sides, size, frame size."""
    if n_individuals < 0 or sightings_per_individual < 0:
        raise ValueError("n_individuals and sightings_per_individual must be >= 0")
    if seed < 0:
        raise ValueError("seed must be a non-negative integer")
    sides = tuple(sides)
    bad = [s for s in sides if s not in ("left", "right")]
    if not sides or bad:
        raise ValueError(f"sides must be a non-empty subset of ('left', 'right'), got {sides!r}")
    if not 0.0 <= night_fraction <= 1.0:
        raise ValueError("night_fraction must be in [0, 1]")
    if n_cameras < 1:
        raise ValueError("n_cameras must be >= 1")
    if not 0.0 <= paired_fraction <= 1.0:
        raise ValueError("paired_fraction must be in [0, 1]")
    if paired_fraction and len(set(sides)) < 2:
        raise ValueError("paired_fraction needs both sides: a paired station photographs both flanks")
    size = (int(size[0]), int(size[1]))
    frame_size = (int(frame_size[0]), int(frame_size[1]))
    if min(size) < 32:
        raise ValueError("size must be at least 32 x 32 pixels")
    if frame and (frame_size[0] < size[0] or frame_size[1] < 64):
        raise ValueError("frame_size must be at least as wide as size and 64 px high")
    return sides, size, frame_size


def _write_individual(
    out: Path, i: int, *, seed: int, sightings_per_individual: int, sides: tuple[str, ...], n_cameras: int,
    night_fraction: float, days: float, start: datetime, paired_fraction: float, size: tuple[int, int],
    frame: bool, frame_size: tuple[int, int], palettes: list, scenes: dict[tuple[int, int], np.ndarray],
) -> list[dict]:
    """Write every photo of individual ``i`` (``L-{i+1:03d}``) and return their metadata rows.

    Each individual and sighting draws from its own seeded stream, so one animal's photos do not depend on
    the others'; ``scenes`` caches one background per camera unit across individuals.
    """
    side_index = {"left": 0, "right": 1}
    rows: list[dict] = []
    identity = f"L-{i + 1:03d}"
    meta_rng = np.random.default_rng([seed, i, 2])
    reps = -(-sightings_per_individual // len(sides))
    flanks = meta_rng.permutation(np.array((list(sides) * reps)[:sightings_per_individual], dtype=object))
    home = meta_rng.choice(n_cameras, size=min(n_cameras, int(meta_rng.integers(1, 4))), replace=False)
    build = _build(meta_rng)
    style = _coat_style(meta_rng)
    sheets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    (out / identity).mkdir(exist_ok=True)
    for k in range(sightings_per_individual):
        side = str(flanks[k])
        rng = np.random.default_rng([seed, i, k, 1])
        night = bool(rng.random() < night_fraction)
        day_off = int(rng.uniform(0, days))
        hour = int(rng.integers(19, 29)) % 24 if night else int(rng.integers(7, 18))
        when = (datetime(start.year, start.month, start.day) + timedelta(days=day_off, hours=hour,
                minutes=int(rng.integers(60)), seconds=int(rng.integers(60))))
        cam = int(home[int(rng.integers(len(home)))])
        camera = f"C{cam + 1:02d}"
        shots = [(side, when, rng, 0, f"{identity}/{identity}_{k + 1:02d}.jpg")]
        pair_rng = np.random.default_rng([seed, i, k, 3])
        if paired_fraction and pair_rng.random() < paired_fraction:
            other = "right" if side == "left" else "left"
            later = when + timedelta(seconds=int(pair_rng.integers(1, 6)))
            shots.append((other, later, pair_rng, 1, f"{identity}/{identity}_{k + 1:02d}p.jpg"))
        for shot_side, shot_time, shot_rng, unit, rel in shots:
            if shot_side not in sheets:
                sheets[shot_side] = _flank_sheet(seed, i, side_index[shot_side], style)
            if (cam, unit) not in scenes:
                scenes[cam, unit] = _camera_scene(seed, cam, unit, palettes[cam], size, frame, frame_size)
            stamp = shot_time.strftime("%Y-%m-%dT%H:%M:%S")
            caption = f"{camera}  {shot_time:%Y-%m-%d %H:%M:%S}  {int(shot_rng.integers(12, 30) - 8 * night)}C"
            img, bbox, quality = _sighting(shot_rng, *sheets[shot_side], build, shot_side, night, size, frame,
                                           frame_size, caption, scenes[cam, unit])
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:  # pragma: no cover - cv2 always encodes a valid uint8 image
                raise RuntimeError("JPEG encoding failed")
            (out / rel).write_bytes(buf.tobytes())
            rows.append({"path": rel, "identity": identity, "side": shot_side, "datetime": stamp,
                         "camera": camera, "bbox": json.dumps(bbox), "night": night, "jpeg_quality": quality,
                         "sighting": k + 1})
    return rows


def generate(
    out_dir: str | Path,
    *,
    n_individuals: int | None = None,
    sightings_per_individual: int | None = None,
    seed: int = 0,
    size: tuple[int, int] = (384, 256),
    sides: Sequence[str] = ("left", "right"),
    night_fraction: float = 0.25,
    frame: bool = False,
    frame_size: tuple[int, int] = (1280, 720),
    start: datetime = datetime(2023, 6, 1),
    days: float = 90.0,
    n_cameras: int = 12,
    paired_fraction: float = 0.0,
    progress: bool = False,
    wild: bool = False,
) -> pd.DataFrame:
    """Write a synthetic camera-trap data set of leopard flanks to ``out_dir``; return its metadata.

    Each of ``n_individuals`` (default 40; wild: 30) animals (``L-001`` ...) is photographed
    ``sightings_per_individual`` (default 4; wild: 5) times;
    the flanks are dealt out evenly over ``sides`` (so with the defaults every flank is seen twice and
    can be re-identified).  Images are JPEGs of ``size`` = (width, height) showing a crop around the animal,
    or with ``frame=True`` full camera-trap frames of ``frame_size`` with the animal somewhere inside.
    A fraction ``night_fraction`` of photos are greyscale infrared night shots (with night-time clock).
    Times fall within ``days`` after ``start``; each animal visits a couple of ``n_cameras`` cameras.

    Camera stations may be paired, as in Amur leopard surveys: with probability ``paired_fraction`` a
    sighting also yields the opposite flank from the station's second camera 1-5 s later (an extra file
    ``..._02p.jpg`` with the same ``sighting`` number). ``camera`` names the station, shared by both units,
    which is the detector a capture-recapture analysis uses.

    Returns a DataFrame with columns ``path`` (POSIX, relative to ``out_dir``), ``identity``, ``side``,
    ``datetime`` (ISO ``YYYY-MM-DDTHH:MM:SS``), ``camera`` (``C01`` ...), ``bbox`` (JSON ``[x, y, w, h]``,
    the animal's box in pixels), ``night`` (bool), ``jpeg_quality`` (int) and ``sighting`` (int), and
    writes ``out_dir/metadata.csv`` with :data:`METADATA_COLUMNS`.  The same ``seed`` gives byte-identical
    files.

    ``wild=True`` writes real-use "wild photos" instead (:mod:`leopard_reid.synthetic_wild`): whole animals
    in 400-800 px photos taken at shared sites, flank / three-quarter / face-on views, photographers'
    watermarks and camera-trap info bars; ``size``, ``sides``, ``frame``, ``frame_size`` and
    ``paired_fraction`` do not apply. Its ``metadata.csv`` holds no ``bbox`` and ``side`` = ``unknown`` (as
    a real wild set); the ground truth goes to ``truth.json``, ``masks/`` and extra columns of the returned
    table (``view``, ``true_side``, ``animal_bbox``, ``photographer`` (-1: none), ``watermark``, ``info_bar``,
    ``mask``); ``synthetic_wild.read_truth(out_dir)`` reads it back.
    """
    if n_individuals is None:
        n_individuals = 30 if wild else 40
    if sightings_per_individual is None:
        sightings_per_individual = 5 if wild else 4
    sides, size, frame_size = _checked_options(n_individuals, sightings_per_individual, seed, sides, night_fraction,
                                               n_cameras, paired_fraction, size, frame, frame_size)
    if wild:
        if frame or paired_fraction:
            raise ValueError("wild=True does not combine with frame or paired_fraction")
        from .synthetic_wild import generate_wild

        return generate_wild(out_dir, n_individuals=n_individuals, sightings_per_individual=sightings_per_individual,
                             seed=seed, night_fraction=night_fraction, start=start, days=days, n_cameras=n_cameras,
                             progress=progress)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    palettes = _site_palettes(np.random.default_rng([seed, 1 << 20]), n_cameras)
    scenes: dict[tuple[int, int], np.ndarray] = {}  # one fixed background per camera unit
    it = range(n_individuals)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="synthetic leopards", unit="individual")
    for i in it:
        rows += _write_individual(out, i, seed=seed, sightings_per_individual=sightings_per_individual,
                                  sides=sides, n_cameras=n_cameras, night_fraction=night_fraction, days=days,
                                  start=start, paired_fraction=paired_fraction, size=size, frame=frame,
                                  frame_size=frame_size, palettes=palettes, scenes=scenes)
    df = pd.DataFrame(rows, columns=[*METADATA_COLUMNS, "night", "jpeg_quality", "sighting"])
    df["night"] = df["night"].astype(bool)
    df[METADATA_COLUMNS].to_csv(out / "metadata.csv", index=False)
    return df
