"""leopard_reid: tell individual leopards apart from camera-trap photographs.

Embed rosette-pattern crops with a pretrained CNN, verify keypoint correspondences between coats, keep a
gallery of known individuals, and answer "this is L-17, P=0.91" or "a new individual".

>>> import leopard_reid as lr
>>> embedder = lr.Embedder()                       # offline ImageNet EfficientNet-Lite0
>>> gallery = lr.Gallery.build(embedder, lr.read_metadata("known.csv"), root="photos/")
>>> lr.match(["season/IMG_0001.JPG"], gallery, embedder=embedder)

Heavy modules (torch, timm, OpenCV) are imported on first use, so ``import leopard_reid`` and the CLI's
``--help`` stay quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "create_backbone": "backbones",
    "Embedder": "embed",
    "Features": "embed",
    "Gallery": "gallery",
    "GalleryError": "gallery",
    "ImageError": "io",
    "MetadataError": "io",
    "load_image": "io",
    "read_metadata": "io",
    "LocalFeatures": "local",
    "LocalMatcher": "local",
    "extract_features": "local",
    "verify": "local",
    "match": "matching",
    "Matcher": "matching",
    "calibrate": "calibration",
    "Calibration": "calibration",
    "evaluate": "evaluation",
    "Evaluation": "evaluation",
    "evaluate_open_set": "evaluation",
    "suspect_duplicates": "evaluation",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    """Import a public name's module (or a submodule) on first access, so the package imports quickly."""
    module = _EXPORTS.get(name)
    if module is None:
        if name in {"synthetic", "viz", "census", "train", "local", "io", "cli", "backbones", "embed",
                    "gallery", "matching", "evaluation", "cache", "demo", "exports", "calibration", "review",
                    "synthetic_wild", "distributed", "foreground", "ranking"}:
            return importlib.import_module(f".{name}", __name__)
        raise AttributeError(f"module 'leopard_reid' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API (``__all__``), for tab completion."""
    return __all__


if TYPE_CHECKING:
    from .backbones import create_backbone
    from .calibration import Calibration, calibrate
    from .embed import Embedder, Features
    from .evaluation import Evaluation, evaluate, evaluate_open_set, suspect_duplicates
    from .gallery import Gallery, GalleryError
    from .io import ImageError, MetadataError, load_image, read_metadata
    from .local import LocalFeatures, LocalMatcher, extract_features, verify
    from .matching import Matcher, match
