"""CLEAR's metrics (the authors' mm/eval.py and mm/calculate_metrics.py, TOFU's definitions on six tasks).

Per evaluated row, with ℓ the per-token NLL of an answer given the image and question (eval.py:74-80, :139-142):
- ROUGE-L / ROUGE-1 recall of the greedy generation against the answer (calculate_metrics.py:34-43);
- probability: exp(-ℓ_answer) on the caption tasks (forget, retain), and on the others normalised over the
  perturbed answers, exp(-ℓ) / (exp(-ℓ) + Σ_j exp(-ℓ_j)) (calculate_metrics.py:95-104);
- truth ratio R = exp(ℓ_base - mean_j ℓ_pert_j), ℓ_base the paraphrased caption's (caption tasks) or the answer's
  own (the others): FIUBench's ``truth_ratio``; the original stores its inverse exp(ℓ_pert - ℓ_base)
  (calculate_metrics.py:114-116), which the aggregations below read the same way.
Per task: means; the truth ratio as mean(min(R, 1/R)) on the forget tasks and mean(max(0, 1 - R)) elsewhere
(calculate_metrics.py:118-121, FIUBench's ``aggregate_truth_ratio``).
Model utility: the harmonic mean of ROUGE, probability and truth ratio of every task but the two forget ones
(calculate_metrics.py:126). Forget quality: the KS-test p-value of the forget captions' truth ratios against the
retain model's (calculate_metrics.py:51-70, FIUBench's ``forget_quality``); JS: scipy's Jensen-Shannon distance
between the two models' vectors of exp(ℓ_pert - ℓ_base), read as distributions over the forget rows
(calculate_metrics.py:71).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.spatial.distance import jensenshannon

from clear.data import FORGET_TASKS, TASKS
from fiubench.metrics import aggregate_truth_ratio, answer_probability, normalised_probability, truth_ratio
from unlearning.evaluation.metrics.stats import harmonic_mean

CAPTION_TASKS = ("forget", "retain")  # probability not normalised (the original's "eval_log" tasks)
UTILITY_TASKS = tuple(task for task in TASKS if task not in FORGET_TASKS)
UTILITY_TERMS = ("rougeL_recall", "probability", "truth_ratio")

__all__ = ["aggregate_task", "answer_probability", "js_distance", "model_utility", "normalised_probability",
           "task_probability", "truth_ratio", "truth_ratios"]


def task_probability(task: str, answer_nll: float, perturbed_nlls: Sequence[float]) -> float:
    """The probability a task reports: plain on the caption tasks, normalised over the perturbed answers on the
    others."""
    if task in CAPTION_TASKS:
        return answer_probability(answer_nll)
    return normalised_probability(answer_nll, perturbed_nlls)


def truth_ratios(base_nlls: Sequence[float], perturbed_nlls: Sequence[Sequence[float]], pooled: bool = False
                 ) -> list[float]:
    """Each row's R against its own perturbed answers, or (``pooled``, the original's) against the mean perturbed
    NLL of the whole task (calculate_metrics.py:58, :115 average the perturbed losses over every row)."""
    if pooled:
        everything = [nll for row in perturbed_nlls for nll in row]
        return [truth_ratio(base, everything) for base in base_nlls]
    return [truth_ratio(base, row) for base, row in zip(base_nlls, perturbed_nlls, strict=True)]



def aggregate_task(records: Sequence[Mapping], task: str) -> dict[str, float | int]:
    """A task's values from its per-row records (``eval/<task>.json``)."""
    if not records:
        raise ValueError("no records to aggregate")
    return {
        "rougeL_recall": float(np.mean([r["rougeL_recall"] for r in records])),
        "rouge1_recall": float(np.mean([r["rouge1_recall"] for r in records])),
        "probability": float(np.mean([r["probability"] for r in records])),
        "truth_ratio": aggregate_truth_ratio([r["truth_ratio"] for r in records],
                                             "forget" if task in FORGET_TASKS else "retain"),
        "avg_gt_loss": float(np.mean([r["answer_nll"] for r in records])),
        "n": len(records),
    }


def model_utility(tasks: Mapping[str, Mapping[str, float]]) -> float:
    """The harmonic mean of ROUGE, probability and truth ratio over the four tasks a model should keep (12
    values); 0 when any is 0."""
    return harmonic_mean([tasks[task][term] for task in UTILITY_TASKS for term in UTILITY_TERMS])


def js_distance(ours: Sequence[float], reference: Sequence[float]) -> float:
    """Jensen-Shannon distance (natural log) between two aligned vectors of truth ratios R, each turned into the
    original's exp(ℓ_pert - ℓ_base) = 1/R and normalised to sum 1 (scipy's ``jensenshannon``)."""
    if len(ours) != len(reference) or not len(ours):
        raise ValueError("JS compares the same forget rows of two models")
    value = float(jensenshannon(1.0 / np.asarray(ours, dtype=float), 1.0 / np.asarray(reference, dtype=float)))
    return 0.0 if math.isnan(value) else value
