"""Keypoint extraction: RootSIFT keypoints of a crop and of affine-tilted views of it, stored compactly.

A coat photographed obliquely in one picture still matches another when keypoints also come from
affine-tilted views of the crop (ASIFT, Morel & Yu 2009); tiny crops are upscaled first
(:func:`extract_features`).  Descriptors are quantised RootSIFT in uint8 and many images' features pack into
four flat arrays (:func:`pack_features`), so galleries and caches store them without pickle.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = [
    "DESCRIPTOR_DIM",
    "LocalFeatures",
    "as_float_descriptors",
    "extract_features",
    "extractor_options",
    "options_for_image",
    "pack_features",
    "root_sift",
    "unpack_features",
]

DESCRIPTOR_DIM = 128
_DESC_SCALE = 255.0  # RootSIFT components lie in [0, 1]; stored as round(255 * x) in uint8
_MIN_USABLE_SIDE = 8  # below this (after any upscaling is impossible to trust) no features are extracted


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
        from ..foreground import foreground_mask

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
_TILT_STEP = float(np.sqrt(2.0))  # OpenCV's AffineFeature default: tilts sqrt(2), 2, 2 sqrt(2), ...


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
    work: np.ndarray, levels: int, max_keypoints: int, contrast_threshold: float, mask: np.ndarray | None = None,
    *, detect_untilted: bool = False,
) -> tuple:
    """ASIFT keypoints (the ``max_keypoints`` strongest over the photo and its affine-tilted views) together
    with the photo's own ``max_keypoints`` strongest; duplicates dropped, the photo's first.

    Within ASIFT each view keeps its strongest ``2 * max_keypoints / views`` (OpenCV's ``AffineFeature``
    with SIFT's ``nfeatures``), so on whole-animal photos, where coat and scene give far more keypoints than
    the budget, the view as taken kept only a fifth of it; giving it back its whole budget raised
    leave-one-out top-1 on Pilanesberg from 0.74 to 0.88 (dev harness; 0.765 to 0.853 in bench_real), with
    leopardtrails unchanged at 0.857 (top-5 0.893 to 0.929). ASIFT's untilted view is the photo's own SIFT
    with that smaller budget, so it is not detected again: its keypoints are the strongest of the photo's
    (ties kept, as SIFT keeps them), with the same result and a sixth less work (``detect_untilted=True``
    detects it again, as OpenCV does: for the test and benchmark of that). Stable sorts: deterministic.
    """
    # OpenCV's SIFT keeps its strongest keypoints first and applies the mask after; so do we, keeping the
    # unmasked ranking: ASIFT's untilted view is the photo's own SIFT with a budget of ``per_view``
    per_view = int(np.ceil(2.0 * max_keypoints / _affine_views(levels)))
    sift = cv2.SIFT_create(nfeatures=max_keypoints, contrastThreshold=contrast_threshold)
    found, found_desc = sift.detectAndCompute(work, None)
    found = list(found) if found_desc is not None else []
    allowed = _in_mask(found, mask)
    keep = [i for i in range(len(found)) if allowed[i]][:max_keypoints]
    kps, desc = [found[i] for i in keep], (found_desc[keep] if keep else None)
    untilted = [] if detect_untilted else [
        found[i] for i in _strongest([k.response for k in found], per_view) if allowed[i]
    ]
    backend = cv2.SIFT_create(nfeatures=per_view, contrastThreshold=contrast_threshold)
    # minTilt 1: the tilted views only (0: the untilted one too, first)
    asift = cv2.AffineFeature_create(backend, levels, 0 if detect_untilted else 1, _TILT_STEP, _ROTATION_STEP)
    tkps, tdesc = asift.detectAndCompute(work, mask)
    if tdesc is None or len(tkps) == 0:
        return (kps, desc) if kps else ((), None)
    # SIFT drops keypoints within 5 px of its image's border, but a tilted view's border is not the crop's:
    # drop those at the crop's edge too (they describe the cut, and match the cut of any other crop)
    h, w = work.shape[:2]
    b = _SIFT_BORDER
    views = untilted + list(tkps)
    inside = [i for i, k in enumerate(views) if b <= k.pt[0] <= w - 1 - b and b <= k.pt[1] <= h - 1 - b]
    order = sorted(inside, key=lambda i: -views[i].response)[:max_keypoints]  # stable: deterministic
    frontal = {(k.pt, k.size) for k in kps}
    order = [i - len(untilted) for i in order if i >= len(untilted) and (views[i].pt, views[i].size) not in frontal]
    if not kps:
        return ([tkps[i] for i in order], tdesc[order]) if order else ((), None)
    return kps + [tkps[i] for i in order], np.concatenate([desc, tdesc[order]])


def _in_mask(keypoints: Sequence[Any], mask: np.ndarray | None) -> np.ndarray:
    """Whether each keypoint's nearest pixel is non-zero in ``mask`` (OpenCV's ``runByPixelsMask``)."""
    if mask is None or not len(keypoints):
        return np.ones(len(keypoints), dtype=bool)
    pts = np.array([k.pt for k in keypoints], np.float32)
    h, w = mask.shape[:2]
    cols = np.clip((pts[:, 0] + np.float32(0.5)).astype(int), 0, w - 1)
    rows = np.clip((pts[:, 1] + np.float32(0.5)).astype(int), 0, h - 1)
    return mask[rows, cols] != 0


def _strongest(responses: Sequence[float], n: int) -> list[int]:
    """Indices of the ``n`` strongest responses and of any tied with the n-th (OpenCV's ``retainBest``)."""
    if len(responses) <= n:
        return list(range(len(responses)))
    bound = np.partition(np.asarray(responses, np.float32), len(responses) - n)[len(responses) - n]
    return [i for i, r in enumerate(responses) if np.float32(r) >= bound]


def pack_features(features: Sequence[LocalFeatures]) -> dict[str, np.ndarray]:
    """Flatten features of many images into four arrays (savable with ``np.savez``, no pickle).

    ``keypoints`` (N, 4) float32 and ``descriptors`` (N, 128) uint8 concatenated; ``offsets`` int64
    (n_images + 1,) so image i owns rows ``offsets[i]:offsets[i+1]``; ``image_sizes`` int64 (n_images, 2).
    """
    offsets, sizes = packed_index(features)
    if features:
        keypoints = np.concatenate([np.asarray(f.keypoints, np.float32).reshape(-1, 4) for f in features])
        descriptors = np.concatenate(
            [np.asarray(f.descriptors, np.uint8).reshape(-1, DESCRIPTOR_DIM) for f in features]
        )
    else:
        keypoints = np.zeros((0, 4), np.float32)
        descriptors = np.zeros((0, DESCRIPTOR_DIM), np.uint8)
    return {"keypoints": keypoints, "descriptors": descriptors, "offsets": offsets, "image_sizes": sizes}


def packed_index(features: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, image_sizes)`` of :func:`pack_features`: where each image's rows start and end, its size."""
    offsets = np.zeros(len(features) + 1, np.int64)
    np.cumsum(np.array([len(f) for f in features], np.int64), out=offsets[1:])
    return offsets, np.array([f.image_size for f in features], np.int64).reshape(-1, 2)


def check_packed(offsets: np.ndarray, sizes: np.ndarray, n_keypoints: int, n_descriptors: int) -> None:
    """Refuse packed features whose offsets, sizes and row counts disagree (``ValueError``)."""
    if (len(offsets) != len(sizes) + 1 or offsets[0] != 0 or (np.diff(offsets) < 0).any()
            or offsets[-1] != n_keypoints or n_keypoints != n_descriptors):
        raise ValueError("inconsistent packed local features")


def unpack_features(arrays: Mapping[str, np.ndarray]) -> list[LocalFeatures]:
    """Exact inverse of :func:`pack_features` (accepts the dict or an ``np.load`` result)."""
    keypoints = np.asarray(arrays["keypoints"], np.float32)
    descriptors = np.asarray(arrays["descriptors"], np.uint8)
    offsets = np.asarray(arrays["offsets"], np.int64)
    sizes = np.asarray(arrays["image_sizes"], np.int64).reshape(-1, 2)
    check_packed(offsets, sizes, len(keypoints), len(descriptors))
    return [
        LocalFeatures(
            keypoints=keypoints[offsets[i] : offsets[i + 1]].copy(),
            descriptors=descriptors[offsets[i] : offsets[i + 1]].copy(),
            image_size=(int(sizes[i, 0]), int(sizes[i, 1])),
        )
        for i in range(len(sizes))
    ]


def as_float_descriptors(descriptors: np.ndarray) -> np.ndarray:
    """Quantised uint8 RootSIFT rows back to float32 in [0, 1] (the inverse of the storage scaling).

    Matching and indexing compute distances on these; storage keeps uint8 (a quarter of float32).
    """
    return np.ascontiguousarray(descriptors, dtype=np.float32) * np.float32(1.0 / _DESC_SCALE)
