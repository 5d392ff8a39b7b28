"""FIUBench's metrics: per-QA values and their forget/retain aggregation (FIUBench ``evaluate_util.py``,
``aggregate_eval_stat.py``; TOFU's definitions).

Per QA, with ℓ the per-token NLL of an answer given the original question:
- probability:   forget: exp(-ℓ_gt);  retain: exp(-ℓ_gt) / (exp(-ℓ_gt) + Σ_j exp(-ℓ_pert_j))
- truth ratio:   R = exp(ℓ_para - mean_j ℓ_pert_j)  (geometric-mean perturbed prob / paraphrased prob)
                 forget aggregate mean(min(R, 1/R)), retain aggregate mean(max(0, 1 - R))
- ROUGE-L recall and keyword exact match of the greedy answer.
Forget quality is the KS-test p-value of the forget-split R values against the retain model's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from unlearning.metrics.stats import harmonic_mean, ks_forget_quality

ROLES = ("forget", "retain")


def truth_ratio(paraphrased_nll: float, perturbed_nlls: Sequence[float]) -> float:
    return math.exp(paraphrased_nll - float(np.mean(perturbed_nlls)))


def answer_probability(answer_nll: float) -> float:
    return math.exp(-answer_nll)


def normalised_probability(answer_nll: float, perturbed_nlls: Sequence[float]) -> float:
    """exp(-ℓ_gt) over the sum with every perturbed answer's, computed stably in log space."""
    logits = -np.array([answer_nll, *perturbed_nlls])
    return float(np.exp(logits[0] - np.logaddexp.reduce(logits)))


def aggregate_truth_ratio(ratios: Sequence[float], role: str) -> float:
    r = np.asarray(ratios, dtype=float)
    if role == "forget":
        return float(np.mean(np.minimum(r, 1.0 / r)))
    if role == "retain":
        return float(np.mean(np.maximum(0.0, 1.0 - r)))
    raise ValueError(f"role must be one of {ROLES}, got {role!r}")


def aggregate_split(records: Sequence[dict], role: str) -> dict[str, float]:
    """Split-level values from per-QA records (as written to ``eval/<split>.json``)."""
    if not records:
        raise ValueError("no records to aggregate")
    probability_key = "probability" if role == "forget" else "normalised_probability"
    return {
        "rougeL_recall": float(np.mean([r["rougeL_recall"] for r in records])),
        "exact_match": float(np.mean([r["exact_match"] for r in records])),
        "probability": float(np.mean([r[probability_key] for r in records])),
        "truth_ratio": aggregate_truth_ratio([r["truth_ratio"] for r in records], role),
        "n": len(records),
    }


def model_utility(retain: dict[str, float]) -> float:
    """FIUBench's code: harmonic mean of the retain split's ROUGE-L, probability and truth ratio."""
    return harmonic_mean([retain["rougeL_recall"], retain["probability"], retain["truth_ratio"]])


def forget_quality(forget_records: Sequence[dict], reference_records: Sequence[dict]) -> float:
    """KS p-value between this model's and the retain model's truth ratios on the same forget QAs."""
    ours = {r["uid"]: r["truth_ratio"] for r in forget_records}
    theirs = {r["uid"]: r["truth_ratio"] for r in reference_records}
    if set(ours) != set(theirs):
        raise ValueError("forget quality compares different QAs: the reference was evaluated on another split")
    return ks_forget_quality(list(ours.values()), list(theirs.values()))
