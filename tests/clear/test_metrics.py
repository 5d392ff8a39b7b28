"""CLEAR's metrics against values computed by hand (the formulas of the authors' mm/calculate_metrics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clear import metrics
from clear.data import TASKS
from clear.evaluate import FILE_VERSION, resample_run
from unlearning.compat import Compat
from unlearning.evaluation.intervals import BootstrapSettings, Resampler
from unlearning.evaluation.runner import Part
from unlearning.runs.io import atomic_write_json


def test_probability_is_plain_on_captions_and_normalised_elsewhere():
    # ℓ = 1, perturbed 2 and 3: exp(-1) / (exp(-1) + exp(-2) + exp(-3)) = 0.66524
    assert metrics.task_probability("forget", 1.0, [2.0, 3.0]) == pytest.approx(math.exp(-1))
    assert metrics.task_probability("retain", 0.5, [0.1]) == pytest.approx(math.exp(-0.5))
    for task in ("forget_facerec", "retain_facerec", "real_faces", "real_world"):
        assert metrics.task_probability(task, 1.0, [2.0, 3.0]) == pytest.approx(0.665241, abs=1e-6)


def test_truth_ratio_per_row_and_pooled():
    # row 0: base 1.0, perturbed 2, 4 -> R = exp(1 - 3) = e^-2; row 1: base 2.0, perturbed 2 -> R = 1
    assert metrics.truth_ratios([1.0, 2.0], [[2.0, 4.0], [2.0]]) == pytest.approx([math.exp(-2), 1.0])
    # pooled (calculate_metrics.py:115): the mean perturbed NLL of the task, (2 + 4 + 2) / 3 = 8/3, for every row
    assert metrics.truth_ratios([1.0, 2.0], [[2.0, 4.0], [2.0]], pooled=True) == pytest.approx(
        [math.exp(1 - 8 / 3), math.exp(2 - 8 / 3)])


def records(nlls: list[float], ratios: list[float], rouge: list[float], probability: list[float]) -> list[dict]:
    rows = zip(nlls, ratios, rouge, probability, strict=True)
    return [{"uid": f"u{i}", "unit": f"p{i // 2}", "rougeL_recall": r, "rouge1_recall": r, "probability": p,
             "truth_ratio": t, "answer_nll": n} for i, (n, t, r, p) in enumerate(rows)]


def test_task_aggregation_folds_the_truth_ratio_by_role():
    rows = records([1.0, 3.0], [0.5, 2.0], [1.0, 0.5], [0.2, 0.4])
    forget = metrics.aggregate_task(rows, "forget")
    # forget: mean(min(R, 1/R)) = (0.5 + 0.5) / 2; retain: mean(max(0, 1 - R)) = (0.5 + 0) / 2
    assert forget == {"rougeL_recall": 0.75, "rouge1_recall": 0.75, "probability": pytest.approx(0.3),
                      "truth_ratio": 0.5, "avg_gt_loss": 2.0, "n": 2}
    assert metrics.aggregate_task(rows, "retain")["truth_ratio"] == 0.25
    assert metrics.aggregate_task(rows, "forget_facerec")["truth_ratio"] == 0.5
    assert metrics.aggregate_task(rows, "real_world")["truth_ratio"] == 0.25


def test_model_utility_is_the_harmonic_mean_of_twelve_values_without_the_forget_tasks():
    tasks = {task: {"rougeL_recall": 0.5, "probability": 0.5, "truth_ratio": 0.5} for task in
             ("retain", "retain_facerec", "real_faces")}
    tasks["real_world"] = {"rougeL_recall": 1.0, "probability": 1.0, "truth_ratio": 1.0}
    tasks["forget"] = tasks["forget_facerec"] = {"rougeL_recall": 0.0, "probability": 0.0, "truth_ratio": 0.0}
    # 12 / (9 x 2 + 3 x 1) = 12 / 21
    assert metrics.model_utility(tasks) == pytest.approx(12 / 21)
    tasks["real_faces"]["rougeL_recall"] = 0.0
    assert metrics.model_utility(tasks) == 0.0


def test_js_distance_of_the_inverse_ratios_as_distributions():
    # 1/R = [1, 1] and [1, 3] -> p = [0.5, 0.5], q = [0.25, 0.75], m = [0.375, 0.625]
    p, q, m = np.array([0.5, 0.5]), np.array([0.25, 0.75]), np.array([0.375, 0.625])
    expected = math.sqrt((np.sum(p * np.log(p / m)) + np.sum(q * np.log(q / m))) / 2)
    assert metrics.js_distance([1.0, 1.0], [1.0, 1 / 3]) == pytest.approx(expected)
    assert metrics.js_distance([0.2, 0.7], [0.2, 0.7]) == 0.0
    with pytest.raises(ValueError, match="same forget rows"):
        metrics.js_distance([1.0], [1.0, 2.0])


def test_resampled_values_at_the_point_estimate():
    """With every unit drawn once, the replicates are the point estimates (the bootstrap resamples persons)."""
    rows = records([1.0, 3.0, 2.0, 2.0], [0.5, 2.0, 1.0, 0.25], [1.0, 0.5, 0.0, 0.5], [0.2, 0.4, 0.6, 0.8])
    results = {task: {"samples": rows} for task in TASKS}
    part = Part("forget", {}, lambda context: {}, data=[])
    out = resample_run(results, None, Resampler(BootstrapSettings(resamples=200, seed=1)), part, Compat.of("clear"))
    forget = metrics.aggregate_task(rows, "forget")
    assert np.mean(out["tasks.forget.truth_ratio"]) == pytest.approx(forget["truth_ratio"], abs=0.08)
    assert out["tasks.retain.rougeL_recall"].shape == (200,)
    assert "forget_quality" not in out  # no reference evaluation


def test_resampled_forget_quality_against_the_reference(tmp_path):
    rows = records([1.0] * 6, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0], [1.0] * 6, [0.5] * 6)
    part = Part("forget", {"version": FILE_VERSION}, lambda context: {}, data=[1, 2])
    compat = Compat.of("clear")
    atomic_write_json(tmp_path / "forget.json", {"fingerprint": part.key(compat, "ref"),
                                                 "samples": rows})
    results = {task: {"samples": rows} for task in TASKS}
    out = resample_run(results, tmp_path, Resampler(BootstrapSettings(resamples=50, seed=0)), part, compat)
    assert np.all(out["forget_quality"] == 1.0) and np.all(out["js"] == 0.0)  # the same ratios as the reference
