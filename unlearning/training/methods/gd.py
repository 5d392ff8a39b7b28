"""GD, gradient difference (Liu et al. 2022; TOFU's ``grad_diff``): L = -NLL(forget) + retain_weight * NLL(retain).

Checked against FIUBench ``forget.py`` (``gd``, weights 1:1). Forget and retain rows come from one
batch and one optimiser step; ``sequential_passes`` gives MLLMU-Bench's GA_Diff form (every forget batch ascends,
then every retain batch descends: ``passes=sequential``, its compat switch ``sequential_passes``).
Typical retain_weight: 1.0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from unlearning.data.streams import RANDOM, StreamUse
from unlearning.inference.scoring import mean_nll
from unlearning.training.methods.base import METHODS, Progress, StreamScores


@METHODS.register("gd")
@dataclass
class GradientDifference:
    retain_weight: float = 1.0

    needs_reference = False

    def streams(self) -> tuple[StreamUse, ...]:
        return StreamUse("forget"), StreamUse("retain", RANDOM)

    def loss(
        self, policy: StreamScores, reference: StreamScores | None, progress: Progress
    ) -> tuple[torch.Tensor, dict[str, float]]:
        forget_nll = mean_nll(policy["forget"])
        retain_nll = mean_nll(policy["retain"])
        loss = -forget_nll + self.retain_weight * retain_nll
        return loss, {"forget_nll": forget_nll.item(), "retain_nll": retain_nll.item()}

    def sequential_passes(self) -> dict[str, Callable[[StreamScores, StreamScores | None], torch.Tensor]]:
        return {"forget": lambda policy, reference: -mean_nll(policy["forget"]),
                "retain": lambda policy, reference: self.retain_weight * mean_nll(policy["retain"])}
