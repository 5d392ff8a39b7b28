"""IdkDPO, direct preference optimisation towards refusals (TOFU's ``dpo``, Maini et al. 2024, arXiv 2401.06121;
DPO: Rafailov et al. 2023): each forget question's refusal is the preferred answer, its forget answer the rejected
one, against the model before forgetting (the LoRA adapters disabled, as npo):

    r(y) = log p_theta(y|x) - log p_ref(y|x)   (summed over y's tokens)
    L = forget_weight * (2/beta) * mean_i softplus(-beta * (r(refusal_i) - r(forget_i))) + retain_weight * NLL(retain)

The form and defaults follow open-unlearning (``compute_dpo_loss`` in ``src/trainer/utils.py``, ``DPO.yaml``), whose
2/beta scale TOFU's original did not have. The refusals are the benchmark's ``refusal`` stream, aligned with the
forget examples, as for po; a benchmark without one is refused before any model loads, naming the benchmarks that
provide it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearning.data.streams import RANDOM, StreamUse
from unlearning.inference.scoring import mean_nll
from unlearning.training.methods.base import METHODS, Progress, StreamScores


@METHODS.register("idkdpo")
@dataclass
class RefusalDPO:
    beta: float = 0.1
    forget_weight: float = 1.0  # open-unlearning's gamma
    retain_weight: float = 1.0  # open-unlearning's alpha; 0 drops the retain stream

    needs_reference = True
    reference_streams = ("forget", "refusal")

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise ValueError(f"idkdpo beta must be positive, got {self.beta}")

    def streams(self) -> tuple[StreamUse, ...]:
        uses = (StreamUse("forget"), StreamUse("refusal"))
        return (*uses, StreamUse("retain", RANDOM)) if self.retain_weight else uses

    def loss(
        self, policy: StreamScores, reference: StreamScores | None, progress: Progress
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if reference is None:
            raise ValueError("idkdpo needs reference scores")
        chosen = policy["refusal"].sequence_logprobs() - reference["refusal"].sequence_logprobs().detach()
        rejected = policy["forget"].sequence_logprobs() - reference["forget"].sequence_logprobs().detach()
        dpo = (2.0 / self.beta) * F.softplus(-self.beta * (chosen - rejected)).mean()
        loss = self.forget_weight * dpo
        logs = {"idkdpo": dpo.item(), "refusal_log_ratio": chosen.mean().item(),
                "forget_log_ratio": rejected.mean().item()}
        if self.retain_weight:
            retain_nll = mean_nll(policy["retain"])
            loss = loss + self.retain_weight * retain_nll
            logs["retain_nll"] = retain_nll.item()
        return loss, logs
