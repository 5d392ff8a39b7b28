"""KL minimisation (TOFU's ``KL``): L = -NLL(forget) + retain_weight * KL(p_ref || p_theta) on retain answers.

The KL is averaged over retain *answer* tokens only. FIUBench's ``kl`` averaged it over every position of
the retain batch (padding, prompt and 576 image positions included), which dilutes it; see docs/fidelity.md.
The reference is the pre-forgetting model (LoRA adapters disabled). Typical retain_weight: 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearning.methods.base import METHODS, Progress, StreamScores
from unlearning.scoring import kl_ref_to_policy, mean_nll
from unlearning.streams import RANDOM, StreamUse


@METHODS.register("kl")
@dataclass
class KLMinimisation:
    retain_weight: float = 1.0

    needs_reference = True

    def streams(self) -> tuple[StreamUse, ...]:
        return StreamUse("forget"), StreamUse("retain", RANDOM)

    def loss(
        self, policy: StreamScores, reference: StreamScores | None, progress: Progress
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if reference is None:
            raise ValueError("kl needs reference scores")
        forget_nll = mean_nll(policy["forget"])
        retain_kl = kl_ref_to_policy(policy["retain"], reference["retain"])
        loss = -forget_nll + self.retain_weight * retain_kl
        return loss, {"forget_nll": forget_nll.item(), "retain_kl": retain_kl.item()}
