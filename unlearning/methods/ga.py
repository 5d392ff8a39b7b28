"""GA, gradient ascent (Jang et al. 2023; TOFU's ``grad_ascent``): L = -NLL(forget).

Checked against FIUBench ``forget.py`` (``ga``). Collapses retain answers along with forget answers
within a few dozen steps at lr 1e-4 on LoRA; that is the baseline's known failure, not a bug.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearning.methods.base import METHODS
from unlearning.metrics.likelihood import AnswerLogits, mean_nll


@METHODS.register("ga")
@dataclass
class GradientAscent:
    needs_retain = False
    needs_reference = False
    forget_target = "answer"

    def loss(
        self, policy: AnswerLogits, reference: AnswerLogits | None, is_forget: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        forget_nll = mean_nll(policy, is_forget)
        return -forget_nll, {"forget_nll": forget_nll.item()}
