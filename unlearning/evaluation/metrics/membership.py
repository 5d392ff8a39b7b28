"""Membership-inference scores over answer tokens, and the attack AUC that turns them into a test.

Every score is oriented so that higher means "looks like training data":
- loss:    -(mean token NLL)
- zlib:    log p(answer) / zlib-compressed byte length of the answer (Carlini et al. 2021)
- Min-K:   mean of the lowest k% token log-probabilities (Shi et al. 2024)
- Min-K++: the same on z_t = (log p_t - mu_t) / sigma_t, calibrated by the vocabulary distribution (Zhang et al. 2024)
FIUBench reports a weighted Min-K / Min-K++ over k = 10..50% (weights 0.3/0.3/0.2/0.1/0.1) of exp(mean).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
from scipy import stats

MINK_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5)
MINK_WEIGHTS = (0.3, 0.3, 0.2, 0.1, 0.1)


def lowest_k_mean(values: Sequence[float], ratio: float) -> float | None:
    """Mean of the lowest floor(ratio * n) values; None when that selects no value."""
    k = int(len(values) * ratio)
    if k == 0:
        return None
    return float(np.mean(np.sort(np.asarray(values, dtype=float))[:k]))


def weighted_min_k(
    values: Sequence[float],
    ratios: Sequence[float] = MINK_RATIOS,
    weights: Sequence[float] = MINK_WEIGHTS,
    renormalise: bool = True,
) -> float:
    """FIUBench's MIA score: sum_r w_r * exp(mean of the lowest floor(r n) values).

    A ratio that selects no token (short answers) has no term. By default the remaining weights are
    renormalised to sum to one (an answer too short for any ratio is an error); ``renormalise=False`` drops the
    term as FIUBench did (biasing the score low; an answer too short for any ratio scores 0).
    """
    terms = [(w, lowest_k_mean(values, r)) for r, w in zip(ratios, weights, strict=True)]
    present = [(w, m) for w, m in terms if m is not None]
    if not present:
        if not renormalise:
            return 0.0  # FIUBench: the sum over no term
        raise ValueError(f"no Min-K ratio selects a token of a {len(values)}-token answer")
    total = sum(w * math.exp(m) for w, m in present)
    return total / sum(w for w, _ in present) if renormalise else total


def min_k_plus_plus_z(
    logprobs: Sequence[float], mu: Sequence[float], sigma: Sequence[float], eps: float = 1e-12
) -> list[float]:
    """Per-token z_t = (log p_t - mu_t) / sigma_t."""
    return [(lp - m) / max(s, eps) for lp, m, s in zip(logprobs, mu, sigma, strict=True)]


def zlib_score(logprobs: Sequence[float], text: str) -> float:
    """log p(answer) divided by the answer's zlib entropy (bytes after compression)."""
    return float(sum(logprobs)) / len(zlib.compress(text.encode("utf-8")))


def attack_auc(members: Sequence[float], nonmembers: Sequence[float]) -> float:
    """P(score of a random member > score of a random non-member), ties counting half (ROC AUC)."""
    if len(members) == 0 or len(nonmembers) == 0:
        raise ValueError("the attack AUC needs members and non-members")
    u = stats.mannwhitneyu(members, nonmembers, alternative="two-sided").statistic
    return float(u) / (len(members) * len(nonmembers))
