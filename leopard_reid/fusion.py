"""Choosing how the two kinds of evidence become P(same individual): a fusion that never hurts.

The fused method maps (cosine of the CNN embeddings, keypoint score) to P(same) with a logistic model fitted
on labelled pairs. On real wild photos that fit can do worse than either input: the training pairs are each
query's top candidates, and when different animals photographed at one site share a background, the
cosine of wrong pairs is high, so an unconstrained fit learns a *negative* weight on it (seen on the
synthetic wild sets: fused top-1 0.01 where local alone gets 0.57). Two rules keep the fusion honest:

* **Monotone.** More evidence never lowers P(same): a weight fitted below zero is set to zero and the
  model refitted on the other input.
* **Chosen on held-out identities.** The fused fit competes with each input alone (a logistic on one
  score ranks exactly like that score), by cross-validated top-1 over folds of identities; the winner is
  fitted on all pairs. :func:`select_fusion` returns it as a :class:`~leopard_reid.match.Calibration`
  whose ``source`` says which input(s) it uses and why.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .match import Calibration, PairScores, _query_pairs

__all__ = ["fit_monotone_fusion", "select_fusion"]

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
    from .evaluate import rank_metrics

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
