"""Pattern-level keypoint matching: RootSIFT features, LNBNN one-vs-many voting, geometric verification.

Global CNN embeddings of a spot pattern are weak on real leopards; matching the spots themselves is what
works (HotSpotter, Crall et al. 2013).  This module

1. extracts RootSIFT keypoints from a crop and from affine-tilted views of it (ASIFT, Morel & Yu 2009:
   a coat photographed obliquely in one picture still matches), upscaling tiny crops first
   (:func:`extract_features`), and stores them compactly (uint8 descriptors, :func:`pack_features`);
2. scores a query against every gallery exemplar at once with a local naive-Bayes nearest-neighbour
   (LNBNN) vote over one approximate nearest-neighbour index of all gallery descriptors
   (:class:`LocalMatcher`);
3. re-scores a shortlist by pairwise matching plus exhaustive similarity-transform verification
   (:func:`verify`), because two different animals with similar spot statistics share many similar
   descriptors but almost never a consistent spatial layout.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = [
    "LocalFeatures",
    "LocalMatcher",
    "Verification",
    "extract_features",
    "extractor_options",
    "pack_features",
    "unpack_features",
    "verify",
]

DESCRIPTOR_DIM = 128
_DESC_SCALE = 255.0  # RootSIFT components lie in [0, 1]; stored as round(255 * x) in uint8
_MIN_USABLE_SIDE = 8  # below this (after any upscaling is impossible to trust) no features are extracted


# --------------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # array fields: compare explicitly, not with ==
class LocalFeatures:
    """Keypoints and descriptors of one image.

    keypoints: float32 (n, 4) ``x, y, size, angle``: position in the *input* image's pixel frame; size and
        angle as measured in the (possibly affine-tilted) view the keypoint was found in.
    descriptors: uint8 (n, 128) quantised RootSIFT (``round(255 * sqrt(l1-normalised SIFT))``).
    image_size: ``(width, height)`` of the input image.
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def points(self) -> np.ndarray:
        """float32 (n, 2) keypoint positions (x, y)."""
        return self.keypoints[:, :2]


def _empty_features(image_size: tuple[int, int]) -> LocalFeatures:
    return LocalFeatures(
        keypoints=np.zeros((0, 4), np.float32),
        descriptors=np.zeros((0, DESCRIPTOR_DIM), np.uint8),
        image_size=(int(image_size[0]), int(image_size[1])),
    )


