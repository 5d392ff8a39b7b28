"""PO, preference optimisation towards refusals (TOFU's ``idk``; FIUBench's PO):
L = NLL(forget question -> refusal) + retain_weight * NLL(retain).

Forget answers are replaced by refusal strings (``prompt.json``'s ``idk`` list from the data folder, or the
toolkit's own list). Each set's NLL is its own token mean, so the 1:1 weighting does not depend on answer
lengths; FIUBench took one token mean over the concatenated batch (docs/fidelity.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearning.methods.base import METHODS
from unlearning.metrics.likelihood import AnswerLogits, mean_nll


@METHODS.register("po")
@dataclass
class RefusalPreference:
    retain_weight: float = 1.0

    needs_retain = True
    needs_reference = False
    forget_target = "refusal"

    def loss(
        self, policy: AnswerLogits, reference: AnswerLogits | None, is_forget: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        refusal_nll = mean_nll(policy, is_forget)
        retain_nll = mean_nll(policy, ~is_forget)
        loss = refusal_nll + self.retain_weight * retain_nll
        return loss, {"refusal_nll": refusal_nll.item(), "retain_nll": retain_nll.item()}
