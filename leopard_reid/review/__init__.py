"""The census review page: one self-contained HTML file in which a person confirms or corrects each call.

:func:`write_review` gathers what the page shows (crop thumbnails, candidates, verified keypoint
correspondences as point lists) and :func:`render_page` fills ``page.html.j2`` (jinja2, autoescaped) with it,
inlining ``review.css`` and ``review.js``. The page holds every detection as JSON and draws one page of rows at
a time, so a season of thousands of detections opens in seconds; images are small JPEG data URIs, each
exemplar stored once however many rows show it, and correspondences are drawn by the browser (SVG lines), not
embedded as pictures. Decisions persist in the browser's localStorage (keyed by the census run), the exported
``decisions.csv`` has the columns :func:`leopard_reid.census.apply_review` reads, and it can be loaded back.

Row schema (what ``review.js`` reads; see :func:`render_page`): ``key`` (``path|bbox``), ``path``, ``bbox``,
``camera``, ``datetime``, ``side``, ``burst``, ``occasion``, ``decision`` (the census's: known / new /
uncertain), ``proposed``, ``score``, ``flank`` (partner detections or ""), ``default`` (the decision the
exported CSV has until the reviewer changes it), ``img`` (index into the image list or None), ``cands``
(``[{"id", "p", "img", "m"}]``) and ``first`` (a provisional individual's first sighting ``{"id", "path",
"img", "m"}`` or None); ``m`` is a match ``{"n", "s", "q", "c"}``: inlier count, score and the two point
lists as flat ``[x0, y0, x1, y1, ...]`` in thousandths of each image's width and height.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..census.results import NEW_PREFIX  # one definition: the census names them
from ..files import atomic_write

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..gallery import Gallery
    from ..local import LocalFeatures, Verification

__all__ = ["ImageTable", "match_points", "render_page", "review_rows", "thumb_uri", "write_review"]

#: Census decisions in the order the page lists them (uncertain and new first).
DECISION_ORDER = {"uncertain": 0, "new": 1, "known": 2}
#: Decisions the reviewer can give a row (apply_review reads these; "reject" = not a leopard / unusable).
REVIEW_DECISIONS = ("", "confirm", "change", "skip", "reject")
_ROW_KEYS = {"key", "path", "bbox", "proposed", "decision", "default", "cands"}


class ReviewError(ValueError):
    """Review-page input that cannot be rendered (malformed rows, unknown image index...)."""


# ---------------------------------------------------------------------------------------------- images
def thumb_uri(img: np.ndarray, *, height: int = 128, max_width: int = 256, quality: int = 70) -> tuple[str, int, int]:
    """A small JPEG data URI of an RGB array, sized for the screen: ``(uri, width, height)``.

    Scaled (never up) to ``height`` pixels, or less when that would be wider than ``max_width``; JPEG
    ``quality`` 70 keeps rosettes legible at a fraction of the bytes of a full crop."""
    import cv2
    import numpy as np

    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ReviewError(f"thumbnail needs an RGB (h, w, 3) array, got shape {a.shape}")
    s = min(1.0, height / a.shape[0], max_width / a.shape[1])
    if s < 1.0:
        size = (max(1, round(a.shape[1] * s)), max(1, round(a.shape[0] * s)))
        a = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(a[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ReviewError("could not encode a thumbnail as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii"), a.shape[1], a.shape[0]


class ImageTable:
    """The page's images, each stored once: rows refer to them by index (an exemplar shown on many rows
    costs its bytes once)."""

    def __init__(self, *, height: int = 128, max_width: int = 256, quality: int = 70) -> None:
        self.height, self.max_width, self.quality = height, max_width, quality
        self.items: list[list[Any]] = []  # [uri, width, height]
        self._index: dict[Any, int | None] = {}

    def has(self, key: Any) -> bool:
        """Whether ``key`` was added already (then :meth:`get` answers without decoding anything)."""
        return key in self._index

    def get(self, key: Any) -> int | None:
        """Index of the image stored under ``key``; None when it had no image."""
        return self._index[key]

    def add(self, key: Any, img: np.ndarray | None) -> int | None:
        """Index of the image stored under ``key`` (encoding ``img`` the first time); None for no image."""
        if key in self._index:
            return self._index[key]
        if img is None:
            self._index[key] = None
            return None
        uri, w, h = thumb_uri(img, height=self.height, max_width=self.max_width, quality=self.quality)
        self._index[key] = len(self.items)
        self.items.append([uri, w, h])
        return self._index[key]


def match_points(v: Verification, query_size: tuple[int, int], candidate_size: tuple[int, int], *,
                 max_lines: int = 60) -> dict[str, Any]:
    """A verified correspondence as the page draws it: ``{"n", "s", "q", "c"}``.

    ``query_size``/``candidate_size`` are the ``(width, height)`` of the images the points are in (the
    keypoint features' ``image_size``); points become thousandths of those, so the browser can draw them over
    thumbnails of any size. At most ``max_lines`` evenly spaced inliers are kept (enough to judge a match)."""
    import numpy as np

    qp = np.asarray(v.query_points, np.float64).reshape(-1, 2)
    cp = np.asarray(v.candidate_points, np.float64).reshape(-1, 2)
    step = max(1, -(-len(qp) // max_lines)) if len(qp) else 1

    def flat(p: np.ndarray, size: tuple[int, int]) -> list[int]:
        rel = p[::step] / np.maximum(1.0, np.asarray(size, np.float64)) * 1000.0
        return [int(x) for x in np.clip(np.rint(rel), 0, 1000).ravel()]

    return {"n": int(v.n_inliers), "s": round(float(v.score), 1), "q": flat(qp, query_size),
            "c": flat(cp, candidate_size)}


# ---------------------------------------------------------------------------------------------- rows
def _order(table: pd.DataFrame) -> list[int]:
    """Uncertain first, then new (grouped by provisional individual), then known; weakest score first."""
    def key(i: int) -> tuple[Any, ...]:
        dec = str(table["decision"].iat[i])
        s = float(table["score"].iat[i])
        return (DECISION_ORDER.get(dec, 3), str(table["identity"].iat[i]) if dec == "new" else "",
                s if math.isfinite(s) else -1.0, i)

    return sorted(range(len(table)), key=key)


def _text(v: Any) -> str:
    """A table cell as text ("" for None / NaN / <NA>)."""
    import pandas as pd

    try:
        missing = v is None or bool(pd.isna(v))
    except (TypeError, ValueError):  # list-like: not a missing scalar
        missing = False
    return "" if missing else str(v)


def review_rows(
    table: pd.DataFrame,
    cand: Sequence[Sequence[tuple[str, float, int]]],
    *,
    query_image: Callable[[int], int | None],
    exemplar_image: Callable[[int], int | None],
    match: Callable[[int, str, int], dict[str, Any] | None],
    pictured: int | None = None,
) -> list[dict[str, Any]]:
    """The page's rows, in review order (see the module docstring for the schema).

    ``table``: ``matches.csv`` rows; ``cand[i]``: row i's candidates ``(identity, P, exemplar)``. The callbacks
    give image indexes (query crop of row i, gallery exemplar j) and the correspondences of row i with an
    exemplar (``match(i, "exemplar", j)``) or with another row (``match(i, "row", j)``); they are called only
    for the first ``pictured`` rows in review order (all when None)."""
    if len(cand) != len(table):
        raise ReviewError(f"{len(cand)} candidate lists for {len(table)} detections")
    first: dict[str, int] = {}
    for i, ident in enumerate(table["identity"].astype(str)):  # table is in time order
        if ident.startswith(NEW_PREFIX):
            first.setdefault(ident, i)
    rows = []
    for pos, i in enumerate(_order(table)):
        r = table.iloc[i]
        pics = pictured is None or pos < pictured
        dec, ident = _text(r["decision"]), _text(r["identity"])
        cands = [{"id": str(cid), "p": round(float(p), 3),
                  "img": exemplar_image(int(ex)) if pics else None,
                  "m": match(i, "exemplar", int(ex)) if pics and k == 0 else None}
                 for k, (cid, p, ex) in enumerate(cand[i])]
        rep = None
        j = first.get(ident, i)
        if j != i:
            rep = {"id": ident, "path": _text(table["path"].iat[j]), "img": query_image(j) if pics else None,
                   "m": match(i, "row", j) if pics else None}
        score = float(r["score"]) if _text(r["score"]) else math.nan
        rows.append({
            "key": f"{_text(r['path'])}|{_text(r['bbox'])}", "path": _text(r["path"]), "bbox": _text(r["bbox"]),
            "camera": _text(r["camera"]), "datetime": _text(r["datetime"]), "side": _text(r["side"]),
            "burst": _text(r.get("burst")), "occasion": _text(r.get("occasion")), "decision": dec,
            "proposed": ident, "score": round(score, 3) if math.isfinite(score) else None,
            "flank": _text(r.get("flank_link")), "default": "confirm" if dec == "known" else "",
            "img": query_image(i) if pics else None, "cands": cands, "first": rep,
        })
    return rows


# ---------------------------------------------------------------------------------------------- page
@lru_cache(maxsize=1)
def _env() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.DictLoader({"page.html.j2": _asset("page.html.j2")}), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":"), "ensure_ascii": False}
    return env


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def run_id(rows: Sequence[Mapping[str, Any]]) -> str:
    """A short id of a census run (its detections and proposals): the key its decisions are stored under in
    the browser, so two seasons' reviews never mix while a re-run of the same census finds its review."""
    h = hashlib.sha1()
    for r in rows:
        h.update(f"{r['key']}\t{r['proposed']}\n".encode())
    return h.hexdigest()[:16]


def _check(rows: Sequence[Mapping[str, Any]], n_images: int) -> None:
    for k, r in enumerate(rows):
        missing = _ROW_KEYS - set(r)
        if missing:
            raise ReviewError(f"row {k}: missing {', '.join(sorted(missing))}")
        refs = [r.get("img")] + [c.get("img") for c in r["cands"]] + [(r.get("first") or {}).get("img")]
        bad = [x for x in refs if x is not None and not (isinstance(x, int) and 0 <= x < n_images)]
        if bad:
            raise ReviewError(f"row {k} ({r['path']}): image index {bad[0]!r} not in the {n_images} images")


def render_page(
    rows: Sequence[Mapping[str, Any]],
    images: Sequence[Sequence[Any]],
    *,
    columns: Sequence[str],
    summary: str = "",
    notes: Sequence[str] = (),
    camera_map: str | None = None,
    next_new: int = 1,
    page_size: int = 50,
    title: str = "leopard-reid census review",
) -> str:
    """The review page as one HTML string (nothing external: CSS, JS and images are inline).

    ``rows``: :func:`review_rows`; ``images``: ``[data_uri, width, height]`` as :class:`ImageTable` holds them;
    ``columns``: the exported ``decisions.csv`` header (what ``apply_review`` reads); ``camera_map``: an
    optional image data URI; ``next_new``: the first ``NEW-`` number free for individuals the reviewer marks
    new; ``page_size``: rows drawn at a time."""
    for k, im in enumerate(images):
        if not (isinstance(im, (list, tuple)) and len(im) == 3 and str(im[0]).startswith("data:image/")):
            raise ReviewError(f"image {k}: expected [image data URI, width, height], got {str(im)[:60]!r}")
    if camera_map is not None and not camera_map.startswith("data:image/"):
        raise ReviewError("camera_map must be an image data URI")
    if page_size < 1:
        raise ReviewError(f"page_size must be at least 1, got {page_size}")
    unknown = sorted(set(columns) - {"path", "bbox", "proposed", "decision", "identity", "side", "camera", "datetime"})
    if unknown:
        raise ReviewError(f"the page cannot fill decisions.csv column(s) {unknown}")
    _check(rows, len(images))
    data = {"run": run_id(rows), "columns": list(columns), "next_new": int(next_new), "page_size": int(page_size),
            "decisions": [d for d in REVIEW_DECISIONS if d], "rows": list(rows)}
    counts = {d: sum(1 for r in rows if r["decision"] == d) for d in DECISION_ORDER}
    cameras = sorted({str(r.get("camera", "")) for r in rows} - {""})
    return _env().get_template("page.html.j2").render(
        title=title, summary=summary, notes=list(notes), camera_map=camera_map, data=data, images=list(images),
        counts=counts, cameras=cameras, css=_asset("review.css"), js=_asset("review.js"), n=len(rows),
    )


def write_review(
    path: str | Path,
    table: pd.DataFrame,
    meta: pd.DataFrame,
    *,
    cand: Sequence[Sequence[tuple[str, float, int]]],
    local: Mapping[int, LocalFeatures],
    gallery: Gallery,
    gallery_path: Path | None,
    bases: Sequence[Path],
    columns: Sequence[str],
    summary: str = "",
    notes: Sequence[str] = (),
    cams: pd.DataFrame | None = None,
    pictured: int | None = None,
    thumb_height: int = 128,
    quality: int = 70,
) -> Path:
    """Write the census review page for ``table`` (``matches.csv`` rows) to ``path``; returns ``path``.

    ``meta`` has each row's ``source`` (image file) and pixel ``bbox``; ``local`` the keypoints the census
    kept (others are extracted from the crop, as before, until keypoints are cached); ``bases``: folders a
    gallery exemplar's relative path may be relative to. Rows beyond ``pictured`` (in review order) have no
    pictures but are still reviewable."""
    from .data import Pictures

    if pictured is not None and pictured < 0:
        raise ReviewError(f"pictured must be None (all rows) or a number of rows >= 0, got {pictured}")
    if not (16 <= thumb_height <= 1024 and 1 <= quality <= 100):
        raise ReviewError(f"thumb_height must be in [16, 1024] and quality in [1, 100], got {thumb_height}, {quality}")
    pics = Pictures(meta, local=local, gallery=gallery, gallery_path=gallery_path, bases=bases,
                    images=ImageTable(height=thumb_height, quality=quality))
    rows = review_rows(table, cand, query_image=pics.query_image, exemplar_image=pics.exemplar_image,
                       match=pics.match, pictured=pictured)
    camera_map = pics.camera_map(cams, table) if cams is not None and len(cams) else None
    news = [int(m.group(1)) for m in (re.fullmatch(r"NEW-(\d+)", str(s))
                                      for s in [*gallery.identities, *table["identity"]]) if m]
    page = render_page(rows, pics.images.items, columns=columns, summary=summary, notes=notes,
                       camera_map=camera_map, next_new=max(news, default=0) + 1)
    path = Path(path)
    atomic_write(path, page.encode("utf-8"))
    return path
