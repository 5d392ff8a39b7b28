"""GA, gradient ascent (Jang et al. 2023; TOFU's ``grad_ascent``): L = -NLL(forget).

Checked against FIUBench ``forget.py`` (``ga``). Collapses retain answers along with forget answers
within a few dozen steps at lr 1e-4 on LoRA; that is the baseline's known failure, not a bug.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearning.data.streams import StreamUse
from unlearning.inference.scoring import mean_nll
from unlearning.training.methods.base import METHODS, Progress, StreamScores


@METHODS.register("ga")
@dataclass
class GradientAscent:
    needs_reference = False

    def streams(self) -> tuple[StreamUse, ...]:
        return (StreamUse("forget"),)

    def loss(
        self, policy: StreamScores, reference: StreamScores | None, progress: Progress
    ) -> tuple[torch.Tensor, dict[str, float]]:
        forget_nll = mean_nll(policy["forget"])
        return -forget_nll, {"forget_nll": forget_nll.item()}
