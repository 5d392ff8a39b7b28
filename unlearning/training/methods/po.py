"""PO, preference optimisation towards refusals (TOFU's ``idk``; FIUBench's PO):
L = NLL(forget question -> refusal) + retain_weight * NLL(retain).

The benchmark's ``refusal`` stream holds each forget question with a refusal answer (``prompt.json``'s ``idk``
list from the data folder, or the toolkit's own list), aligned with its forget example. Each set's NLL is its
own token mean, so the 1:1 weighting does not depend on answer lengths. ``joint=True`` is the originals' (FIUBench,
SafeEraser): one token mean over the refusal and retain answers together, where the longer set weighs more
(compat switch ``po_joint_mean``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearning.data.streams import RANDOM, StreamUse
from unlearning.inference.scoring import mean_nll
from unlearning.training.methods.base import METHODS, Progress, StreamScores


@METHODS.register("po")
@dataclass
class RefusalPreference:
    retain_weight: float = 1.0
    joint: bool = False  # one token mean over both sets (the originals' concatenated batch)

    needs_reference = False

    def streams(self) -> tuple[StreamUse, ...]:
        return StreamUse("refusal"), StreamUse("retain", RANDOM)

    def loss(
        self, policy: StreamScores, reference: StreamScores | None, progress: Progress
    ) -> tuple[torch.Tensor, dict[str, float]]:
        refusal, retain = policy["refusal"], policy["retain"]
        refusal_nll, retain_nll = mean_nll(refusal), mean_nll(retain)
        if self.joint:
            tokens = torch.cat([-refusal.token_logprobs(), -self.retain_weight * retain.token_logprobs()])
            loss = tokens.mean()
        else:
            loss = refusal_nll + self.retain_weight * retain_nll
        return loss, {"refusal_nll": refusal_nll.item(), "retain_nll": retain_nll.item()}
