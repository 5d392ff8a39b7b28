"""KL minimisation (TOFU's ``KL``): L = -NLL(forget) + retain_weight * KL(p_ref || p_theta) on retain answers.

The KL is averaged over retain *answer* tokens only. FIUBench's ``kl`` averaged it over every position of
the retain batch (padding, prompt and 576 image positions included), which dilutes it; see docs/fidelity.md.
The reference is the pre-forgetting model (LoRA adapters disabled). Typical retain_weight: 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearning.methods.base import METHODS
from unlearning.metrics.likelihood import AnswerLogits, kl_ref_to_policy, mean_nll


@METHODS.register("kl")
@dataclass
class KLMinimisation:
    retain_weight: float = 1.0

    needs_retain = True
    needs_reference = True
    forget_target = "answer"

    def loss(
        self, policy: AnswerLogits, reference: AnswerLogits | None, is_forget: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if reference is None:
            raise ValueError("kl needs reference scores")
        forget_nll = mean_nll(policy, is_forget)
        retain_kl = kl_ref_to_policy(policy, reference, ~is_forget)
        loss = -forget_nll + self.retain_weight * retain_kl
        return loss, {"forget_nll": forget_nll.item(), "retain_kl": retain_kl.item()}
