"""PO, preference optimisation towards refusals (TOFU's ``idk``; FIUBench's PO):
L = NLL(forget question -> refusal) + retain_weight * NLL(retain).

The benchmark's ``refusal`` stream holds each forget question with a refusal answer (``prompt.json``'s ``idk``
list from the data folder, or the toolkit's own list), aligned with its forget example. Each set's NLL is its
own token mean, so the 1:1 weighting does not depend on answer lengths; FIUBench took one token mean over the
concatenated batch (docs/fidelity.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearning.methods.base import METHODS, Progress, StreamScores
from unlearning.scoring import mean_nll
from unlearning.streams import RANDOM, StreamUse


@METHODS.register("po")
@dataclass
class RefusalPreference:
    retain_weight: float = 1.0

    needs_reference = False

    def streams(self) -> tuple[StreamUse, ...]:
        return StreamUse("refusal"), StreamUse("retain", RANDOM)

    def loss(
        self, policy: StreamScores, reference: StreamScores | None, progress: Progress
    ) -> tuple[torch.Tensor, dict[str, float]]:
        refusal_nll = mean_nll(policy["refusal"])
        retain_nll = mean_nll(policy["retain"])
        loss = refusal_nll + self.retain_weight * retain_nll
        return loss, {"refusal_nll": refusal_nll.item(), "retain_nll": retain_nll.item()}
