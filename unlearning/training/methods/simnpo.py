"""SimNPO, simple negative preference optimisation (Fan et al. 2024, arXiv 2410.07163): NPO without a reference
model, the forget answer's log-likelihood normalised by its length so long answers are not over-weighted:

    L = forget_weight * (2/beta) * mean_i softplus(-beta * (NLL_i / |y_i| - delta)) + retain_weight * NLL(retain)

where NLL_i is the summed NLL of forget answer i (``-sequence_logprobs``) and |y_i| its scored tokens; softplus(-x)
is -log sigmoid(x). The form and defaults follow open-unlearning (``src/trainer/unlearn/simnpo.py``,
``configs/trainer/SimNPO.yaml``): its ``delta`` is the margin (the paper's gamma = beta * delta), its ``gamma`` is
our ``forget_weight`` and its ``alpha`` our ``retain_weight``. The retain term is the token-mean NLL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearning.data.streams import RANDOM, StreamUse
from unlearning.inference.scoring import mean_nll
from unlearning.training.methods.base import METHODS, Progress, StreamScores


@METHODS.register("simnpo")
@dataclass
class SimplePreference:
    beta: float = 4.5
    delta: float = 0.0  # margin on the length-normalised NLL (the paper's gamma is beta * delta)
    forget_weight: float = 0.125  # open-unlearning's gamma (Unlearn-Simple's npo_coeff)
    retain_weight: float = 1.0  # open-unlearning's alpha; 0 drops the retain stream

    needs_reference = False

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise ValueError(f"simnpo beta must be positive, got {self.beta}")

    def streams(self) -> tuple[StreamUse, ...]:
        return (StreamUse("forget"), StreamUse("retain", RANDOM)) if self.retain_weight else (StreamUse("forget"),)

    def loss(
        self, policy: StreamScores, reference: StreamScores | None, progress: Progress
    ) -> tuple[torch.Tensor, dict[str, float]]:
        forget = policy["forget"]
        normalised_nll = -forget.sequence_logprobs() / forget.token_counts().clamp_min(1.0)
        simnpo = (2.0 / self.beta) * F.softplus(-self.beta * (normalised_nll - self.delta)).mean()
        loss = self.forget_weight * simnpo
        logs = {"simnpo": simnpo.item(), "forget_nll": normalised_nll.mean().item()}
        if self.retain_weight:
            retain_nll = mean_nll(policy["retain"])
            loss = loss + self.retain_weight * retain_nll
            logs["retain_nll"] = retain_nll.item()
        return loss, logs
