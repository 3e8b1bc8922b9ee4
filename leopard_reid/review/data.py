"""What the review page pictures: detection crops, gallery exemplars and their verified correspondences.

Every image is stored once in an :class:`ImageTable` (an exemplar is decoded once however many rows show it);
only a few decoded crops and keypoint sets are held at a time, so a season of thousands of detections fits in
memory. Correspondences are point lists (:func:`match_points`) the browser draws: no picture of lines.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ImageTable, match_points

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..gallery import Gallery
    from ..local import LocalFeatures

CROP_SIDE = 800  # crops are decoded as for the census' keypoints (their frame is what the points refer to)


def find_image(path: str, bases: Sequence[Path]) -> Path | None:
    """An image path as given (absolute) or under the first of ``bases`` that has it; None if nowhere."""
    from ..census.detections import norm_path

    p = Path(str(path))
    if p.is_absolute():
        return p if p.exists() else None
    for b in bases:
        q = b / norm_path(str(path))
        if q.exists():
            return q
    return None


def _load(source: Any, bbox: Any) -> np.ndarray | None:
    """A crop decoded as the census decodes it for keypoints; None when unreadable."""
    import numpy as np

    from ..io import ImageError, load_image

    try:
        return np.asarray(load_image(source, bbox=bbox, reduce_to=CROP_SIDE))
    except ImageError:
        return None


class Pictures:
    """Lazily decoded crops, keypoints and correspondences for one census's review page.

    Query crops come from ``meta`` (``source``, ``bbox`` per row), exemplars from the gallery's metadata
    (paths relative to the gallery file's folder or one of ``bases``). Keypoints: the census's own
    (``local``, row -> features) where it kept them, the gallery's for exemplars, otherwise extracted from
    the crop (what the page did before keypoints were cached; issue 17)."""

    def __init__(self, meta: pd.DataFrame, *, local: Mapping[int, LocalFeatures], gallery: Gallery,
                 gallery_path: Path | None, bases: Sequence[Path], images: ImageTable, keep: int = 32) -> None:
        self.meta = meta
        self.local = local
        self.images = images
        self.g_local = gallery.local
        self.g_meta = gallery.metadata
        self.bases = ([gallery_path.resolve().parent] if gallery_path is not None else []) + list(bases)
        self.keep = keep  # decoded crops and extracted keypoints held at once (a season's would not fit)
        self._crops: OrderedDict[int, np.ndarray | None] = OrderedDict()
        self._feats: OrderedDict[int, Any] = OrderedDict()

    def _remember(self, cache: OrderedDict, key: int, value: Any) -> Any:
        cache[key] = value
        while len(cache) > self.keep:
            cache.popitem(last=False)
        return value

    # -- crops and keypoints
    def crop(self, i: int) -> np.ndarray | None:
        """Row ``i``'s detection crop (RGB), None when unreadable."""
        if i in self._crops:
            self._crops.move_to_end(i)
            return self._crops[i]
        return self._remember(self._crops, i, _load(self.meta["source"].iat[i], self.meta["bbox"].iat[i]))

    def exemplar(self, j: int) -> np.ndarray | None:
        """Gallery exemplar ``j``'s crop, None when its image is not found or unreadable."""
        p = find_image(str(self.g_meta["path"].iat[j]), self.bases)
        return None if p is None else _load(p, self.g_meta["bbox"].iat[j])

    def features(self, i: int) -> Any:
        """Row ``i``'s keypoints: the census's, else extracted from its crop (None when unreadable)."""
        f = self.local.get(i)
        if f is not None:
            return f
        if i in self._feats:
            self._feats.move_to_end(i)
            return self._feats[i]
        q = self.crop(i)
        if q is not None:
            from ..io import parse_bbox
            from ..local import extract_features, extractor_options, options_for_image

            # the rule describe applies: a detection cropped to its box is already the animal
            boxed = parse_bbox(self.meta["bbox"].iat[i]) is not None
            f = extract_features(q, **options_for_image(extractor_options(), boxed=boxed))
        return self._remember(self._feats, i, f)

    # -- what review_rows asks for
    def query_image(self, i: int) -> int | None:
        key = ("row", i)
        return self.images.get(key) if self.images.has(key) else self.images.add(key, self.crop(i))

    def exemplar_image(self, j: int) -> int | None:
        key = ("ex", j)
        return self.images.get(key) if self.images.has(key) else self.images.add(key, self.exemplar(j))

    def match(self, i: int, kind: str, j: int) -> dict[str, Any] | None:
        """Verified correspondences of row ``i`` with exemplar ``j`` (``kind="exemplar"``) or row ``j``."""
        from ..local import verify

        if kind == "exemplar":
            other = self.g_local[j] if self.g_local is not None and 0 <= j < len(self.g_local) else None
        elif kind == "row":
            other = self.features(j)
        else:
            raise ValueError(f"kind must be 'exemplar' or 'row', not {kind!r}")
        qf = self.features(i)
        if qf is None or other is None:
            return None
        return match_points(verify(qf, other), qf.image_size, other.image_size)

    def camera_map(self, cams: pd.DataFrame, table: pd.DataFrame) -> str | None:
        """The cameras and detections as one small image data URI (None if it cannot be drawn: the map is a
        convenience and never costs the review page)."""
        import numpy as np

        try:
            import matplotlib.pyplot as plt

            from ..viz import plot_cameras

            fig = plot_cameras(cams, table)
            fig.canvas.draw()
            rgba = np.asarray(fig.canvas.buffer_rgba())
            plt.close(fig)
            table_ = ImageTable(height=480, max_width=900, quality=85)
            table_.add("map", np.ascontiguousarray(rgba[:, :, :3]))
            return str(table_.items[0][0])
        except Exception:  # noqa: BLE001 - see docstring
            return None
