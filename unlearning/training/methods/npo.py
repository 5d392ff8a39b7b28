"""NPO, negative preference optimisation (Zhang et al. 2024, arXiv 2404.05868):
L = (2/beta) * mean_i softplus(beta * (log p_theta(y_i|x_i) - log p_ref(y_i|x_i))) + retain_weight * NLL(retain).

log p(y|x) is summed over each forget answer's tokens (per sequence), as in the paper and open-unlearning;
MLLMU-Bench applied it once per batch to the batch-mean token NLL (``granularity="batch_token_mean"``, the compat
switch ``npo_batch_mean``). The reference is the pre-forgetting model (adapters disabled), or the model named by the
forget run's ``reference_model`` (MLLMU-Bench's "oracle"). Typical beta: 0.1-0.5. retain_weight 0 is plain NPO;
1 is NPO+RT.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearning.data.streams import RANDOM, StreamUse
from unlearning.inference.scoring import mean_nll
from unlearning.training.methods.base import METHODS, Progress, StreamScores

GRANULARITIES = ("sequence", "batch_token_mean")


@METHODS.register("npo")
@dataclass
class NegativePreference:
    beta: float = 0.1
    retain_weight: float = 0.0
    granularity: str = "sequence"  # sequence | batch_token_mean

    needs_reference = True
    reference_streams = ("forget",)

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise ValueError(f"npo beta must be positive, got {self.beta}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"npo granularity must be one of {GRANULARITIES}, got {self.granularity!r}")

    def streams(self) -> tuple[StreamUse, ...]:
        return (StreamUse("forget"), StreamUse("retain", RANDOM)) if self.retain_weight > 0 else (StreamUse("forget"),)

    def loss(
        self, policy: StreamScores, reference: StreamScores | None, progress: Progress
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if reference is None:
            raise ValueError("npo needs reference scores")
        if self.granularity == "sequence":
            log_ratio = policy["forget"].sequence_logprobs() - reference["forget"].sequence_logprobs().detach()
        else:  # one ratio per batch: the batch's token-mean NLLs
            log_ratio = (mean_nll(reference["forget"]).detach() - mean_nll(policy["forget"])).reshape(1)
        npo = (2.0 / self.beta) * F.softplus(self.beta * log_ratio).mean()
        logs = {"npo": npo.item(), "log_ratio": log_ratio.mean().item()}
        if self.retain_weight == 0:
            return npo, logs
        retain_nll = mean_nll(policy["retain"])
        logs["retain_nll"] = retain_nll.item()
        return npo + self.retain_weight * retain_nll, logs
