"""What a command cost: its peak memory, recorded with training and evaluation results (docs/performance.md's
table reads them)."""

from __future__ import annotations

import resource
import sys

import torch


def peak_memory_mb() -> dict[str, float]:
    """The process's peak resident memory so far, and the accelerator's peak allocation when there is one (MB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"peak_rss_mb": round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)}  # bytes on macOS, KB else
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out
