import math

import numpy as np
import pytest

from fiubench import metrics


def test_truth_ratio_hand_computed():
    # R = exp(l_para - mean(l_pert)) = exp(1 - 2.5)
    assert metrics.truth_ratio(1.0, [2.0, 3.0]) == pytest.approx(math.exp(-1.5))


def test_probabilities_hand_computed():
    assert metrics.answer_probability(0.5) == pytest.approx(math.exp(-0.5))
    expected = math.exp(-1) / (math.exp(-1) + math.exp(-2) + math.exp(-3))
    assert metrics.normalised_probability(1.0, [2.0, 3.0]) == pytest.approx(expected)
    # stable for very confident or very unlikely answers
    assert metrics.normalised_probability(1000.0, [1.0]) == pytest.approx(0.0)


def test_truth_ratio_aggregation_per_role():
    ratios = [0.5, 2.0, 1.0]
    assert metrics.aggregate_truth_ratio(ratios, "forget") == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert metrics.aggregate_truth_ratio(ratios, "retain") == pytest.approx((0.5 + 0 + 0) / 3)
    with pytest.raises(ValueError):
        metrics.aggregate_truth_ratio(ratios, "holdout")


def _record(uid, rouge, em, nll, pert, para):
    return {"uid": uid, "rougeL_recall": rouge, "exact_match": em,
            "probability": metrics.answer_probability(nll),
            "normalised_probability": metrics.normalised_probability(nll, pert),
            "truth_ratio": metrics.truth_ratio(para, pert)}


def test_aggregate_split_and_model_utility():
    records = [_record("a", 1.0, 1.0, 0.1, [2.0, 2.0], 0.5), _record("b", 0.5, 0.0, 1.0, [1.0, 3.0], 1.0)]
    retain = metrics.aggregate_split(records, "retain")
    assert retain["rougeL_recall"] == pytest.approx(0.75)
    assert retain["exact_match"] == pytest.approx(0.5)
    p_a = math.exp(-0.1) / (math.exp(-0.1) + 2 * math.exp(-2.0))
    p_b = math.exp(-1.0) / (math.exp(-1.0) + math.exp(-1.0) + math.exp(-3.0))
    assert retain["probability"] == pytest.approx((p_a + p_b) / 2)
    r_a, r_b = math.exp(0.5 - 2.0), math.exp(1.0 - 2.0)
    assert retain["truth_ratio"] == pytest.approx(((1 - r_a) + (1 - r_b)) / 2)
    forget = metrics.aggregate_split(records, "forget")
    assert forget["probability"] == pytest.approx((math.exp(-0.1) + math.exp(-1.0)) / 2)
    assert forget["truth_ratio"] == pytest.approx((r_a + r_b) / 2)
    expected_mu = 3 / (1 / 0.75 + 1 / retain["probability"] + 1 / retain["truth_ratio"])
    assert metrics.model_utility(retain) == pytest.approx(expected_mu)


def test_forget_quality_pairs_same_qas():
    ours = [{"uid": str(i), "truth_ratio": v} for i, v in enumerate([1.0, 2.0, 3.0])]
    theirs = [{"uid": str(i), "truth_ratio": v} for i, v in enumerate([4.0, 5.0, 6.0])]
    assert metrics.forget_quality(ours, theirs) == pytest.approx(0.1)
    assert metrics.forget_quality(ours, ours) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="another split"):
        metrics.forget_quality(ours, theirs[:2])
    assert np.isfinite(metrics.forget_quality(ours, list(reversed(theirs))))
