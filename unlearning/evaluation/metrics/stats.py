"""Statistics over per-sample values: the KS-test forget quality and the harmonic-mean model utility."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def ks_forget_quality(unlearned: Sequence[float], retain_model: Sequence[float]) -> float:
    """Two-sided KS-test p-value between the unlearned model's and the retain model's forget truth ratios.

    High means the unlearned model is indistinguishable from one that never saw the forget set.
    """
    if len(unlearned) == 0 or len(retain_model) == 0:
        raise ValueError("forget quality needs truth ratios from both models")
    return float(stats.ks_2samp(np.asarray(unlearned), np.asarray(retain_model)).pvalue)


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean, 0 when any value is 0 (one collapsed utility metric sinks the whole score)."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        raise ValueError("harmonic mean of nothing")
    if np.any(array < 0):
        raise ValueError(f"harmonic mean needs non-negative values, got {values}")
    if np.any(array == 0):
        return 0.0
    return float(stats.hmean(array))
