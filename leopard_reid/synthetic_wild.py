"""Wild-photo mode of the synthetic generator (``synthetic.generate(..., wild=True)``).

The default synthetic set shows tight crops of one flank, which a keypoint matcher solves almost
perfectly.  Real wild photos defeat matchers in other ways, and this mode composes the generator's coats,
silhouettes, scenes and camera model into photos that fail the same ways:

* **Whole animals in a scene**: 400-800 px on the long side (3:2, 4:3 or 16:9, face shots sometimes
  portrait); a flank view's canvas spans 75-115 % of the frame width, a face view 65-100 % of its height,
  so the animal covers about 15-40 % of the photo, is sometimes cut by the frame edge, and grass and branches
  stand in front of it.
* **Shared backgrounds**: every photo is taken at one of ``n_cameras`` sites with a fixed,
  keypoint-rich scene (out-of-focus vegetation plus in-focus grass, twigs and stones).  Each animal visits
  2-3 sites, so several animals are photographed in front of the same background and one animal in front
  of different ones.  A quarter of the sites are camera traps (the same framing every time, sharp scene,
  an info bar with brand, camera, time and temperature over the bottom rows, infrared at night for
  ``night_fraction`` of their photos, a photographer's watermark on one in five); at the others
  photographers shoot in daylight with a telephoto lens (framing shifts and zooms a little, the scene
  behind the animal is soft).
* **Views**: ``flank`` (side view; the visible window of the flank coat pans along the body, so two flank
  sightings share anything from nearly all to little of their coat), ``three_quarter`` (the shoulder end of
  a flank under a strong perspective foreshortening of the rear) and ``face`` (face-on: head with an
  individual face-spot pattern, chest and front legs; only other face views show it).  Views are drawn
  with probabilities 0.55 / 0.3 / 0.15 (so about one query in eight has no other photo showing the same
  coat); left and right flanks are different coats, as in the default mode.  Coat colours vary little
  between individuals (a population's range), so colour is no free cue for a global embedding.
* **Watermarks**: six photographers ("(c) K. Perera Photography", ...), each with a fixed font, size,
  opacity and corner (relative to the photo size); a photographer shoots many animals at many sites.

Ground truth (what a user of real photos does not have) goes to ``truth.json`` and ``masks/``, not into
``metadata.csv``, which carries what a real wild set carries: ``path``, ``identity``, ``datetime`` and
``camera``, with ``side`` = ``unknown`` and no ``bbox`` (with the box the library would crop the animal and
the background and watermark failure modes would vanish; take ``animal_bbox``/``true_side`` from the
returned table to test that case).  ``truth.json`` maps each path to ``identity``, ``view``, ``side``
(``left``/``right``, ``null`` for face views), ``camera``, ``site`` (``trap``/``photographer``),
``photographer`` (index or ``null``), ``watermark`` and ``info_bar`` boxes (``[x, y, w, h]`` or ``null``),
``bbox`` (the animal's box, including occluded parts), ``mask`` (PNG path: 255 visible animal, 128 animal
behind vegetation, 0 elsewhere), ``coat_window`` (approximate ``[x0, y0, x1, y1]`` of the flank sheet in
view, ``null`` for face views: overlap between two sightings of a flank), ``size``, ``night``,
``jpeg_quality``.

Measured difficulty (defaults: 30 individuals x 5 photos, 12 sites; leave-one-out over all 150 photos,
identity-level top-1; 2 CPU cores). Plain RootSIFT LNBNN baseline (``benchmarks/baseline_lnbnn.py``, via
``python benchmarks/bench_wild_synthetic.py --seed S --keypoints``): 0.587 / 0.720 / 0.567 for seeds 0 / 1 /
2. The library at commit 778a7ed (``leopard_reid.evaluation.evaluate`` on one ``describe(local=True)`` pass, the code
path of ``leopard-reid evaluate --metadata DIR/metadata.csv --method M --json``; about 150 s): ``local`` 0.567
/ 0.707, ``global`` 0.133 / 0.267 and the default ``fused`` 0.013 / 0.487 for seeds 0 / 1 (its cross-fitted
logistic fusion gives the cosine a negative weight: among the shortlisted pairs, same-site pairs of different
animals have the higher cosine); the CLI's ``--method global`` describes without keypoints and gets 0.140 /
0.260, its ``--method local`` 0.567 on seed 0. Real wild photos (issue #16: 289 photos, 88 leopards): baseline
0.674, local 0.639, global 0.112, fused 0.540. The baseline's misses are mostly backgrounds and missing coat
overlap (seed 0): at camera traps its top-1 is 0.27-0.44, on photographers' photos 0.61-0.82; 58 % of its
wrong answers come from the query's own site (which holds under a tenth of the photos); a query with no other
photo of the same coat (13 % of them) is almost always missed. Of its 1,000 keypoints 76 % fall on the animal
in photographers' flank views, 43 % at traps, 27-63 % in face views. Generating the set takes 15-17 s.

Determinism: as in :mod:`leopard_reid.synthetic` (coats and bodies from the same streams), plus views from
``[seed, individual, 5]``, face patterns from ``[seed, individual, 2, 4]``, coat colours from ``[seed,
individual, 2, 6]``, site scenes from ``[seed, 2**20, camera, 9]`` and photographers from ``[seed, 2**21,
photographer]``.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from .synthetic import (
    METADATA_COLUMNS,
    _background,
    _build,
    _flank_sheet,
    _grass,
    _info_bar_height,
    _info_strip,
    _occlude,
    _photograph,
    _render_animal,
    _site_palettes,
)
from .synthetic_coat import _SPOT_BGR, SHEET_SIZE, _coat_style, _jitter_colour, _noise

__all__ = ["LONG_SIDE", "VIEWS", "generate_wild", "read_truth"]

#: Range of the photos' longer side, pixels.
LONG_SIDE = (400, 800)
#: Views and their probabilities.
VIEWS = ("flank", "three_quarter", "face")
_VIEW_P = (0.55, 0.3, 0.15)
_TRAP_SHARE = 0.25  # share of sites that are camera traps
_N_PHOTOGRAPHERS = 6
_SCENE = (960, 640)  # (w, h) of a site's scene
_FACE = (256, 384)  # (w, h) of a face-on sprite
_INITIALS = ["A.", "J.", "K.", "M.", "R.", "S.", "T.", "N.", "D.", "L."]
_NAMES = ["Smith", "Perera", "Fernando", "Silva", "Jayasuriya", "Khan", "de Mel", "Wijeratne", "Botha", "Naidoo"]
_STUDIOS = ["Photography", "Wildlife", "Photos", "Nature Images", "Wild Lens", ""]
_FONTS = [cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
          cv2.FONT_HERSHEY_COMPLEX_SMALL]
_CORNERS = ["br", "bl", "tr", "tl", "bc"]
_BRANDS = ["BUSHNELL", "BROWNING", "RECONYX", "CUDDEBACK"]


# --------------------------------------------------------------------------------------------------------
# Sites and photographers
# --------------------------------------------------------------------------------------------------------


def _site(seed: int, cam: int, palette: tuple[np.ndarray, np.ndarray], trap: bool) -> dict:
    """A site's fixed scene (float32 BGR :data:`_SCENE`, sharp clutter over a soft background) and kind."""
    rng = np.random.default_rng([seed, 1 << 20, cam, 9])
    w, h = _SCENE
    ground_frac = rng.uniform(0.45, 0.7)
    scene = _background(rng, w, h, palette, ground_frac)
    horizon = h * (1 - ground_frac)
    g_col, v_col = palette
    # in-focus grass, twigs and stones: the keypoints a background match is made of
    _grass(rng, scene, int(rng.uniform(0.15, 0.45) * w), v_col * 0.9, horizon * 0.6, horizon, (0.04, 0.2), (1, 2))
    _grass(rng, scene, int(rng.uniform(0.05, 0.25) * w), g_col * 1.15, horizon * 0.6, h * 0.85, (0.03, 0.12), (1, 3))
    for _ in range(int(rng.integers(6, 20))):  # twigs
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        ln, a = rng.uniform(20, 140), rng.uniform(0, np.pi)
        col = _jitter_colour(rng, (40, 50, 60), 0.3).tolist()
        p1 = (int(x + ln * math.cos(a)), int(y + ln * math.sin(a)))
        cv2.line(scene, (int(x), int(y)), p1, col, int(rng.integers(1, 4)), cv2.LINE_AA)
    for _ in range(int(rng.integers(3, 10))):  # pebbles and stones on the ground
        c = (int(rng.uniform(0, w)), int(rng.uniform(horizon, h)))
        ax = (int(rng.uniform(3, 18)), int(rng.uniform(2, 10)))
        col = (_jitter_colour(rng, (110, 120, 128), 0.1) * rng.uniform(0.6, 1.2)).tolist()
        cv2.ellipse(scene, c, ax, rng.uniform(0, 180), 0, 360, col, -1, cv2.LINE_AA)
    return {"scene": scene, "trap": trap, "brand": _BRANDS[int(rng.integers(len(_BRANDS)))]}


