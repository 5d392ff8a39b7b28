import math
import zlib

import pytest

from unlearning.evaluation.metrics.membership import (
    attack_auc,
    lowest_k_mean,
    min_k_plus_plus_z,
    weighted_min_k,
    zlib_score,
)


def test_lowest_k_mean_uses_floor_of_ratio():
    values = [-1.0, -4.0, -2.0, -3.0, -0.5]
    assert lowest_k_mean(values, 0.2) == -4.0  # floor(0.2 * 5) = 1 -> the single lowest
    assert lowest_k_mean(values, 0.4) == -3.5  # the two lowest
    assert lowest_k_mean(values, 0.1) is None  # floor(0.5) = 0: no token


def test_weighted_min_k_renormalises_missing_terms():
    values = [-1.0, -4.0, -2.0, -3.0, -0.5]  # ratio 0.1 selects nothing
    terms = {0.2: -4.0, 0.3: -4.0, 0.4: -3.5, 0.5: -3.5}  # floor(1.5) = 1, floor(2.0) = 2, floor(2.5) = 2
    weights = {0.2: 0.3, 0.3: 0.2, 0.4: 0.1, 0.5: 0.1}
    dropped = sum(weights[r] * math.exp(m) for r, m in terms.items())
    assert weighted_min_k(values, renormalise=False) == pytest.approx(dropped)  # FIUBench: weights sum to 0.7
    assert weighted_min_k(values) == pytest.approx(dropped / 0.7)
    ten = [-float(i) for i in range(10)]  # every ratio selects a token: both agree
    assert weighted_min_k(ten) == pytest.approx(weighted_min_k(ten, renormalise=False))
    with pytest.raises(ValueError):
        weighted_min_k([-1.0])
    assert weighted_min_k([-1.0], renormalise=False) == 0.0  # FIUBench: no term, a sum of nothing


def test_min_k_plus_plus_z_hand_computed():
    assert min_k_plus_plus_z([-1.0, -2.0], [-1.5, -1.0], [0.5, 2.0]) == pytest.approx([1.0, -0.5])
    assert min_k_plus_plus_z([-1.0], [-1.0], [0.0]) == [0.0]


def test_zlib_score_divides_log_probability_by_compressed_length():
    text = "the blood type of juno fairbanks is a-."
    assert zlib_score([-1.0, -2.0], text) == pytest.approx(-3.0 / len(zlib.compress(text.encode())))


def test_attack_auc_hand_computed():
    assert attack_auc([3, 4], [1, 2]) == 1.0
    assert attack_auc([1, 2], [3, 4]) == 0.0
    assert attack_auc([1, 3], [2]) == 0.5  # one win, one loss
    assert attack_auc([2, 2], [2]) == 0.5  # ties count half
    with pytest.raises(ValueError):
        attack_auc([], [1])
