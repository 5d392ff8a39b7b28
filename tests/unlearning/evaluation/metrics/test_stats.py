import pytest

from unlearning.evaluation.metrics.stats import harmonic_mean, ks_forget_quality


def test_ks_identical_samples_give_p_one():
    assert ks_forget_quality([0.1, 0.5, 0.9], [0.1, 0.5, 0.9]) == pytest.approx(1.0)


def test_ks_fully_separated_samples_exact_p():
    # D = 1 with n = m = 3: two of the C(6, 3) = 20 orderings are as extreme -> p = 2/20
    assert ks_forget_quality([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)


def test_ks_needs_both_samples():
    with pytest.raises(ValueError):
        ks_forget_quality([], [1.0])


def test_harmonic_mean_hand_computed():
    assert harmonic_mean([1.0, 0.5]) == pytest.approx(2 / 3)
    assert harmonic_mean([0.25, 0.5, 1.0]) == pytest.approx(3 / (4 + 2 + 1))


def test_harmonic_mean_zero_sinks_and_negative_rejected():
    assert harmonic_mean([0.9, 0.0]) == 0.0
    with pytest.raises(ValueError):
        harmonic_mean([0.5, -0.1])
