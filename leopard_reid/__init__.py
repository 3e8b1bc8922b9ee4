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
import sys
import types
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
    "match": "match",
    "Matcher": "match",
    "calibrate": "calibration",
    "Calibration": "calibration",
    "evaluate": "evaluate",
    "Evaluation": "evaluate",
    "evaluate_open_set": "evaluate",
    "suspect_duplicates": "evaluate",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        if name in {"synthetic", "viz", "census", "train", "local", "io", "cli", "backbones", "embed",
                    "gallery", "match", "evaluate", "cache", "demo", "exports", "calibration", "review",
                    "synthetic_wild", "distributed", "foreground"}:
            return importlib.import_module(f".{name}", __name__)
        raise AttributeError(f"module 'leopard_reid' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


class _Package(types.ModuleType):
    """Keeps ``lr.match`` and ``lr.evaluate`` the functions even after their same-named submodules load.

    Importing a submodule sets it as an attribute of the package; without this, ``import
    leopard_reid.match`` anywhere would turn ``lr.match`` into a module. Submodules stay importable by name
    (``from leopard_reid.match import Matcher``).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:
    from .backbones import create_backbone
    from .calibration import Calibration, calibrate
    from .embed import Embedder, Features
    from .evaluate import Evaluation, evaluate, evaluate_open_set, suspect_duplicates
    from .gallery import Gallery, GalleryError
    from .io import ImageError, MetadataError, load_image, read_metadata
    from .local import LocalFeatures, LocalMatcher, extract_features, verify
    from .match import Matcher, match
