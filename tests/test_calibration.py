"""The fusion is monotone and never chosen over a better single input."""

from __future__ import annotations

import numpy as np
import pytest

from leopard_reid.calibration import _query_pairs, fit_monotone_fusion, select_fusion
from leopard_reid.evaluation import _cross_fitted_fusion, rank_metrics
from leopard_reid.matching import PairScores


def _scores(n_ids: int = 24, per_id: int = 3, *, cosine_lies: bool, seed: int = 0) -> tuple[PairScores, np.ndarray]:
    """Leave-one-out score matrices of ``n_ids`` x ``per_id`` images where the keypoint score separates
    identities (noisily) and the cosine either helps or misleads (wrong pairs of one "site" score high)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([f"L{i:02d}" for i in range(n_ids)], per_id).astype(object)
    n = len(labels)
    same = labels[:, None] == labels[None, :]
    site = rng.integers(0, 4, n)
    local = np.where(same, rng.gamma(3.0, 2.0, (n, n)), rng.gamma(1.0, 1.2, (n, n)))
    if cosine_lies:  # the same background: different animals at one site look alike to the CNN
        cosine = 0.3 + 0.4 * (site[:, None] == site[None, :]) - 0.1 * same + rng.normal(0, 0.05, (n, n))
    else:
        cosine = 0.3 + 0.3 * same + rng.normal(0, 0.1, (n, n))
    np.fill_diagonal(cosine, -np.inf)
    np.fill_diagonal(local, -np.inf)
    return PairScores(cosine=cosine, local=local, final=local.copy(), method="fused"), labels


def _top1(s: np.ndarray, labels: np.ndarray) -> float:
    q = np.arange(len(labels))
    return float(np.mean(rank_metrics(s, labels, q)[0] <= 1))


def test_monotone_fit_drops_a_misleading_input() -> None:
    ps, labels = _scores(cosine_lies=True)
    x, y, _ = _query_pairs(ps, labels, np.arange(len(labels)))
    cal = fit_monotone_fusion(x, y)
    assert cal.coef[0] == 0.0 and cal.coef[1] > 0.0  # an unconstrained fit gives the cosine a negative weight
    from sklearn.linear_model import LogisticRegression

    assert LogisticRegression(class_weight="balanced").fit(x, y).coef_[0, 0] < 0


def test_fused_evaluation_is_not_below_its_better_input_when_the_cosine_misleads() -> None:
    ps, labels = _scores(cosine_lies=True)
    q = np.arange(len(labels))
    local = _top1(ps.local, labels)
    assert local > _top1(ps.cosine, labels) + 0.3
    assert _top1(_cross_fitted_fusion(ps, labels, q), labels) >= local
    cal = select_fusion(ps, labels, q)
    assert cal.source.startswith("local") and cal.coef[0] == 0.0


def test_fusion_is_chosen_when_both_inputs_help() -> None:
    ps, labels = _scores(cosine_lies=False, seed=1)
    q = np.arange(len(labels))
    cal = select_fusion(ps, labels, q)
    assert cal.source.startswith("fused"), cal.source
    assert cal.coef[0] > 0 and cal.coef[1] > 0
    fused = _top1(_cross_fitted_fusion(ps, labels, q), labels)
    assert fused > max(_top1(ps.local, labels), _top1(ps.cosine, labels))


def test_single_class_pairs_are_refused() -> None:
    with pytest.raises(ValueError, match="both same- and different"):
        fit_monotone_fusion(np.zeros((4, 2)), np.ones(4, bool))