def _to_gray(image: Any) -> np.ndarray:
    """PIL image or uint8 array (HxW, HxWx3 RGB, HxWx4 RGBA) -> uint8 HxW greyscale."""
    if not isinstance(image, np.ndarray):
        mode = getattr(image, "mode", None)
        if mode is None:
            raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
        # via RGB so a PIL image and its RGB array give identical features
        image = np.asarray(image if mode == "L" else image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.size == 0:
        return np.zeros(arr.shape[:2], np.uint8)
    if arr.ndim == 3:
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
        elif arr.shape[2] in (3, 4):
            arr = cv2.cvtColor(np.ascontiguousarray(arr[:, :, :3]), cv2.COLOR_RGB2GRAY)
        else:
            raise ValueError(f"unsupported channel count {arr.shape[2]}")
    elif arr.ndim != 2:
        raise ValueError(f"expected a 2-D or 3-D image array, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _working_scale(width: int, height: int, max_side: int, min_side: int) -> float:
    """Resize factor: shrink so the long side is <= max_side, else grow so the short side is >= min_side
    (never letting the long side pass max_side)."""
    long_side, short_side = max(width, height), min(width, height)
    if long_side > max_side:
        return max_side / long_side
    if short_side < min_side:
        return min(min_side / short_side, max_side / long_side)
    return 1.0


def root_sift(descriptors: np.ndarray) -> np.ndarray:
    """SIFT -> RootSIFT (Arandjelovic & Zisserman 2012): L1-normalise, square-root; float32, unit L2."""
    d = np.asarray(descriptors, np.float32)
    d = d / np.maximum(d.sum(axis=1, keepdims=True), 1e-7)
    return np.sqrt(d)


def extract_features(
    image: Image.Image | np.ndarray,
    mask: np.ndarray | None = None,
    *,
    max_keypoints: int = 1000,
    max_side: int = 800,
    min_side: int = 64,
    contrast_threshold: float = 0.04,
    max_tilt: float = 2.0,
    clahe: bool = False,
    upright: bool = False,
    foreground: bool | str = "unboxed",
) -> LocalFeatures:
    """RootSIFT keypoints of an (already cropped) image.

    ``foreground`` keeps only keypoints inside the animal's foreground map
    (:func:`~leopard_reid.foreground.foreground_mask`: the embedded classifier's big-cat activation map),
    unless the animal fills the frame; ``mask`` (non-zero where keypoints may lie, the image's size) gives
    one instead. Two animals photographed at one camera share its background and a photographer's watermark
    recurs on all their photos; masked, neither can outvote the coat. ``True`` masks every image, ``False``
    none, and the default ``"unboxed"`` masks the photos that come without a detector box: an image given
    here directly is masked, while :meth:`Embedder.describe` leaves a photo cropped to its ``bbox`` whole
    (the detector has already found the animal, and on crops the coarse map only ever cuts coat: on the
    synthetic coat crops masking them cost 2 of 32 queries). Measured with ``benchmarks/bench_real.py``,
    leave-one-out top-1 against no mask: synthetic wild sets 0.51 -> 0.76 and 0.77 -> 0.83, Pilanesberg
    0.85 -> 0.88, leopardtrails unchanged (its crops fill the frame).
    The image is converted to greyscale, resized so its short side is at least ``min_side`` (tiny crops
    of 35 px give almost no keypoints otherwise) and its long side at most ``max_side`` (speed).
    ``max_tilt >= sqrt(2)`` also detects keypoints in affine-simulated views of the crop (ASIFT: tilts
    sqrt(2), 2, 2 sqrt(2)... up to ``max_tilt``, each at several in-plane rotations; OpenCV's
    ``AffineFeature``; tilt t simulates a view arccos(1/t) off the camera axis, t = 2 is 60 degrees), because
    two photos of one forehead or flank are rarely taken from the same angle (leopardtrails top-1 0.71 ->
    0.86); ``max_tilt=1`` is plain SIFT.
    ``clahe=True`` equalises contrast first and ``upright=True`` drops keypoint orientation (plain SIFT
    only); both measured worse on leopardtrails, so both are off by default.  Keypoints are returned in the
    input image's pixel frame: the ``max_keypoints`` strongest (by detector response) of the photo as taken,
    and with affine views up to ``max_keypoints`` more: the strongest over all views, less duplicates.  A
    blank or tiny image gives empty features.
    """
    levels = _tilt_levels(max_tilt)
    use_foreground = _wants_foreground(foreground)
    if upright and levels > 0:
        raise ValueError("upright=True needs max_tilt=1 (orientation-free keypoints in tilted views are undefined)")
    gray = _to_gray(image)
    height, width = gray.shape
    if min(width, height) < 1 or max_keypoints <= 0:
        return _empty_features((width, height))
    scale = _working_scale(width, height, max_side, min_side)
    if min(width, height) * scale < _MIN_USABLE_SIDE:
        return _empty_features((width, height))
    if use_foreground and mask is None:
        from .foreground import foreground_mask

        mask = foreground_mask(image)
    if scale != 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
        work = cv2.resize(gray, size, interpolation=interp)
        sx, sy = size[0] / width, size[1] / height
    else:
        work, sx, sy = gray, 1.0, 1.0
    if clahe:
        work = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(work)
    work_mask = _work_mask(mask, (height, width), work.shape)
    if levels > 0:
        kps, desc = _affine_detect(work, levels, int(max_keypoints), float(contrast_threshold), work_mask)
    else:
        kps, desc = _sift_detect(work, int(max_keypoints), float(contrast_threshold), upright, work_mask)
    if desc is None or len(kps) == 0:
        return _empty_features((width, height))
    kp = np.array([(k.pt[0], k.pt[1], k.size, k.angle) for k in kps], np.float32).reshape(-1, 4)
    # cv2 pixel centres: x_in = (x_work + 0.5) / s - 0.5
    kp[:, 0] = (kp[:, 0] + 0.5) / sx - 0.5
    kp[:, 1] = (kp[:, 1] + 0.5) / sy - 0.5
    kp[:, 2] /= float(np.sqrt(sx * sy))
    q = np.clip(np.rint(root_sift(desc) * _DESC_SCALE), 0, 255).astype(np.uint8)
    return LocalFeatures(keypoints=kp, descriptors=q, image_size=(int(width), int(height)))


def extractor_options(options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every option of :func:`extract_features`, the given ones over the defaults.

    Unknown names raise ``TypeError``. The embedding cache keys stored keypoints by this dict, so a changed
    default never serves keypoints extracted the old way.
    """
    params = inspect.signature(extract_features).parameters.values()
    defaults = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(options or {}) - set(defaults))
    if unknown:
        raise TypeError(f"unknown keypoint option(s) {', '.join(unknown)}; known: {', '.join(defaults)}")
    return {**defaults, **(options or {})}


def options_for_image(options: Mapping[str, Any], *, boxed: bool) -> dict[str, Any]:
    """``options`` for one image: ``foreground="unboxed"`` becomes ``not boxed`` (a detector crop stays whole)."""
    if options.get("foreground") == "unboxed":
        return {**options, "foreground": not boxed}
    return dict(options)


def _wants_foreground(foreground: bool | str) -> bool:
    if isinstance(foreground, str):
        if foreground != "unboxed":
            raise ValueError(f"foreground must be True, False or 'unboxed', not {foreground!r}")
        return True
    return bool(foreground)


_SIFT_BORDER = 5  # px: OpenCV's SIFT_IMG_BORDER
_ROTATION_STEP = 72.0  # degrees at tilt 1; OpenCV's AffineFeature default (step 72 / t at tilt t)


def _tilt_levels(max_tilt: float) -> int:
    """Tilt levels ``t = 2**(k/2)``, ``k = 1..levels``, not above ``max_tilt`` (OpenCV's ``maxTilt``)."""
    return max(0, int(np.floor(2.0 * np.log2(max(max_tilt, 1.0)) + 1e-4)))


def _affine_views(levels: int) -> int:
    """Views OpenCV's ``AffineFeature`` simulates: the image itself, then at each tilt ``t`` the in-plane
    rotations ``0, s, 2s, ... < 180`` degrees with ``s = 72 / t``."""
    views = 1
    for k in range(1, levels + 1):
        views += int(np.ceil(180.0 / (_ROTATION_STEP / 2.0 ** (0.5 * k)) - 1e-6))
    return views


def _work_mask(mask: np.ndarray | None, shape: tuple[int, int], work_shape: tuple[int, ...]) -> np.ndarray | None:
    """``mask`` (non-zero where keypoints may lie, the input image's size) as uint8 at the working size."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape[:2] != tuple(shape):
        raise ValueError(f"mask has shape {mask.shape[:2]}, the image {tuple(shape)}")
    m = (mask.reshape(mask.shape[:2]) > 0).astype(np.uint8) * 255
    if m.shape != tuple(work_shape[:2]):
        m = cv2.resize(m, (work_shape[1], work_shape[0]), interpolation=cv2.INTER_NEAREST)
    return m


def _sift_detect(
    work: np.ndarray, max_keypoints: int, contrast_threshold: float, upright: bool, mask: np.ndarray | None = None
) -> tuple:
    """Plain SIFT keypoints and descriptors of ``work`` (at most ``max_keypoints``, strongest first), only
    where ``mask`` is non-zero when given."""
    sift = cv2.SIFT_create(nfeatures=max_keypoints, contrastThreshold=contrast_threshold)
    if not upright:
        kps, desc = sift.detectAndCompute(work, mask)
        return (kps[:max_keypoints], desc[:max_keypoints]) if desc is not None else ((), None)
    # gravity-vector assumption: drop the dominant orientation (duplicates differ only in angle)
    seen: set[tuple[float, float, float]] = set()
    up = []
    for k in sift.detect(work, mask):
        key = (round(k.pt[0], 2), round(k.pt[1], 2), round(k.size, 2))
        if key not in seen:
            seen.add(key)
            up.append(cv2.KeyPoint(k.pt[0], k.pt[1], k.size, 0.0, k.response, k.octave, k.class_id))
    if not up:
        return (), None
    kps, desc = sift.compute(work, up)
    return kps[:max_keypoints], desc[:max_keypoints]


def _affine_detect(
    work: np.ndarray, levels: int, max_keypoints: int, contrast_threshold: float, mask: np.ndarray | None = None
) -> tuple:
    """ASIFT keypoints (the ``max_keypoints`` strongest over the photo and its affine-tilted views) together
    with the photo's own ``max_keypoints`` strongest; duplicates dropped, the photo's first.

    Within ASIFT each view keeps its strongest ``2 * max_keypoints / views`` (OpenCV's ``AffineFeature``
    with SIFT's ``nfeatures``), so on whole-animal photos, where coat and scene give far more keypoints than
    the budget, the view as taken kept only a fifth of it; giving it back its whole budget raised
    leave-one-out top-1 on Pilanesberg from 0.74 to 0.88 (dev harness; 0.765 to 0.853 in bench_real), with
    leopardtrails unchanged at 0.857 (top-5 0.893 to 0.929). Stable sorts: deterministic.
    """
    kps, desc = _sift_detect(work, max_keypoints, contrast_threshold, False, mask)
    kps = list(kps) if desc is not None else []
    per_view = int(np.ceil(2.0 * max_keypoints / _affine_views(levels)))
    backend = cv2.SIFT_create(nfeatures=per_view, contrastThreshold=contrast_threshold)
    asift = cv2.AffineFeature_create(backend, maxTilt=levels, rotateStepBase=_ROTATION_STEP)
    tkps, tdesc = asift.detectAndCompute(work, mask)
    if tdesc is None or len(tkps) == 0:
        return (kps, desc) if kps else ((), None)
    # SIFT drops keypoints within 5 px of its image's border, but a tilted view's border is not the crop's:
    # drop those at the crop's edge too (they describe the cut, and match the cut of any other crop)
    h, w = work.shape[:2]
    b = _SIFT_BORDER
    inside = [i for i, k in enumerate(tkps) if b <= k.pt[0] <= w - 1 - b and b <= k.pt[1] <= h - 1 - b]
    order = sorted(inside, key=lambda i: -tkps[i].response)[:max_keypoints]  # stable: deterministic
    frontal = {(k.pt, k.size) for k in kps}  # ASIFT's untilted view repeats these exactly
    order = [i for i in order if (tkps[i].pt, tkps[i].size) not in frontal]
    if not kps:
        return ([tkps[i] for i in order], tdesc[order]) if order else ((), None)
    return kps + [tkps[i] for i in order], np.concatenate([desc, tdesc[order]])


def pack_features(features: Sequence[LocalFeatures]) -> dict[str, np.ndarray]:
    """Flatten features of many images into four arrays (savable with ``np.savez``, no pickle).

    ``keypoints`` (N, 4) float32 and ``descriptors`` (N, 128) uint8 concatenated; ``offsets`` int64
    (n_images + 1,) so image i owns rows ``offsets[i]:offsets[i+1]``; ``image_sizes`` int64 (n_images, 2).
    """
    counts = np.array([len(f) for f in features], np.int64)
    offsets = np.zeros(len(features) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    if features:
        keypoints = np.concatenate([np.asarray(f.keypoints, np.float32).reshape(-1, 4) for f in features])
        descriptors = np.concatenate(
            [np.asarray(f.descriptors, np.uint8).reshape(-1, DESCRIPTOR_DIM) for f in features]
        )
    else:
        keypoints = np.zeros((0, 4), np.float32)
        descriptors = np.zeros((0, DESCRIPTOR_DIM), np.uint8)
    sizes = np.array([f.image_size for f in features], np.int64).reshape(-1, 2)
    return {"keypoints": keypoints, "descriptors": descriptors, "offsets": offsets, "image_sizes": sizes}


def unpack_features(arrays: Mapping[str, np.ndarray]) -> list[LocalFeatures]:
    """Exact inverse of :func:`pack_features` (accepts the dict or an ``np.load`` result)."""
    keypoints = np.asarray(arrays["keypoints"], np.float32)
    descriptors = np.asarray(arrays["descriptors"], np.uint8)
    offsets = np.asarray(arrays["offsets"], np.int64)
    sizes = np.asarray(arrays["image_sizes"], np.int64).reshape(-1, 2)
    if len(offsets) != len(sizes) + 1 or offsets[-1] != len(keypoints) or len(keypoints) != len(descriptors):
        raise ValueError("inconsistent packed local features")
    return [
        LocalFeatures(
            keypoints=keypoints[offsets[i] : offsets[i + 1]].copy(),
            descriptors=descriptors[offsets[i] : offsets[i + 1]].copy(),
            image_size=(int(sizes[i, 0]), int(sizes[i, 1])),
        )
        for i in range(len(sizes))
    ]


def _as_float(descriptors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(descriptors, dtype=np.float32) * np.float32(1.0 / _DESC_SCALE)


_CHUNK = 1 << 16  # descriptors converted to float at a time when indexing a large gallery


def _mean_cov(desc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64, like ``np.cov``) of quantised descriptors, converted chunk by chunk so
    a gallery of millions of descriptors never exists as one float array."""
    n = len(desc)
    total = np.zeros(DESCRIPTOR_DIM)
    for i in range(0, n, _CHUNK):
        total += _as_float(desc[i : i + _CHUNK]).sum(0, dtype=np.float64)
    mean = total / n
    cov = np.zeros((DESCRIPTOR_DIM, DESCRIPTOR_DIM))
    for i in range(0, n, _CHUNK):
        x = _as_float(desc[i : i + _CHUNK]).astype(np.float64) - mean
        cov += x.T @ x
    return mean, cov / (n - 1)


# --------------------------------------------------------------------------------------------------------
# Pairwise verification
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Verification:
    """Result of matching one query against one candidate image.

    n_matches: tentative correspondences (after the ratio test); n_inliers: those consistent with one
    similarity transform; score: sum over inliers of ``1 - (d1 / d2)**2`` (ratio-test distinctiveness, so a
    very distinctive inlier counts ~1, a borderline one ~0); query_points / candidate_points: (m, 2)
    float32 inlier positions in each input image's pixel frame, for drawing.
    """

    n_matches: int
    n_inliers: int
    score: float
    query_points: np.ndarray = field(repr=False)
    candidate_points: np.ndarray = field(repr=False)


def _empty_verification(n_matches: int = 0) -> Verification:
    z = np.zeros((0, 2), np.float32)
    return Verification(n_matches=n_matches, n_inliers=0, score=0.0, query_points=z, candidate_points=z.copy())


def _ratio_matches(
    q: np.ndarray, c: np.ndarray, ratio: float, mutual: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact 2-NN ratio-test matches query->candidate on float RootSIFT rows.

    Returns (query index, candidate index, weight = 1 - (d1/d2)^2).  One GEMM plus two arg-max passes,
    which is several times faster than ``argpartition`` or ``cv2.BFMatcher`` at these sizes.
    """
    if len(q) == 0 or len(c) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    qn = (q * q).sum(1)
    cn = (c * c).sum(1)
    s = q @ c.T
    s *= 2.0
    s -= cn[None, :]  # s = |q|^2 - d^2 (row-wise monotone in -d^2)
    back = np.argmax(s + (-qn)[:, None], axis=0) if mutual else None
    rows = np.arange(len(q))
    j1 = np.argmax(s, axis=1)
    v1 = s[rows, j1]
    s[rows, j1] = -np.inf
    v2 = s[rows, np.argmax(s, axis=1)]
    d1 = np.maximum(qn - v1, 0.0).astype(np.float64)
    d2 = np.maximum(qn - v2, 0.0).astype(np.float64)
    keep = d1 < (ratio * ratio) * d2
    if back is not None:
        keep &= back[j1] == rows
    w = 1.0 - d1[keep] / np.maximum(d2[keep], 1e-12)
    return rows[keep], j1[keep].astype(np.int64), w


def _similarity_lsq(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Weighted least-squares similarity dst ~ s R(theta) src + t (Umeyama). Returns (s, theta, t)."""
    w = w / w.sum()
    ms, md = w @ src, w @ dst
    a, b = src - ms, dst - md
    # complex form: b ~ z * a with z = s * exp(i theta)
    za = a[:, 0] + 1j * a[:, 1]
    zb = b[:, 0] + 1j * b[:, 1]
    den = float(w @ (np.abs(za) ** 2))
    if den <= 1e-18:
        return 0.0, 0.0, md - ms
    z = complex(np.sum(w * np.conj(za) * zb) / den)
    s, th = abs(z), float(np.angle(z))
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return s, th, md - s * (rot @ ms)


def _geometric_inliers(
    q_kp: np.ndarray,
    c_kp: np.ndarray,
    q_side: float,
    c_side: float,
    w: np.ndarray,
    threshold: float,
    scale_tol: float,
    angle_tol: float,
) -> np.ndarray:
    """Inlier mask of the best similarity transform, deterministic.

    Every correspondence of two SIFT keypoints (position, scale, orientation) is itself a full similarity
    hypothesis (Philbin et al. 2007); all are scored exhaustively (n x n), the best is refined by weighted
    least squares on its inliers and inliers recounted.  An inlier must agree in position (error below
    ``threshold`` x the long side of *both* images, so a degenerate shrinking transform cannot collect
    inliers), in keypoint scale ratio (within ``scale_tol``) and orientation (within ``angle_tol`` degrees).
    Coordinates are normalised by each image's long side because crops come at very different resolutions.
    """
    p = q_kp[:, :2].astype(np.float64) / q_side
    r = c_kp[:, :2].astype(np.float64) / c_side
    ls = np.log(np.maximum(c_kp[:, 2], 1e-6) / c_side) - np.log(np.maximum(q_kp[:, 2], 1e-6) / q_side)
    th = np.radians(c_kp[:, 3].astype(np.float64) - q_kp[:, 3].astype(np.float64))
    cos_th, sin_th = np.cos(th), np.sin(th)
    log_tol = np.log(scale_tol)
    cos_tol = np.cos(np.radians(min(float(angle_tol), 180.0)))

    def inliers_of(scale: np.ndarray, theta: np.ndarray, tx: np.ndarray, tol: float) -> np.ndarray:
        # scale/theta/tx: (h,), (h,), (h, 2) -> (h, n) mask
        cos, sin = scale * np.cos(theta), scale * np.sin(theta)
        px = cos[:, None] * p[None, :, 0] - sin[:, None] * p[None, :, 1] + tx[:, None, 0]
        py = sin[:, None] * p[None, :, 0] + cos[:, None] * p[None, :, 1] + tx[:, None, 1]
        err2 = (px - r[None, :, 0]) ** 2 + (py - r[None, :, 1]) ** 2
        lim = tol * np.minimum(1.0, scale)
        ok = err2 < (lim * lim)[:, None]
        ok &= np.abs(ls[None, :] - np.log(np.maximum(scale, 1e-12))[:, None]) < log_tol
        # |wrap(th - theta)| < angle_tol  <=>  cos(th - theta) > cos(angle_tol), as two outer products
        ok &= np.cos(theta)[:, None] * cos_th[None, :] + np.sin(theta)[:, None] * sin_th[None, :] > cos_tol
        return ok

    # hypotheses from single correspondences: looser position tolerance (one keypoint's scale and
    # orientation are noisy, so far-away points drift), exact one refined below
    scale = np.exp(ls)
    rot_p = np.stack([np.cos(th) * p[:, 0] - np.sin(th) * p[:, 1], np.sin(th) * p[:, 0] + np.cos(th) * p[:, 1]], 1)
    tx = r - scale[:, None] * rot_p
    ok = inliers_of(scale, th, tx, 2.0 * threshold)
    best = int(np.argmax(ok.astype(np.float64) @ w))
    mask = ok[best]
    for _ in range(2):  # refine: least squares on inliers, recount
        if mask.sum() < 2:
            break
        s_, t_, tr = _similarity_lsq(p[mask], r[mask], w[mask])
        if s_ <= 0:
            break
        mask = inliers_of(np.array([s_]), np.array([t_]), tr[None, :], threshold)[0]
    return mask


def verify(
    query: LocalFeatures,
    candidate: LocalFeatures,
    *,
    ratio: float = 0.8,
    threshold: float = 0.05,
    scale_tol: float = 2.0,
    angle_tol: float = 30.0,
    min_inliers: int = 4,
    mutual: bool = False,
) -> Verification:
    """Match query to candidate (ratio test) and keep matches consistent with one similarity transform.

    ``threshold`` is the position tolerance as a fraction of each image's long side (scale-free, because
    crops of the same animal come at very different resolutions); ``scale_tol`` / ``angle_tol`` bound the
    keypoint scale-ratio and orientation disagreement (see :func:`_geometric_inliers`).  Fewer than
    ``min_inliers`` inliers count as no verified match (score 0).  Deterministic: hypotheses are enumerated
    exhaustively, not sampled.
    """
    with threadpool_limits(1):  # tiny GEMMs: BLAS threading only adds overhead
        qi, ci, w = _ratio_matches(_as_float(query.descriptors), _as_float(candidate.descriptors), ratio, mutual)
    return _verify_matches(
        query,
        candidate,
        qi,
        ci,
        w,
        threshold=threshold,
        scale_tol=scale_tol,
        angle_tol=angle_tol,
        min_inliers=min_inliers,
    )


def _verify_matches(
    query: LocalFeatures,
    candidate: LocalFeatures,
    qi: np.ndarray,
    ci: np.ndarray,
    w: np.ndarray,
    *,
    threshold: float,
    scale_tol: float,
    angle_tol: float,
    min_inliers: int,
) -> Verification:
    n = len(qi)
    if n < max(min_inliers, 2):
        return _empty_verification(n)
    inl = _geometric_inliers(
        query.keypoints[qi],
        candidate.keypoints[ci],
        float(max(query.image_size)),
        float(max(candidate.image_size)),
        w,
        threshold,
        scale_tol,
        angle_tol,
    )
    if inl.any():
        order = np.argsort(-w[inl], kind="stable")
        sel = np.flatnonzero(inl)[order]
        # one correspondence per candidate keypoint (a burst of query points onto one spot counts once)
        _, first = np.unique(ci[sel], return_index=True)
        sel = sel[np.sort(first)]
        sel = sel[_distinct(query.keypoints[qi[sel], :2], candidate.keypoints[ci[sel], :2],
                            _DUP_FRACTION * max(query.image_size), _DUP_FRACTION * max(candidate.image_size))]
        keep = np.zeros(n, bool)
        keep[sel] = True
        inl = keep
    n_inl = int(inl.sum())
    if n_inl < min_inliers:
        return _empty_verification(n)
    return Verification(
        n_matches=n,
        n_inliers=n_inl,
        score=float(w[inl].sum()),
        query_points=query.keypoints[qi[inl], :2].astype(np.float32),
        candidate_points=candidate.keypoints[ci[inl], :2].astype(np.float32),
    )


_DUP_FRACTION = 0.01  # inliers closer than this (x the image's long side) in either image are one spot


def _distinct(qp: np.ndarray, cp: np.ndarray, rq: float, rc: float) -> np.ndarray:
    """Indices of correspondences (strongest first) kept when each spot may count once on either side.

    Affine-simulated views detect one spot several times at nearly the same place; without this, a spot
    seen in k views counts up to k inliers, which inflates the scores of different animals as much as those
    of the same one (the ASIFT paper merges matches closer than sqrt(2) px the same way).
    """
    near = np.sum((qp[:, None, :] - qp[None, :, :]) ** 2, axis=2) < rq * rq
    near |= np.sum((cp[:, None, :] - cp[None, :, :]) ** 2, axis=2) < rc * rc
    dropped = np.zeros(len(qp), bool)
    kept = []
    for i in range(len(qp)):  # greedy, strongest first: a kept correspondence drops its neighbours
        if not dropped[i]:
            kept.append(i)
            dropped |= near[i]
    return np.asarray(kept, np.int64)


def _exact_knn(q: np.ndarray, g: np.ndarray, n: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force n nearest neighbours (squared L2), sorted, via chunked GEMM."""
    gn = (g * g).sum(1)
    idx = np.empty((len(q), n), np.int64)
    dist = np.empty((len(q), n), np.float64)
    for s in range(0, len(q), chunk):
        qb = q[s : s + chunk]
        d2 = gn[None, :] - 2.0 * (qb @ g.T)
        d2 += (qb * qb).sum(1)[:, None]
        part = np.argpartition(d2, n - 1, axis=1)[:, :n] if n < d2.shape[1] else np.tile(np.arange(n), (len(qb), 1))
        pd = np.take_along_axis(d2, part, 1)
        o = np.argsort(pd, axis=1, kind="stable")
        idx[s : s + chunk] = np.take_along_axis(part, o, 1)
        dist[s : s + chunk] = np.maximum(np.take_along_axis(pd, o, 1), 0.0)
    return idx, dist


# --------------------------------------------------------------------------------------------------------
# One-vs-many matcher
# --------------------------------------------------------------------------------------------------------


class LocalMatcher:
    """One-vs-many LNBNN vote over all gallery descriptors, then geometric verification of a shortlist.

    Options (keyword-only):
        k: nearest neighbours that vote per query descriptor; the (k+1)-th is the LNBNN normaliser
            (vote = d_norm - d_i, one vote per query descriptor and exemplar).
        normalise: divide each exemplar's vote by sqrt(its keypoint count), so exemplars with many
            keypoints do not win by sheer number (measured: +7 to +18 points top-1 on leopardtrails).
        shortlist: how many exemplars (by LNBNN vote) get pairwise geometric verification.
        checks / trees: FLANN kd-tree leaf checks and tree count (speed vs recall of the approximate
            index); ``checks <= 0`` or a gallery of at most ``exact_limit`` descriptors uses exact search.
        pca_dim: the index searches descriptors projected to this many principal components (None: all
            128); verification always uses the full descriptors.
        n_jobs: threads for the index search (default: all cores).
        ratio, threshold, scale_tol, angle_tol, min_inliers: passed to :func:`verify`.
        verification: False ranks by the LNBNN vote alone.
        seed: seeds OpenCV's RNG before building the randomised kd-trees (results are reproducible).
        support: with ``labels`` given to :meth:`fit`, each exemplar's score gains this fraction of the
            verification score of the best *other* verified exemplar of its identity. HotSpotter pools votes
            per name, not per photo: a second photo of the same animal that also verifies is evidence, and an
            identity ranked by its best exemplar alone ignores it (``benchmarks/bench_real.py``: synthetic
            wild top-1 +3 and +1 of 150 queries, Pilanesberg and leopardtrails unchanged). 0 turns it off.

    Score scale returned by :meth:`score` (higher = more similar, float64)::

        verified (>= min_inliers inliers):  score = 1 + verification.score + lnbnn / (lnbnn_max + 1e-9)
        otherwise:                          score =                          lnbnn / (lnbnn_max + 1e-9)
        then, with labels:                  score += support * (best other same-identity verification.score)

    ``lnbnn`` is the exemplar's (normalised) LNBNN vote (>= 0) and ``lnbnn_max`` the largest vote for that
    query, so an unverified exemplar scores in [0, 1] and a verified one above 1 (its
    :class:`Verification` score is a sum of inlier weights).  The excluded exemplar scores -1.
    """

    def __init__(
        self,
        *,
        k: int = 4,
        shortlist: int = 20,
        checks: int = 128,
        trees: int = 4,
        ratio: float = 0.8,
        threshold: float = 0.05,
        scale_tol: float = 2.0,
        angle_tol: float = 30.0,
        min_inliers: int = 4,
        verification: bool = True,
        normalise: bool = True,
        exact_limit: int = 0,
        pca_dim: int | None = 64,
        n_jobs: int | None = None,
        seed: int = 0,
        support: float = 0.5,
    ) -> None:
        if k < 1:
            raise ValueError("k must be >= 1")
        self.k = int(k)
        self.shortlist = int(shortlist)
        self.checks = int(checks)
        self.trees = int(trees)
        self.ratio = float(ratio)
        self.threshold = float(threshold)
        self.scale_tol = float(scale_tol)
        self.angle_tol = float(angle_tol)
        self.min_inliers = int(min_inliers)
        self.verification = bool(verification)
        self.normalise = bool(normalise)
        self.exact_limit = int(exact_limit)
        self.pca_dim = None if pca_dim is None else int(pca_dim)
        self.n_jobs = n_jobs
        self.seed = int(seed)
        self.support = float(support)

    # -- fitting -----------------------------------------------------------------------------------------

    def fit(self, features: Sequence[LocalFeatures], labels: Sequence[str] | None = None) -> LocalMatcher:
        """Index all descriptors of the gallery exemplars."""
        features = list(features)
        if labels is not None and len(labels) != len(features):
            raise ValueError("labels and features differ in length")
        self.features_ = features
        self.labels_ = None if labels is None else np.asarray([str(x) for x in labels])
        self.identity_codes_ = None if labels is None else np.unique(self.labels_, return_inverse=True)[1]
        counts = np.array([len(f) for f in features], np.int64)
        self.offsets_ = np.zeros(len(features) + 1, np.int64)
        np.cumsum(counts, out=self.offsets_[1:])
        self.owner_ = np.repeat(np.arange(len(features), dtype=np.int64), counts)
        # descriptors stay uint8 (a quarter of float32): verification converts one candidate at a time, and
        # the index holds only the (projected) float copy it searches
        desc = (np.concatenate([f.descriptors for f in features]) if len(self.owner_)
                else np.zeros((0, DESCRIPTOR_DIM), np.uint8))
        self.pca_mean_, self.pca_components_ = None, None
        if self.pca_dim and 0 < self.pca_dim < DESCRIPTOR_DIM and len(self.owner_) > DESCRIPTOR_DIM:
            # kd-trees degrade with dimension: search in a PCA subspace (eigh of the covariance; exact
            # and deterministic), which is several times faster at equal recall
            mean, cov = _mean_cov(desc)
            _, vecs = np.linalg.eigh(cov)
            self.pca_mean_ = mean.astype(np.float32)
            self.pca_components_ = np.ascontiguousarray(vecs[:, ::-1][:, : self.pca_dim], np.float32)
            self.index_data_ = np.concatenate(
                [self._project(_as_float(desc[i : i + _CHUNK])) for i in range(0, len(desc), _CHUNK)]
            )
        else:
            self.index_data_ = _as_float(desc)
        self.index_ = None
        if self.checks > 0 and len(self.owner_) > self.exact_limit:
            cv2.setRNGSeed(self.seed)  # FLANN's randomised kd-trees draw from OpenCV's global RNG
            self.index_ = cv2.flann_Index(
                self.index_data_,
                {"algorithm": 1, "trees": self.trees},  # FLANN_INDEX_KDTREE
            )
        self.n_keypoints_ = counts
        return self

    @property
    def n_exemplars(self) -> int:
        return len(self.features_)

    # -- LNBNN -------------------------------------------------------------------------------------------

    def _knn(self, desc: np.ndarray, n_neighbours: int) -> tuple[np.ndarray, np.ndarray]:
        """(idx, squared L2) of the n nearest gallery descriptors per row; exact (GEMM) for small galleries
        or when ``checks <= 0``, FLANN kd-tree otherwise."""
        n_neighbours = min(n_neighbours, len(self.owner_))
        q = self._project(_as_float(desc))
        if self.index_ is None:
            return _exact_knn(q, self.index_data_, n_neighbours)
        index = self.index_
        params = {"checks": self.checks}

        def search(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return index.knnSearch(block, n_neighbours, params=params)

        n_jobs = max(1, min(self.n_jobs or os.cpu_count() or 1, len(q) // 256 + 1))
        if n_jobs == 1:
            idx, dist = search(q)
        else:  # cv2 releases the GIL: threads give real parallelism
            blocks = np.array_split(q, n_jobs)
            with ThreadPoolExecutor(n_jobs) as pool:
                parts = list(pool.map(search, blocks))
            idx = np.concatenate([p[0] for p in parts])
            dist = np.concatenate([p[1] for p in parts])
        return idx.astype(np.int64), dist.astype(np.float64)

    def _project(self, x: np.ndarray) -> np.ndarray:
        if self.pca_components_ is None:
            return x
        return np.ascontiguousarray((x - self.pca_mean_) @ self.pca_components_, np.float32)

    def _lnbnn(
        self, idx: np.ndarray, dist: np.ndarray, qcount: np.ndarray, exclude: Sequence[int | None]
    ) -> list[np.ndarray]:
        """Per-query LNBNN votes per exemplar from kNN rows (grouped per query by qcount)."""
        n_ex = self.n_exemplars
        k = self.k
        out = []
        start = 0
        for q, nq in enumerate(qcount):
            rows_i = idx[start : start + nq]
            rows_d = dist[start : start + nq]
            start += nq
            votes = np.zeros(n_ex, np.float64)
            if nq == 0 or rows_i.shape[1] == 0:
                out.append(votes)
                continue
            owner = self.owner_[rows_i]
            valid = rows_i >= 0
            ex = exclude[q]
            if ex is not None:
                valid &= owner != ex
            # compact the valid neighbours to the left, keep k + 1
            order = np.argsort(~valid, axis=1, kind="stable")
            owner = np.take_along_axis(owner, order, 1)
            d = np.sqrt(np.maximum(np.take_along_axis(rows_d, order, 1), 0.0))
            nvalid = valid.sum(1)
            usable = nvalid >= 2
            if not usable.any():
                out.append(votes)
                continue
            owner, d, nvalid = owner[usable], d[usable], nvalid[usable]
            kk = min(k, d.shape[1] - 1)
            norm_col = np.minimum(nvalid - 1, kk)
            dnorm = d[np.arange(len(d)), norm_col]
            w = dnorm[:, None] - d[:, :kk]
            w[np.arange(kk)[None, :] >= norm_col[:, None]] = 0.0
            np.maximum(w, 0.0, out=w)
            # one vote per (query descriptor, exemplar): the best one
            o = owner[:, :kk]
            r = np.repeat(np.arange(len(o)), kk)
            key = r * n_ex + o.ravel()
            wf = w.ravel()
            srt = np.lexsort((-wf, key))
            key_s = key[srt]
            first = np.ones(len(key_s), bool)
            first[1:] = key_s[1:] != key_s[:-1]
            sel = srt[first]
            np.add.at(votes, o.ravel()[sel], wf[sel])
            if self.normalise:
                votes /= np.sqrt(np.maximum(self.n_keypoints_, 1))
            out.append(votes)
        return out

    def lnbnn_many(
        self, queries: Sequence[LocalFeatures], *, exclude: Sequence[int | None] | None = None
    ) -> np.ndarray:
        """(n_q, n_exemplars) LNBNN votes (divided by sqrt(keypoints) if ``normalise``), one batched search."""
        self._check_fitted()
        queries = list(queries)
        exclude = [None] * len(queries) if exclude is None else list(exclude)
        if len(exclude) != len(queries):
            raise ValueError("exclude and queries differ in length")
        qcount = np.array([len(q) for q in queries], np.int64)
        if len(self.owner_) == 0 or qcount.sum() == 0:
            return np.zeros((len(queries), self.n_exemplars))
        # extra neighbours so that an excluded exemplar's own descriptors can be skipped
        extra = 0
        if any(e is not None for e in exclude):
            extra = self.k + 1
        desc = np.concatenate([q.descriptors for q in queries])
        idx, dist = self._knn(desc, self.k + 1 + extra)
        return np.stack(self._lnbnn(idx, dist, qcount, exclude)) if queries else np.zeros((0, self.n_exemplars))

    # -- scoring -----------------------------------------------------------------------------------------

    def _shortlist(self, votes: np.ndarray, exclude: int | None, candidates: Sequence[int] | None) -> np.ndarray:
        n = self.n_exemplars
        order = np.argsort(-votes, kind="stable")
        if exclude is not None:
            order = order[order != exclude]
        chosen = list(order[: self.shortlist])
        if candidates is not None:
            chosen += [int(c) for c in candidates if 0 <= int(c) < n and c != exclude]
        return np.array(sorted(set(int(c) for c in chosen)), np.int64)

    def _final(
        self, query: LocalFeatures, votes: np.ndarray, exclude: int | None, candidates: Sequence[int] | None
    ) -> np.ndarray:
        s = votes / (votes.max() + 1e-9) if votes.size else votes.copy()
        if exclude is not None and 0 <= exclude < len(s):
            s[exclude] = -1.0
        if not self.verification or len(query) == 0:
            return s
        verified = np.zeros(len(s))
        qf = _as_float(query.descriptors)
        with threadpool_limits(1):
            for j in self._shortlist(votes, exclude, candidates):
                cf = _as_float(self.features_[j].descriptors)
                qi, ci, w = _ratio_matches(qf, cf, self.ratio, False)
                v = _verify_matches(
                    query,
                    self.features_[j],
                    qi,
                    ci,
                    w,
                    threshold=self.threshold,
                    scale_tol=self.scale_tol,
                    angle_tol=self.angle_tol,
                    min_inliers=self.min_inliers,
                )
                if v.n_inliers:
                    s[j] += 1.0 + v.score
                    verified[j] = v.score
        s = self._supported(s, verified)
        if exclude is not None and 0 <= exclude < len(s):
            s[exclude] = -1.0  # excluded: no support either
        return s

    def _supported(self, s: np.ndarray, verified: np.ndarray) -> np.ndarray:
        """Add ``support`` x the best verification score among each exemplar's *other* same-identity exemplars."""
        if self.identity_codes_ is None or self.support == 0 or not verified.any():
            return s
        codes, idx = self.identity_codes_, np.arange(len(verified))
        best = np.zeros(codes.max() + 1)
        np.maximum.at(best, codes, verified)
        holder = np.full(len(best), len(idx))  # per identity: its first exemplar with the best score
        at_best = verified == best[codes]
        np.minimum.at(holder, codes[at_best], idx[at_best])
        mine = idx == holder[codes]
        second = np.zeros_like(best)
        np.maximum.at(second, codes, np.where(mine, 0.0, verified))
        other = np.where(mine, second[codes], best[codes])
        return s + self.support * other

    def score(
        self,
        query: LocalFeatures,
        *,
        exclude: int | None = None,
        candidates: Sequence[int] | None = None,
    ) -> np.ndarray:
        """float64 (n_exemplars,) similarity of ``query`` to each exemplar (scale: see class docstring).

        ``exclude``: exemplar index ignored entirely (its descriptors do not vote; its score is -1), for
        leave-one-out.  ``candidates``: extra exemplars to verify besides the LNBNN shortlist.
        """
        votes = self.lnbnn_many([query], exclude=[exclude])[0]
        return self._final(query, votes, exclude, candidates)

    def score_many(
        self,
        queries: Sequence[LocalFeatures],
        *,
        exclude: Sequence[int | None] | None = None,
        candidates: Sequence[Sequence[int] | None] | None = None,
    ) -> np.ndarray:
        """(n_q, n_exemplars) float64: :meth:`score` for many queries with one batched index search."""
        queries = list(queries)
        exclude = [None] * len(queries) if exclude is None else list(exclude)
        candidates = [None] * len(queries) if candidates is None else list(candidates)
        votes = self.lnbnn_many(queries, exclude=exclude)
        out = np.zeros((len(queries), self.n_exemplars), np.float64)
        for i, q in enumerate(queries):
            out[i] = self._final(q, votes[i], exclude[i], candidates[i])
        return out

    def _check_fitted(self) -> None:
        if not hasattr(self, "features_"):
            raise RuntimeError("LocalMatcher is not fitted; call fit() first")
