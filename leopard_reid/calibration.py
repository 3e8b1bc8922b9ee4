"""Turning scores into decisions: P(same individual), the new-individual threshold, and the fusion fits.

A :class:`Calibration` is a value a gallery owns (stored per method): a logistic map from the two kinds of
evidence (cosine of the CNN embeddings, keypoint score) to P(same individual), and the threshold below
which a query is a new individual. This module holds the value and the arithmetic that produces it from
labelled scores: the threshold rule (:func:`choose_threshold`, shared by ``calibrate`` and
``evaluate_open_set``), the training pairs, and the fusion fits. :func:`calibrate` fits a gallery's calibration on
held-out individuals.

A fusion that never hurts. On real wild photos an unconstrained logistic fit can do worse than either input:
its training pairs are each query's top candidates, and when different animals photographed at one site
share a background the cosine of wrong pairs is high, so the fit learns a *negative* weight on it (seen on
the synthetic wild sets: fused top-1 0.01-0.10 where local alone gets 0.51-0.57). So every fit is
**monotone** (more evidence never lowers P(same): a weight fitted below zero is set to zero and the model
refitted on the other input, :func:`fit_monotone_fusion`), and the fusion **competes with each input
alone** on held-out identities (:func:`select_fusion` by top-1 for ranking in ``evaluate``;
:func:`calibrate` by held-out AUROC and error for decisions). A logistic on one score ranks exactly like
that score, so choosing it falls back to the stronger single input.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .gallery import Gallery, GalleryError

if TYPE_CHECKING:
    from .embed import Features
    from .matching import Method, PairScores

__all__ = [
    "DEFAULT_CALIBRATION",
    "Calibration",
    "ThresholdChoice",
    "calibrate",
    "choose_threshold",
    "fit_fusion",
    "fit_monotone_fusion",
    "pair_features",
    "select_fusion",
]


@dataclass(frozen=True)
class Calibration:
    """Logistic map from (cosine, keypoint score) to P(same individual), and the new-individual threshold.

    ``probability = sigmoid(intercept + coef[0] * cosine + coef[1] * log1p(local_score))``. A query whose best
    probability is below ``threshold`` is called a new individual. ``method`` is the method whose scores the
    threshold applies to (a ``local`` calibration's threshold is on the keypoint-score scale and never
    decides fused P). ``source`` says what :func:`calibrate` chose (``fused fit``, ``local-only fit`` with
    ``coef[0] == 0``: a probability that ranks exactly like ``local``, ``default``...) and ``reason`` why,
    in words. The rates are estimates on held-out individuals (None for the built-in default).

    ``n_identities`` is the size of the gallery the probability was fitted on (None: unknown). A query's best
    score is the best of every identity it is compared with, so in a larger gallery a wrong identity scores
    high more often: :meth:`for_identities` discounts the odds of P(same) in proportion (a
    :class:`~leopard_reid.Matcher` does this for its gallery), never raising them for a smaller one.
    """

    coef: tuple[float, float]
    intercept: float
    threshold: float = 0.5
    uncertain_band: tuple[float, float] = (0.25, 0.75)
    false_new_rate: float | None = None
    false_match_rate: float | None = None
    auroc: float | None = None
    n_pairs: int = 0
    source: str = "default"
    method: str = "fused"
    reason: str = ""
    n_identities: int | None = None

    def for_identities(self, n: int) -> Calibration:
        """This calibration for a gallery of ``n`` identities: the odds of P(same) times ``n_identities / n``
        when the gallery is larger than the one it was fitted on, else unchanged.

        If a wrong identity's score exceeds a level with a small probability q, the best of n wrong ones does
        with about n q, while a true match's score does not depend on n: the likelihood ratio behind P(same)
        falls as 1/n. Measured on ``bench_census_scale.py``'s seasons with the default calibration: calls in
        the uncertain band were right 51 % of the time against 62 identities, 29 % against 247."""
        if not self.n_identities or n <= self.n_identities:
            return self
        return replace(self, intercept=self.intercept - float(np.log(n / self.n_identities)), n_identities=int(n))

    def probability(self, cosine: np.ndarray, local: np.ndarray) -> np.ndarray:
        """P(same individual) of pairs from their cosine and keypoint scores (the fitted logistic model)."""
        z = self.intercept + self.coef[0] * np.asarray(cosine) + self.coef[1] * np.log1p(np.maximum(local, 0))
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def fuse(self, cosine: np.ndarray, local: np.ndarray) -> np.ndarray:
        """P(same) of scored pairs: where ``cosine`` is finite (a pair that may be compared), -inf elsewhere."""
        mask = np.isfinite(cosine)
        return np.where(mask, self.probability(np.where(mask, cosine, 0.0), np.where(mask, local, 0.0)), -np.inf)

    def summary(self) -> str:
        """What this calibration decides, in words (printed by ``leopard-reid calibrate``)."""
        scale = "P(same individual)" if self.method == "fused" else f"the {self.method} score"
        text = [f"{self.method} method, {self.source}: a query is a known individual when {scale} >= "
                f"{self.threshold:.4g}, else new."]
        if self.false_new_rate is not None and self.false_match_rate is not None:
            text.append(f"Expected on individuals held out of the fit: {100 * self.false_new_rate:.0f}% of "
                        f"re-sightings of known animals called new, {100 * self.false_match_rate:.0f}% of "
                        "never-seen animals given a known name.")
        if self.reason:
            text.append(self.reason)
        if self.method == "fused" and self.n_identities:
            text.append(f"P(same) is for a gallery of {self.n_identities} identities; in a larger one its odds are "
                        "discounted in proportion.")
        return " ".join(text)

    def to_dict(self) -> dict[str, Any]:
        """Plain fields, as stored in a gallery (``Gallery.calibrations``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """Read :meth:`to_dict` output, also of older versions (missing fields take their defaults)."""
        d = dict(d)
        d["coef"] = tuple(float(c) for c in d["coef"])
        d["uncertain_band"] = tuple(d.get("uncertain_band") or (0.25, 0.75))
        d["method"] = d.get("method") or "fused"
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


#: Set by hand between what ``calibrate`` fits on synthetic coats (where keypoints alone separate
#: perfectly) and on the real leopardtrails crops (where a wrong individual often gets a few verified
#: correspondences): P(same) = 0.5 at a keypoint score of about 5 for a cosine of 0.5. Real galleries should
#: fit their own with ``leopard_reid.calibrate`` (or ``leopard-reid calibrate``). ``n_identities``: the
#: leopardtrails gallery it was set on has 125 identities; larger galleries discount it.
DEFAULT_CALIBRATION = Calibration(coef=(2.0, 4.5), intercept=-9.0, source="default", n_identities=125)


MIN_CALIBRATION_QUERIES = 20
NEED_PAIRS = (
    "calibration needs photos that can be matched to another photo of the same individual: two photos of the "
    "same flank (or of unknown side) of at least two individuals"
)


def calibrate(
    gallery: Gallery,
    *,
    method: Method = "fused",
    max_false_match: float | None = None,
    shortlist: int = 20,
    n_folds: int = 5,
) -> Calibration:
    """Fit P(same individual) and the new-individual threshold on a labelled gallery, on held-out individuals.

    A *known* score is a photo's best score against the rest of the gallery (leave-one-out; only photos with
    another photo of the same individual and flank). A *new* score is a photo's best score against the
    gallery with its whole individual removed: the identities are split into ``n_folds`` folds, and each
    fold is scored against a matcher refitted without it (the keypoint index and its normaliser too, as
    :func:`~leopard_reid.evaluate_open_set` does). The threshold has the lowest balanced error, or the
    lowest false-new rate with false-match rate <= ``max_false_match``; the rates reported are the ones
    achieved on these held-out scores (with a warning when the constraint can only be met by calling
    every query new).

    ``fused``: a logistic fusion of (cosine, keypoint score) is fitted, cross-validated by fold; when it is
    not better than the keypoint score alone on held-out folds, a logistic on the keypoint score alone is
    kept (it ranks exactly like ``local``). With too few pairs (< :data:`MIN_CALIBRATION_QUERIES`
    queries), or a fit whose held-out error is worse than the built-in default's, the default stays in use
    (with a warning). ``source`` and ``reason`` of the result say which and why. Store the result with
    ``gallery.calibration = cal.to_dict()`` (it is stored under its method).
    """
    from .matching import check_method

    check_method(method)
    if max_false_match is not None and not 0.0 <= float(max_false_match) <= 1.0:
        raise ValueError(f"max_false_match must be between 0 and 1, not {max_false_match!r}")
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, not {n_folds!r}")
    ev = _calibration_evidence(gallery, method=method, shortlist=shortlist, n_folds=n_folds)
    if method != "fused":
        known, new = ev.known_tops(None), ev.new_tops(None)
        return _finish(ev, None, known, new, method=method, source=f"{method} score", reason="",
                       max_false_match=max_false_match, n_pairs=0)
    return _calibrate_fused(ev, max_false_match=max_false_match, shortlist=shortlist)


@dataclass
class _Evidence:
    """Leave-one-out (known) and individual-removed (new) evidence of every gallery photo, and the folds."""

    labels: np.ndarray
    known: PairScores  # row i: photo i against the gallery without photo i
    new_cosine: np.ndarray  # row i: photo i against the gallery without its individual (its fold refitted)
    new_local: np.ndarray | None
    queries: np.ndarray  # photos with a comparable photo of the same individual
    fold: np.ndarray  # fold of each photo (by individual)
    n: int

    def known_tops(self, cal: Calibration | None, rows: np.ndarray | None = None) -> np.ndarray:
        rows = self.queries if rows is None else rows
        return _tops(cal, self.known.cosine[rows], _rows_of(self.known.local, rows), self.known.method)

    def new_tops(self, cal: Calibration | None, rows: np.ndarray | None = None) -> np.ndarray:
        rows = np.arange(self.n) if rows is None else rows
        return _tops(cal, self.new_cosine[rows], _rows_of(self.new_local, rows), self.known.method)


def _rows_of(a: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if a is None else a[rows]


def _tops(cal: Calibration | None, cosine: np.ndarray, local: np.ndarray | None, method: str) -> np.ndarray:
    """Best score per row: fused P with ``cal``, else the method's own score (-inf when nothing compares)."""
    if cal is not None:
        assert local is not None
        s = cal.fuse(cosine, local)
    else:
        s = cosine if method == "global" else np.where(np.isfinite(cosine), local, -np.inf)
    return s.max(axis=1) if s.shape[1] else np.full(s.shape[0], -np.inf)


def _gallery_features(gallery: Gallery, idx: np.ndarray | None = None) -> Features:
    from .embed import Features

    idx = np.arange(len(gallery)) if idx is None else idx
    local = gallery.local
    return Features(
        names=[str(p) for p in gallery.metadata["path"].to_numpy(dtype=object)[idx]],
        embeddings=gallery.embeddings[idx].copy(),
        local=[local[i] for i in idx] if local is not None else None,
        valid=np.ones(len(idx), bool),
        sides=[str(s) for s in gallery.sides[idx]],
    )


def _calibration_evidence(gallery: Gallery, *, method: str, shortlist: int, n_folds: int) -> _Evidence:
    """Score every photo leave-one-out, then each fold of individuals against a matcher refitted without it."""
    from .matching import Matcher

    n = len(gallery)
    labels = gallery.labels
    plain = DEFAULT_CALIBRATION if method == "fused" else None
    matcher = Matcher(method=method, shortlist=shortlist, calibration=plain).fit(gallery)  # type: ignore[arg-type]
    ps = matcher.scores(_gallery_features(gallery), exclude=list(range(n)))
    same = (labels[:, None] == labels[None, :]) & np.isfinite(ps.cosine)
    queries = np.flatnonzero(same.any(1))
    if len(set(labels[queries])) < 2:
        raise GalleryError(f"{NEED_PAIRS}; this gallery has {len(queries)} such photo(s), so nothing was fitted "
                           "and the built-in default stays in use")
    ids = sorted(set(labels))
    k = min(n_folds, len(ids))
    fold_of = {ident: f % k for f, ident in enumerate(ids)}
    fold = np.array([fold_of[x] for x in labels])
    new_cos = np.full((n, n), -np.inf)
    new_loc = np.full((n, n), -np.inf) if method != "global" else None
    meta = gallery.metadata
    local = gallery.local
    for f in range(k):
        keep, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        if not len(keep) or not len(held):
            continue
        sub = Gallery.from_embeddings(gallery.embeddings[keep], list(labels[keep]), metadata=meta.iloc[keep],
                                      backbone=gallery.backbone, local=[local[i] for i in keep] if local else None)
        m = Matcher(method=method, shortlist=shortlist, calibration=plain).fit(sub)  # type: ignore[arg-type]
        part = m.scores(_gallery_features(gallery, held))
        new_cos[np.ix_(held, keep)] = part.cosine
        if new_loc is not None and part.local is not None:
            new_loc[np.ix_(held, keep)] = part.local
    return _Evidence(labels=labels, known=ps, new_cosine=new_cos, new_local=new_loc, queries=queries, fold=fold,
                     n=n)


def _calibrate_fused(ev: _Evidence, *, max_false_match: float | None, shortlist: int) -> Calibration:
    """Choose between the fused fit, the keypoint-only fit and the built-in default, on held-out folds."""
    x, y, owner = _query_pairs(ev.known, ev.labels, ev.queries, shortlist=shortlist)
    default = DEFAULT_CALIBRATION.for_identities(len(set(ev.labels)))  # as a Matcher would use it here
    default_known, default_new = ev.known_tops(default), ev.new_tops(default)
    if len(ev.queries) < MIN_CALIBRATION_QUERIES or y.all() or not y.any():
        reason = (f"Kept the built-in default: only {len(ev.queries)} photo(s) have a second photo of the same "
                  f"individual and flank, and a fit needs at least {MIN_CALIBRATION_QUERIES} (two photos of the "
                  "same flank are needed per individual).")
        return _finish(ev, default, default_known, default_new, method="fused", source="default",
                       reason=reason, max_false_match=max_false_match, n_pairs=len(y), keep_threshold=True)
    held = {name: _held_out(ev, x, y, owner, cols, max_false_match, default) for name, cols in
            (("fused", [0, 1]), ("local", [1]), ("global", [0]))}
    single = "local" if held["local"][2] >= held["global"][2] else "global"
    name = "fused" if held["fused"][2] > held[single][2] else single
    known_ho, new_ho, auc, err = held[name]
    d_err = _balanced_error(default_known, default_new, default.threshold)
    words = {"fused": "fused fit", "local": "local-only fit", "global": "cosine-only fit"}
    why = (f"Held-out AUROC: fused {held['fused'][2]:.3f}, keypoints alone {held['local'][2]:.3f}, cosine alone "
           f"{held['global'][2]:.3f}.")
    if max_false_match is None and err > d_err:
        reason = (f"Kept the built-in default: the {words[name]} was worse on held-out individuals (balanced error "
                  f"{err:.3f}) than the default (P >= 0.5: {d_err:.3f}). {why}")
        return _finish(ev, default, default_known, default_new, method="fused", source="default",
                       reason=reason, max_false_match=None, n_pairs=len(y), keep_threshold=True)
    cols = {"fused": [0, 1], "local": [1], "global": [0]}[name]
    cal = _fit_model(x, y, cols)
    reason = f"Chose the {words[name]} on {len(y)} pairs of {len(ev.queries)} photos. {why}"
    return _finish(ev, cal, known_ho, new_ho, method="fused", source=words[name], reason=reason,
                   max_false_match=max_false_match, n_pairs=len(y), auroc=auc)


def _fit_model(x: np.ndarray, y: np.ndarray, cols: list[int]) -> Calibration:
    """A monotone logistic on the columns ``cols`` (of the full pair features ``x``: cosine, log1p(local))."""
    return fit_monotone_fusion(x, y, use=(0 in cols, 1 in cols))


def _held_out(
    ev: _Evidence, x: np.ndarray, y: np.ndarray, owner: np.ndarray, cols: list[int], max_false_match: float | None,
    fallback: Calibration,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Cross-fitted by fold: each fold's known and new top scores under a model fitted on the other folds
    (``fallback`` where the other folds cannot be fitted), the pooled AUROC, and the balanced error of
    thresholds also chosen on the other folds only."""
    from sklearn.metrics import roc_auc_score

    q_fold = ev.fold[ev.queries]
    known = np.full(len(ev.queries), -np.inf)
    new = np.full(ev.n, -np.inf)
    wrong_known, wrong_new = 0, 0
    for f in np.unique(ev.fold):
        train_q = ev.queries[q_fold != f]
        rows = np.isin(owner, train_q)
        try:
            cal = _fit_model(x[rows], y[rows], cols) if y[rows].any() and not y[rows].all() else None
        except ValueError:
            cal = None
        cal = cal or fallback
        test_q, test_n = q_fold == f, ev.fold == f
        known[test_q] = ev.known_tops(cal, ev.queries[test_q])
        new[test_n] = ev.new_tops(cal, np.flatnonzero(test_n))
        t = choose_threshold(ev.known_tops(cal, train_q), ev.new_tops(cal, np.flatnonzero(~test_n)),
                              max_false_match=max_false_match, default=0.5).threshold
        wrong_known += int(np.sum(known[test_q] < t))
        wrong_new += int(np.sum(new[test_n] >= t))
    err = (wrong_known / max(1, len(known)) + wrong_new / max(1, len(new))) / 2
    y_true = np.r_[np.ones(len(known)), np.zeros(len(new))]
    s = np.r_[known, new]
    s = np.where(np.isfinite(s), s, np.min(s[np.isfinite(s)], initial=0.0) - 1.0)
    return known, new, float(roc_auc_score(y_true, s)), float(err)


def _balanced_error(known: np.ndarray, new: np.ndarray, t: float) -> float:
    return (float(np.mean(known < t)) + float(np.mean(new >= t))) / 2


def _finish(
    ev: _Evidence, cal: Calibration | None, known: np.ndarray, new: np.ndarray, *, method: str, source: str,
    reason: str, max_false_match: float | None, n_pairs: int, keep_threshold: bool = False,
    auroc: float | None = None,
) -> Calibration:
    """The Calibration for the chosen model: its threshold (the rule's, or the model's own with
    ``keep_threshold`` unless ``max_false_match`` asks otherwise), achieved rates, band, and words."""
    from sklearn.metrics import roc_auc_score

    if keep_threshold and max_false_match is None:
        assert cal is not None
        t = cal.threshold
        choice = ThresholdChoice(t, float(np.mean(known < t)), float(np.mean(new >= t)))
    else:
        choice = choose_threshold(known, new, max_false_match=max_false_match, default=0.5)
    if max_false_match is not None and choice.all_new:
        note = (f"No threshold keeps the false-match rate at or below {max_false_match:g} without calling every "
                "photo of this gallery new: check for one animal filed under two names (leopard-reid audit).")
        warnings.warn(note, stacklevel=3)
        reason = f"{reason} {note}".strip()
    elif source == "default":
        warnings.warn(reason, stacklevel=3)
    if auroc is None:
        s = np.r_[known, new]
        s = np.where(np.isfinite(s), s, np.min(s[np.isfinite(s)], initial=0.0) - 1.0)
        auroc = float(roc_auc_score(np.r_[np.ones(len(known)), np.zeros(len(new))], s))
    finite_new, finite_known = new[np.isfinite(new)], known[np.isfinite(known)]
    lo = float(np.quantile(finite_new, 0.5)) if len(finite_new) else choice.threshold
    hi = float(np.quantile(finite_known, 0.5)) if len(finite_known) else choice.threshold
    base = cal or DEFAULT_CALIBRATION
    return Calibration(
        coef=base.coef, intercept=base.intercept, threshold=choice.threshold,
        uncertain_band=(min(lo, choice.threshold), max(hi, choice.threshold)),
        false_new_rate=choice.false_new_rate, false_match_rate=choice.false_match_rate, auroc=auroc,
        n_pairs=n_pairs, source=source, method=method,
        n_identities=None if method != "fused" else (cal and cal.n_identities) or len(set(ev.labels)),
        reason=f"{reason} Measured on {len(known)} known and {len(new)} held-out new-animal scores of "
               f"{ev.n} gallery photos.".strip(),
    )


@dataclass(frozen=True)
class ThresholdChoice:
    """A new-individual threshold and the rates it achieves on the scores it was chosen on."""

    threshold: float
    false_new_rate: float
    false_match_rate: float
    all_new: bool = False  # no known score reaches the threshold: every query would be called new


def choose_threshold(
    known: np.ndarray, new: np.ndarray, *, max_false_match: float | None = None, default: float
) -> ThresholdChoice:
    """The new-individual threshold from the top scores of queries whose individual is known and of new ones.

    The whole curve comes from :func:`sklearn.metrics.roc_curve`. Candidates: the lowest finite score, the
    midpoints between consecutive distinct scores (a clean gap is split down the middle, not placed on a
    score), and one just above the highest (everything new). The pick has the lowest balanced error, or with
    ``max_false_match`` the lowest false-new rate among those within it; ties go to the lowest. A query is
    called known when its score is ``>=`` the threshold; -inf (nothing comparable) is always new.
    ``default`` when no score is finite.
    """
    from sklearn.metrics import roc_curve

    known, new = np.asarray(known, dtype=np.float64), np.asarray(new, dtype=np.float64)
    s = np.r_[known, new]
    fin = np.isfinite(s)
    if not fin.any():
        return ThresholdChoice(float(default), 1.0 if len(known) else 0.0, 0.0, all_new=bool(len(known)))
    u = np.unique(s[fin])
    above = u[-1] + max(1e-6, 1e-6 * abs(u[-1]))
    cuts = np.r_[u[:1], (u[1:] + u[:-1]) / 2, above]  # cutting at cuts[i] classifies like cutting at u[i]
    if len(known) and len(new):
        y = np.r_[np.ones(len(known), bool), np.zeros(len(new), bool)]
        fpr, tpr, thr = roc_curve(y, np.where(fin, s, u[0] - 1.0), drop_intermediate=False)
        at = thr >= u[0]  # drop the sentinel standing for -inf
        pos = np.where(thr[at] > u[-1], len(u), np.searchsorted(u, thr[at]))
        order = np.argsort(pos)
        t, fnr, fmr = cuts[pos[order]], 1.0 - tpr[at][order], fpr[at][order]
    else:  # one kind of score only: count
        t = cuts
        fnr = np.array([np.mean(known < c) for c in t]) if len(known) else np.zeros(len(t))
        fmr = np.array([np.mean(new >= c) for c in t]) if len(new) else np.zeros(len(t))
    if max_false_match is not None:
        ok = fmr <= max_false_match + 1e-12
        k = int(np.flatnonzero(ok)[np.argmin(fnr[ok])]) if ok.any() else len(t) - 1
    else:
        k = int(np.argmin((fnr + fmr) / 2))
    all_new = bool(len(known) and fnr[k] >= 1.0)
    return ThresholdChoice(float(t[k]), float(fnr[k]), float(fmr[k]), all_new=all_new)


def pair_features(
    scores: PairScores, labels: np.ndarray, queries: np.ndarray, *, shortlist: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Training pairs for the fusion: each query with its top candidates (by keypoint score and by cosine)
    and all its true matches. Returns ``x`` = (cosine, log1p(local)) per pair and ``y`` = same individual."""
    x, y, _ = _query_pairs(scores, labels, queries, shortlist=shortlist)
    return x, y


def _query_pairs(
    scores: PairScores, labels: np.ndarray, queries: np.ndarray, *, shortlist: int = 20
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pair_features` plus the query (row of ``scores``) of each pair, in the order of ``queries``:
    computed once, the pairs of any subset of the queries are a row mask (cross-fitting needs no rescoring)."""
    labels = np.asarray(labels, dtype=object)
    xs, ys, owners = [], [], []
    for i in queries:
        valid = np.isfinite(scores.cosine[i])
        same = (labels == labels[i]) & valid
        same[i] = False
        by_local = np.argsort(-np.where(valid, scores.local[i], -np.inf))[:shortlist]
        by_cos = np.argsort(-scores.cosine[i])[:shortlist]
        pairs = np.unique(np.r_[by_local, by_cos, np.flatnonzero(same)])
        pairs = pairs[valid[pairs] & (pairs != i)]
        xs.append(np.c_[scores.cosine[i, pairs], np.log1p(np.maximum(scores.local[i, pairs], 0))])
        ys.append(same[pairs])
        owners.append(np.full(len(pairs), i, dtype=np.int64))
    if not xs:
        return np.zeros((0, 2)), np.zeros(0, bool), np.zeros(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(owners)


#: Candidates of :func:`select_fusion`: which of (cosine, log1p(local)) a model may use.
_MODELS = {"fused": (True, True), "local": (False, True), "global": (True, False)}


def fit_monotone_fusion(x: np.ndarray, y: np.ndarray, *, use: tuple[bool, bool] = (True, True)) -> Calibration:
    """Logistic regression of same/different on ``x`` = (cosine, log1p(local)) with non-negative weights.

    ``use`` selects the inputs; an input whose fitted weight is negative is dropped and the model refitted
    on the rest. Raises ``ValueError`` when ``y`` has a single class.
    """
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y, bool)
    if y.all() or not y.any():
        raise ValueError("fitting the fusion needs both same- and different-individual pairs")
    cols = [i for i in range(2) if use[i]]
    while True:
        lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000).fit(x[:, cols], y)
        w = lr.coef_[0]
        if (w >= 0).all() or len(cols) == 1:
            break
        cols = [c for c, wi in zip(cols, w) if wi >= 0] or [1]
    coef = [0.0, 0.0]
    for c, wi in zip(cols, lr.coef_[0]):
        coef[c] = max(float(wi), 0.0)
    return Calibration(coef=(coef[0], coef[1]), intercept=float(lr.intercept_[0]), source="fit")


def _top1(scores: np.ndarray, labels: np.ndarray, queries: np.ndarray) -> tuple[float, float]:
    """(top-1, mAP) of query rows of ``scores`` (best exemplar per identity; ties count against)."""
    from .evaluation import rank_metrics

    ranks, aps = rank_metrics(scores, labels, queries)
    return float(np.mean(ranks <= 1)), float(np.mean(aps))


def select_fusion(
    scores: PairScores,
    labels: np.ndarray,
    queries: np.ndarray,
    *,
    n_folds: int = 3,
    shortlist: int = 20,
) -> Calibration:
    """The fusion for these labelled leave-one-out ``scores``: fused, local alone or global alone, whichever
    ranks the ``queries`` best (top-1, then mAP; ties to the simpler model, local first) when each is fitted
    on the other folds of identities. The winner is refitted on every query's pairs; its ``source`` names it
    and the cross-validated top-1 of each candidate.

    Raises ``ValueError`` when the pairs hold a single class (no identity with two images).
    """
    labels = np.asarray(labels, dtype=object)
    queries = np.asarray(queries, np.int64)
    x, y, owner = _query_pairs(scores, labels, queries, shortlist=shortlist)
    ids = sorted(set(labels[queries]))
    fold_of = {ident: k % n_folds for k, ident in enumerate(ids)}
    folds = np.array([fold_of[labels[q]] for q in queries])
    fused = np.full((len(queries), scores.cosine.shape[1]), -np.inf)
    fitted_folds = 0
    for k in range(n_folds):
        test = folds == k
        rows = np.isin(owner, queries[~test])
        if not test.any():
            continue
        try:
            cal = fit_monotone_fusion(x[rows], y[rows])
        except ValueError:  # a fold without both kinds of pairs: this candidate cannot be judged
            continue
        fitted_folds += 1
        fused[test] = cal.fuse(scores.cosine[queries[test]], scores.local[queries[test]])
    results = {
        "local": _top1(scores.local[queries], labels, queries),
        "global": _top1(scores.cosine[queries], labels, queries),
    }
    if fitted_folds == n_folds:
        results["fused"] = _top1(fused, labels, queries)
    order = ["local", "fused", "global"]  # tie-break: the stronger single input first, then the fit
    best = max((m for m in order if m in results), key=lambda m: (results[m], -order.index(m)))
    cal = fit_monotone_fusion(x, y, use=_MODELS[best])
    summary = ", ".join(f"{m} {results[m][0]:.3f}" for m in order if m in results)
    return replace(cal, source=f"{best} (cross-validated top-1 over {len(ids)} identities: {summary})")


def fit_fusion(x: np.ndarray, y: np.ndarray) -> tuple[tuple[float, float], float]:
    """Monotone logistic fusion of (cosine, log1p(local)) on labelled pairs; returns ``(coef, intercept)``."""
    if y.all() or not y.any():
        raise GalleryError("calibration needs both same- and different-individual pairs")
    cal = fit_monotone_fusion(x, y)
    return cal.coef, cal.intercept