def _photographer(seed: int, p: int) -> dict:
    """A photographer's watermark style: text, font, size, opacity, colour and corner (fixed)."""
    rng = np.random.default_rng([seed, 1 << 21, p])
    name = f"{_INITIALS[int(rng.integers(len(_INITIALS)))]} {_NAMES[(p * 3 + int(rng.integers(3))) % len(_NAMES)]}"
    studio = _STUDIOS[int(rng.integers(len(_STUDIOS)))]
    text = f"(c) {name} {studio}".strip() if rng.random() < 0.7 else f"{name} {studio}".strip()
    return {
        "text": text,
        "font": _FONTS[int(rng.integers(len(_FONTS)))],
        "height": float(rng.uniform(0.03, 0.06)),  # text height / photo height
        "opacity": float(rng.uniform(0.35, 0.75)),
        "colour": (235.0, 235.0, 235.0) if rng.random() < 0.75 else (30.0, 30.0, 30.0),
        "corner": _CORNERS[p % len(_CORNERS)],
        "margin": float(rng.uniform(0.015, 0.04)),
    }


def _watermark(img: np.ndarray, ph: dict) -> list[int]:
    """Blend the photographer's text into ``img`` (uint8 BGR, in place); return its box [x, y, w, h]."""
    h, w = img.shape[:2]
    font, text = ph["font"], ph["text"]
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, 1)
    scale = min(ph["height"] * h / th, 0.6 * w / tw)
    thick = max(1, int(round(scale * 1.6)))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    m = int(ph["margin"] * max(w, h))
    corner = ph["corner"]
    x = {"l": m, "r": w - m - tw, "c": (w - tw) // 2}[corner[1]]
    y = m + th if corner[0] == "t" else h - m - base
    box = [max(0, x - thick), max(0, y - th - thick), 0, 0]
    box[2] = min(w, x + tw + thick) - box[0]
    box[3] = min(h, y + base + thick) - box[1]
    bx, by, bw, bh = box
    roi = img[by : by + bh, bx : bx + bw]
    ink = np.zeros(roi.shape[:2], np.uint8)
    cv2.putText(ink, text, (x - bx, y - by), font, scale, 255, thick, cv2.LINE_AA)
    a = (ink.astype(np.float32) / 255.0 * ph["opacity"])[..., None]
    roi[:] = np.clip(roi * (1 - a) + np.array(ph["colour"], np.float32) * a + 0.5, 0, 255).astype(np.uint8)
    return box


def _wild_colours(rng: np.random.Generator, style: dict) -> dict:
    """Narrow the coat colours to what real leopards of one population show: in real photos the ground
    colour says more about the light than about the individual (a global embedding must not get it free)."""
    flank = _jitter_colour(rng, (62, 138, 196), 0.04) * rng.uniform(0.92, 1.08)
    return {**style, "flank": flank.astype(np.float32), "spine": (flank * rng.uniform(0.75, 0.82)).astype(np.float32),
            "belly": _jitter_colour(rng, (168, 200, 224), 0.03)}


# --------------------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------------------


def _face_sprite(rng: np.random.Generator, style: dict) -> tuple[np.ndarray, np.ndarray]:
    """An individual's face-on look (head with its own face-spot pattern, chest, front legs) on a
    :data:`_FACE` canvas: float32 BGR texture and alpha."""
    w, h = _FACE
    lt = cv2.LINE_AA
    shape = np.zeros((h, w), np.uint8)
    cv2.ellipse(shape, (128, 270), (92, 92), 0, 0, 360, 255, -1, lt)  # chest
    for x0 in (72, 146):  # front legs
        cv2.rectangle(shape, (x0, 280), (x0 + 38, h - 1), 255, -1, lt)
    cv2.ellipse(shape, (128, 112), (102, 92), 0, 0, 360, 255, -1, lt)  # head
    for ex in (52, 204):
        cv2.ellipse(shape, (ex, 36), (30, 34), 0, 0, 360, 255, -1, lt)
    muzzle = np.zeros((h, w), np.uint8)
    cv2.ellipse(muzzle, (128, 168), (50, 38), 0, 0, 360, 255, -1, lt)
    cv2.ellipse(muzzle, (128, 250), (34, 60), 0, 0, 360, 255, -1, lt)  # pale throat
    pale = cv2.GaussianBlur(muzzle, (0, 0), 6).astype(np.float32)[..., None] / 255.0
    tex = np.empty((h, w, 3), np.float32)
    tex[:] = style["flank"] * 1.05
    tex = tex * (1 - pale) + style["belly"] * pale
    tex *= (1.0 + 0.05 * _noise(rng, h, w, 30.0))[..., None]

    # the individual's spots: fine on forehead and crown, lines of spots on the cheeks, blotches on the chest
    spots = np.zeros((h, w), np.uint8)
    sc = 16.0

    def dots(n: int, x: tuple[float, float], y: tuple[float, float], r: tuple[float, float]) -> None:
        xs, ys, rs = rng.uniform(*x, n), rng.uniform(*y, n), rng.uniform(*r, n)
        qs, angs = rng.uniform(0.55, 1.0, n), rng.uniform(0, 180, n)
        for cx, cy, rr, q, a in zip(xs.tolist(), ys.tolist(), rs.tolist(), qs.tolist(), angs.tolist(), strict=True):
            axes = (max(1, int(rr * sc)), max(1, int(rr * q * sc)))
            cv2.ellipse(spots, (int(cx * sc), int(cy * sc)), axes, a, 0, 360, 255, -1, lt, 4)

    dots(int(rng.integers(45, 80)), (55, 201), (28, 96), (1.6, 4.2))  # forehead
    dots(int(rng.integers(10, 20)), (30, 78), (100, 170), (2.0, 4.5))  # cheeks
    dots(int(rng.integers(10, 20)), (178, 226), (100, 170), (2.0, 4.5))
    dots(int(rng.integers(25, 45)), (40, 216), (205, 350), (3.5, 8.0))  # chest
    dots(int(rng.integers(10, 20)), (72, 110), (290, 380), (2.0, 4.0))  # legs
    dots(int(rng.integers(10, 20)), (146, 184), (290, 380), (2.0, 4.0))
    clear = np.zeros((h, w), np.uint8)  # no spots over eyes, nose and muzzle
    for c, ax in (((88, 108), (24, 16)), ((168, 108), (24, 16)), ((128, 165), (42, 34))):
        cv2.ellipse(clear, c, ax, 0, 0, 360, 255, -1, lt)
    spots[clear > 0] = 0
    disp = _noise(rng, h, w, 6.0, 2) * 1.2 + np.dstack(np.meshgrid(np.arange(w, dtype=np.float32),
                                                                    np.arange(h, dtype=np.float32)))
    spots = cv2.remap(spots, disp, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    sa = 0.93 * cv2.GaussianBlur(spots, (0, 0), 0.7).astype(np.float32)[..., None] / 255.0
    tex = tex * (1 - sa) + _SPOT_BGR * sa
    # features every leopard has: dark ear backs, eyes, nose, mouth line
    for ex in (52, 204):
        cv2.ellipse(tex, (ex, 36), (22, 26), 0, 0, 360, (30, 32, 38), -1, lt)
    for ex in (88, 168):
        cv2.ellipse(tex, (ex, 108), (17, 10), 0, 0, 360, (50, 140, 150), -1, lt)
        cv2.ellipse(tex, (ex, 108), (4, 9), 0, 0, 360, (15, 15, 15), -1, lt)
    cv2.fillPoly(tex, [np.array([[110, 142], [146, 142], [128, 164]], np.int32)], (95, 95, 150), lt)
    cv2.polylines(tex, [np.array([[128, 164], [128, 180], [108, 190]]), np.array([[128, 180], [148, 190]])], False,
                  (35, 35, 40), 2, lt)
    alpha = cv2.GaussianBlur(shape, (0, 0), 0.8).astype(np.float32) / 255.0
    return tex, alpha


def _face_view(rng: np.random.Generator, sprite: tuple[np.ndarray, np.ndarray], ah: int) -> tuple:
    """The face sprite under a random similarity + mild perspective (head turned a little), ``ah`` px high."""
    tex, alpha = sprite
    w, h = _FACE
    s = ah / h
    aw = int(round(w * s))
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    rot = math.radians(rng.uniform(-8, 8))
    rm = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
    c = np.array([w / 2, h / 2])
    yaw = rng.uniform(-0.07, 0.07)  # one side of the face nearer the camera
    dst = (src - c) * [1 - abs(yaw), 1] @ rm.T * 0.94 + c
    dst[:, 1] += np.where(src[:, 0] > c[0], yaw, -yaw) * (src[:, 1] - c[1]) * 0.6
    dst += rng.normal(0, 0.01, (4, 2)) * [w, h]
    hom = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    hom = np.diag([s, s, 1.0]) @ hom
    tex = cv2.warpPerspective(tex, hom, (aw, ah), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpPerspective(alpha, hom, (aw, ah), flags=cv2.INTER_LINEAR)
    yy = np.linspace(-1, 1, ah, dtype=np.float32)[:, None, None]
    tex *= 1.0 - 0.18 * np.clip(yy, 0, 1) + rng.uniform(-0.05, 0.05)  # lit from above
    return tex, alpha


def _three_quarter(rng: np.random.Generator, tex: np.ndarray, alpha: np.ndarray, front: float) -> tuple:
    """Foreshorten a side view: the rear end recedes (narrower, shorter), the shoulder stays near."""
    h, w = alpha.shape
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    d = w * rng.uniform(0.2, 0.4)  # how far the rump recedes toward the shoulder
    k = rng.uniform(0.55, 0.8)  # rear height / front height
    cy = h * 0.5
    dst = src.copy()
    rear = [0, 3] if front > 0 else [1, 2]
    dst[rear, 0] += d * front
    dst[rear, 1] = cy + (src[rear, 1] - cy) * k
    hom = cv2.getPerspectiveTransform(src, dst)
    return (cv2.warpPerspective(tex, hom, (w, h), flags=cv2.INTER_LINEAR),
            cv2.warpPerspective(alpha, hom, (w, h), flags=cv2.INTER_LINEAR))


# --------------------------------------------------------------------------------------------------------
# Photos
# --------------------------------------------------------------------------------------------------------


def _frame_size(rng: np.random.Generator, portrait: bool) -> tuple[int, int]:
    long = int(rng.integers(LONG_SIDE[0], LONG_SIDE[1] + 1))
    short = int(round(long / [1.5, 4 / 3, 16 / 9][int(rng.integers(3))]))
    return (short, long) if portrait else (long, short)


def _wild_photo(rng: np.random.Generator, view: str, side: str, sheets: dict, sprite: tuple, build: dict,
                site: dict, night: bool, caption: str, ph: dict | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Render one wild photo; returns (uint8 BGR, uint8 animal mask, truth dict)."""
    fw, fh = _frame_size(rng, view == "face" and rng.random() < 0.3)
    # background: the site's scene, framed the same way by a trap, a little differently by each photographer
    sw, sh = _SCENE
    zoom = rng.uniform(0.96, 1.0) if site["trap"] else rng.uniform(0.75, 1.0)
    cw = min(sw, sh * fw / fh) * zoom
    ch = cw * fh / fw
    x0, y0 = rng.uniform(0, sw - cw), rng.uniform(0, sh - ch)
    aff = np.array([[fw / cw, 0, -x0 * fw / cw], [0, fh / ch, -y0 * fh / ch]], np.float32)
    img = cv2.warpAffine(site["scene"], aff, (fw, fh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if not site["trap"]:  # a telephoto lens focused on the animal: the scene behind it is soft
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.8, 2.5) * fw / 600)

    # the animal on its own canvas
    coat_window = None
    if view == "face":
        ah = int(fh * rng.uniform(0.65, 1.0))
        tex, alpha = _face_view(rng, sprite, ah)
        ah, aw = alpha.shape
    else:
        front = -1.0 if side == "left" else 1.0
        aw = int(fw * (rng.uniform(0.75, 1.15) if view == "flank" else rng.uniform(0.9, 1.3)))
        aw = min(aw, int(1.4 * fh))
        ah = int(aw / 1.5)
        sheet, anchor = sheets[side]
        sw_, sh_ = SHEET_SIZE
        if view == "flank":  # the visible window pans along the body: sightings share much or little coat
            pan = np.array([rng.uniform(-0.2, 0.2) * sw_, rng.uniform(-0.07, 0.07) * sh_])
        else:  # three-quarter: the shoulder end of the flank
            pan = np.array([front * rng.uniform(0.08, 0.22) * sw_, rng.uniform(-0.07, 0.07) * sh_])
        centre = anchor + pan
        tex, alpha = _render_animal(rng, sheet, aw, ah, side == "left", centre, build)
        if view == "three_quarter":
            tex, alpha = _three_quarter(rng, tex, alpha, front)
        half = np.array([0.23 * sw_, 0.143 * sw_])  # _render_animal's window (about 0.46 x 0.29 sheet widths)
        coat_window = [int(v) for v in np.round(np.concatenate([centre - half, centre + half]))]

    # place it (possibly cut by the frame edge), with a contact shadow
    ox = int(rng.uniform(-0.08 * aw, max(-0.08 * aw + 1, fw - 0.92 * aw)))
    oy = int(rng.uniform(min(fh - ah, fh * 0.2), max(fh * 0.2 + 1, fh - 0.9 * ah)))
    full_a = np.zeros((fh, fw), np.float32)
    full_t = np.zeros((fh, fw, 3), np.float32)
    xa, ya, xb, yb = max(0, ox), max(0, oy), min(fw, ox + aw), min(fh, oy + ah)
    full_a[ya:yb, xa:xb] = alpha[ya - oy : yb - oy, xa - ox : xb - ox]
    full_t[ya:yb, xa:xb] = tex[ya - oy : yb - oy, xa - ox : xb - ox]
    ys, xs = np.nonzero(full_a > 0.5)
    shadow = np.zeros((fh, fw), np.float32)
    cv2.ellipse(shadow, (int(xs.mean()), int(ys.max())), (int(0.4 * (xs.max() - xs.min() + 1)), max(2, int(0.04 * ah))),
                0, 0, 360, 1.0, -1)
    shadow = cv2.GaussianBlur(shadow, (0, 0), 0.03 * aw + 1)
    img *= (1.0 - 0.35 * shadow)[..., None]
    img = img * (1.0 - full_a[..., None]) + full_t * full_a[..., None]
    bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]

    # vegetation in front: the generator's grass/branch occluder, twice, and note which animal pixels it hides
    before = img.copy()
    box = (xa, ya, xb - xa, yb - ya)
    _occlude(rng, img, box)
    _occlude(rng, img, box)
    hidden = np.abs(img - before).max(axis=2) > 8
    animal = full_a > 0.5
    photo = _photograph(rng, img, night, (bbox[0] + bbox[2] / 2, bbox[1] + bbox[3] / 2))

    info_bar = watermark = None
    if site["trap"]:
        bar = _info_bar_height(fh)
        photo[fh - bar :] = _info_strip(caption, fw, bar)
        info_bar = [0, fh - bar, fw, bar]
        animal[fh - bar :] = False
    if ph is not None:
        watermark = _watermark(photo, ph)
    mask = np.where(animal, np.where(hidden, 128, 255), 0).astype(np.uint8)
    truth = {"bbox": bbox, "watermark": watermark, "info_bar": info_bar, "coat_window": coat_window,
             "size": [fw, fh]}
    return photo, mask, truth


# --------------------------------------------------------------------------------------------------------
# The set
# --------------------------------------------------------------------------------------------------------


def generate_wild(out_dir: str | Path, *, n_individuals: int, sightings_per_individual: int, seed: int,
                  night_fraction: float, start: datetime, days: float, n_cameras: int,
                  progress: bool = False) -> pd.DataFrame:
    """Write the wild-photo set (see the module docstring); called by ``synthetic.generate(wild=True)``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    palettes = _site_palettes(np.random.default_rng([seed, 1 << 20]), n_cameras)
    sites: dict[int, dict] = {}
    n_traps = round(_TRAP_SHARE * n_cameras)
    traps = set(np.random.default_rng([seed, 1 << 20, 1]).permutation(n_cameras)[:n_traps].tolist())
    photographers = [_photographer(seed, p) for p in range(_N_PHOTOGRAPHERS)]
    rows: list[dict] = []
    truth: dict[str, dict] = {}
    it = range(n_individuals)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="synthetic wild leopards", unit="individual")
    for i in it:
        identity = f"L-{i + 1:03d}"
        meta_rng = np.random.default_rng([seed, i, 2])
        reps = -(-sightings_per_individual // 2)
        flanks = meta_rng.permutation(np.array((["left", "right"] * reps)[:sightings_per_individual], dtype=object))
        home = meta_rng.choice(n_cameras, size=min(n_cameras, int(meta_rng.integers(2, 4))), replace=False)
        build = _build(meta_rng)
        style = _wild_colours(np.random.default_rng([seed, i, 2, 6]), _coat_style(meta_rng))
        view_rng = np.random.default_rng([seed, i, 5])
        views = view_rng.choice(len(VIEWS), size=sightings_per_individual, p=_VIEW_P)
        sheets = {s: _flank_sheet(seed, i, k, style) for k, s in enumerate(("left", "right"))
                  if any(flanks[j] == s and VIEWS[views[j]] != "face" for j in range(sightings_per_individual))}
        sprite = _face_sprite(np.random.default_rng([seed, i, 2, 4]), style) if (views == 2).any() else None
        (out / identity).mkdir(exist_ok=True)
        (out / "masks" / identity).mkdir(parents=True, exist_ok=True)
        for k in range(sightings_per_individual):
            view = VIEWS[int(views[k])]
            side = str(flanks[k])
            rng = np.random.default_rng([seed, i, k, 1])
            cam = int(home[int(rng.integers(len(home)))])
            if cam not in sites:
                sites[cam] = _site(seed, cam, palettes[cam], cam in traps)
            site = sites[cam]
            night = bool(site["trap"] and rng.random() < night_fraction)
            day_off = int(rng.uniform(0, days))
            hour = int(rng.integers(19, 29)) % 24 if night else int(rng.integers(6, 18))
            when = (datetime(start.year, start.month, start.day) + timedelta(days=day_off, hours=hour,
                    minutes=int(rng.integers(60)), seconds=int(rng.integers(60))))
            camera = f"C{cam + 1:02d}"
            caption = f"{site['brand']}  {camera}  {when:%Y-%m-%d %H:%M:%S}  {int(rng.integers(12, 30) - 8 * night)}C"
            p = None if site["trap"] and rng.random() < 0.8 else int(rng.integers(_N_PHOTOGRAPHERS))
            photo, mask, t = _wild_photo(rng, view, side, sheets, sprite, build, site, night, caption,
                                         None if p is None else photographers[p])
            quality = int(rng.integers(60, 95))
            rel = f"{identity}/{identity}_{k + 1:02d}.jpg"
            ok, buf = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:  # pragma: no cover - cv2 always encodes a valid uint8 image
                raise RuntimeError("JPEG encoding failed")
            (out / rel).write_bytes(buf.tobytes())
            mask_rel = f"masks/{identity}/{identity}_{k + 1:02d}.png"
            cv2.imwrite(str(out / mask_rel), mask)
            truth[rel] = {"identity": identity, "view": view, "side": None if view == "face" else side,
                          "camera": camera, "site": "trap" if site["trap"] else "photographer", "photographer": p,
                          **t, "mask": mask_rel, "night": night, "jpeg_quality": quality}
            rows.append({"path": rel, "identity": identity, "side": "unknown",
                         "datetime": when.strftime("%Y-%m-%dT%H:%M:%S"), "camera": camera, "bbox": "",
                         "view": view, "true_side": "" if view == "face" else side,
                         "animal_bbox": json.dumps(t["bbox"]), "photographer": -1 if p is None else p,
                         "watermark": json.dumps(t["watermark"]), "info_bar": json.dumps(t["info_bar"]),
                         "mask": mask_rel, "night": night, "jpeg_quality": quality, "sighting": k + 1})
    extra = ["view", "true_side", "animal_bbox", "photographer", "watermark", "info_bar", "mask", "night",
             "jpeg_quality", "sighting"]
    df = pd.DataFrame(rows, columns=[*METADATA_COLUMNS, *extra])
    df["night"] = df["night"].astype(bool)
    df[METADATA_COLUMNS].to_csv(out / "metadata.csv", index=False)
    (out / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return df


def read_truth(out_dir: str | Path) -> pd.DataFrame:
    """The ground truth of a wild set written by :func:`generate_wild`, one row per photo in the order of its
    ``metadata.csv``: ``path`` plus the ``truth.json`` fields (boxes as lists or ``None``; ``mask`` relative
    to ``out_dir``, read it with ``cv2.imread(str(Path(out_dir) / mask), cv2.IMREAD_UNCHANGED)``; ``photographer``
    as nullable integers)."""
    out = Path(out_dir)
    truth = json.loads((out / "truth.json").read_text())
    paths = pd.read_csv(out / "metadata.csv")["path"].tolist()
    df = pd.DataFrame([{"path": p, **truth[p]} for p in paths])
    if len(df):
        df["photographer"] = df["photographer"].astype("Int64")  # <NA>: no watermark
    return df
