"""Pictures for people: image grids, verified keypoint correspondences, CMC curves, score distributions.

Functions return matplotlib figures (for notebooks) or RGB arrays (for pages and files); notebooks call
these rather than holding plotting code. matplotlib is imported on first use with a non-interactive
backend when no display is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .io import ImageInput, load_image

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from .evaluation import Evaluation
    from .local import Verification

__all__ = [
    "draw_matches",
    "image_grid",
    "plot_cameras",
    "plot_cmc",
    "plot_match",
    "plot_scores",
    "to_data_uri",
]


def _plt() -> Any:
    """pyplot as the user configured it: the backend is never switched here (matplotlib itself falls back to a
    non-interactive one where no display exists; macOS and Windows need no $DISPLAY)."""
    import matplotlib.pyplot as plt

    return plt


def _rgb(image: ImageInput | np.ndarray, bbox: Any = None) -> np.ndarray:
    if isinstance(image, np.ndarray) and bbox is None and image.ndim == 3 and image.dtype == np.uint8:
        return image
    return np.asarray(load_image(image, bbox=bbox, min_side=1))


def _fit(img: np.ndarray, height: int) -> tuple[np.ndarray, float]:
    import cv2

    s = height / img.shape[0]
    return cv2.resize(img, (max(1, round(img.shape[1] * s)), height), interpolation=cv2.INTER_AREA), s


def draw_matches(
    query: ImageInput | np.ndarray,
    candidate: ImageInput | np.ndarray,
    verification: Verification,
    *,
    height: int = 320,
    max_lines: int = 60,
) -> np.ndarray:
    """Side-by-side RGB picture of two crops with the verified correspondences drawn as lines.

    ``verification`` is :func:`leopard_reid.verify`'s result for these two images (points in the images'
    own pixel frames); the reviewer sees which rosettes agree.
    """
    import cv2

    a, sa = _fit(_rgb(query), height)
    b, sb = _fit(_rgb(candidate), height)
    gap = 8
    canvas = np.full((height, a.shape[1] + gap + b.shape[1], 3), 255, np.uint8)
    canvas[:, : a.shape[1]] = a
    canvas[:, a.shape[1] + gap :] = b
    qp = np.asarray(verification.query_points, np.float64) * sa
    cp = np.asarray(verification.candidate_points, np.float64) * sb + [a.shape[1] + gap, 0]
    step = max(1, len(qp) // max_lines) if len(qp) else 1
    rng = np.random.default_rng(0)
    for p, q in zip(qp[::step], cp[::step]):
        colour = tuple(int(c) for c in rng.integers(60, 255, 3))
        cv2.line(canvas, tuple(int(v) for v in p), tuple(int(v) for v in q), colour, 1, cv2.LINE_AA)
        cv2.circle(canvas, tuple(int(v) for v in p), 3, colour, 1, cv2.LINE_AA)
        cv2.circle(canvas, tuple(int(v) for v in q), 3, colour, 1, cv2.LINE_AA)
    return canvas


def image_grid(
    images: Sequence[ImageInput | np.ndarray],
    *,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    size: float = 2.6,
) -> Figure:
    """A grid of images with optional titles (e.g. synthetic sightings, or a query beside its candidates)."""
    plt = _plt()
    n = max(1, len(images))
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols * 1.3, size * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, img in enumerate(images):
        ax = axes.ravel()[i]
        ax.imshow(_rgb(img))
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return fig


def plot_match(
    query: ImageInput,
    candidates: Sequence[ImageInput],
    *,
    labels: Sequence[str],
    scores: Sequence[float],
    query_title: str = "query",
) -> Figure:
    """The query crop beside its ranked candidates, each titled with identity and score."""
    titles = [query_title] + [f"{i}. {lab}  {s:.2f}" for i, (lab, s) in enumerate(zip(labels, scores), 1)]
    return image_grid([query, *candidates], titles=titles, ncols=len(candidates) + 1)


def plot_cmc(results: Sequence[Evaluation] | Evaluation, *, max_rank: int = 20) -> Figure:
    """Cumulative match characteristic curves of one or more evaluations (one line per method)."""
    plt = _plt()
    if not isinstance(results, Sequence):
        results = [results]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in results:
        cmc = np.asarray(r.cmc)[:max_rank]
        ax.plot(np.arange(1, len(cmc) + 1), cmc, marker="o", ms=3, label=f"{r.method} (top-1 {r.top1:.2f})")
    ax.set_xlabel("rank")
    ax.set_ylabel("fraction of queries with the true identity within rank")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_scores(
    same: np.ndarray,
    different: np.ndarray,
    *,
    threshold: float | None = None,
    xlabel: str = "score",
    bins: int = 30,
) -> Figure:
    """Histograms of scores for same-individual and different-individual pairs, with the decision threshold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    same, different = np.asarray(same, float), np.asarray(different, float)
    finite = np.concatenate([same[np.isfinite(same)], different[np.isfinite(different)]])
    edges = np.histogram_bin_edges(finite, bins=bins) if finite.size else bins
    ax.hist(different[np.isfinite(different)], bins=edges, alpha=0.6, density=True, label="different individuals")
    ax.hist(same[np.isfinite(same)], bins=edges, alpha=0.6, density=True, label="same individual")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", label=f"new-individual threshold {threshold:.2f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_cameras(cameras: pd.DataFrame, detections: pd.DataFrame | None = None) -> Figure:
    """Map of camera stations (``camera, x, y``) with, when given, detections per individual at each station
    (``detections``: ``camera, identity``)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(cameras["x"], cameras["y"], marker="^", s=80, c="k", label="camera station", zorder=3)
    for _, row in cameras.iterrows():
        ax.annotate(str(row["camera"]), (row["x"], row["y"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if detections is not None and len(detections):
        pos = cameras.set_index("camera")[["x", "y"]]
        ids = sorted(detections["identity"].astype(str).unique())
        cmap = plt.get_cmap("tab20", max(1, len(ids)))
        for k, ident in enumerate(ids):
            sub = detections[detections["identity"].astype(str) == ident]
            counts = sub.groupby("camera").size()
            counts = counts[counts.index.isin(pos.index)]
            if counts.empty:
                continue
            xy = pos.loc[counts.index].to_numpy(float)
            jitter = (k - len(ids) / 2) * 0.01 * np.ptp(cameras[["x", "y"]].to_numpy(float), axis=0).max()
            ax.scatter(xy[:, 0] + jitter, xy[:, 1] + jitter, s=30 + 40 * counts.to_numpy(), alpha=0.7,
                       color=cmap(k), label=ident)
        if len(ids) <= 20:
            ax.legend(fontsize=7, loc="best")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    return fig


def to_data_uri(image: np.ndarray, *, quality: int = 85) -> str:
    """Encode an RGB array as a ``data:image/jpeg;base64,...`` URI, for self-contained HTML pages."""
    import base64

    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode image")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")
