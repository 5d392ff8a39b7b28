"""WGA, weighted gradient ascent (Wang et al., ICLR 2025, arXiv 2502.19301): gradient ascent where each forget
token's NLL is weighted by the model's own (detached) probability of it, so tokens already forgotten stop pushing
and the ascent does not run away on them:

    L = -forget_weight * mean_t [ sg(p_theta(y_t))^beta * CE_t ] + retain_weight * NLL(retain)

mean over all forget answer tokens of the batch, sg stop-gradient, CE_t = -log p_theta(y_t). Form and defaults
follow open-unlearning (``compute_wga_loss`` in ``src/trainer/utils.py``, ``WGA.yaml``: beta 1, weights 1:1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearning.data.streams import RANDOM, StreamUse
from unlearning.inference.scoring import mean_nll
from unlearning.training.methods.base import METHODS, Progress, StreamScores


@METHODS.register("wga")
@dataclass
class WeightedGradientAscent:
    beta: float = 1.0  # the weight's exponent: 0 is plain gradient ascent
    forget_weight: float = 1.0  # open-unlearning's gamma
    retain_weight: float = 1.0  # open-unlearning's alpha; 0 drops the retain stream

    needs_reference = False

    def streams(self) -> tuple[StreamUse, ...]:
        return (StreamUse("forget"), StreamUse("retain", RANDOM)) if self.retain_weight else (StreamUse("forget"),)

    def loss(
        self, policy: StreamScores, reference: StreamScores | None, progress: Progress
    ) -> tuple[torch.Tensor, dict[str, float]]:
        token_logprobs = policy["forget"].token_logprobs()
        if token_logprobs.numel() == 0:
            raise ValueError("no scored tokens")
        weights = token_logprobs.detach().exp().pow(self.beta)
        wga = (weights * token_logprobs).mean()  # -mean(w * CE)
        loss = self.forget_weight * wga
        logs = {"wga": wga.item(), "forget_nll": -token_logprobs.mean().item()}
        if self.retain_weight:
            retain_nll = mean_nll(policy["retain"])
            loss = loss + self.retain_weight * retain_nll
            logs["retain_nll"] = retain_nll.item()
        return loss, logs
