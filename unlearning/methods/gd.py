"""GD, gradient difference (Liu et al. 2022; TOFU's ``grad_diff``): L = -NLL(forget) + retain_weight * NLL(retain).

Checked against FIUBench ``forget.py`` (``gd``, weights 1:1). Forget and retain rows come from one
paired batch and one optimiser step, not two sequential passes as in MLLMU-Bench's GA_Diff.
Typical retain_weight: 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearning.methods.base import METHODS
from unlearning.metrics.likelihood import AnswerLogits, mean_nll


@METHODS.register("gd")
@dataclass
class GradientDifference:
    retain_weight: float = 1.0

    needs_retain = True
    needs_reference = False
    forget_target = "answer"

    def loss(
        self, policy: AnswerLogits, reference: AnswerLogits | None, is_forget: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        forget_nll = mean_nll(policy, is_forget)
        retain_nll = mean_nll(policy, ~is_forget)
        loss = -forget_nll + self.retain_weight * retain_nll
        return loss, {"forget_nll": forget_nll.item(), "retain_nll": retain_nll.item()}
