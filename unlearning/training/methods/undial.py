"""UNDIAL, self-distillation with adjusted logits (Dong et al., NAACL 2025, arXiv 2402.10052): the model is
distilled towards its own starting distribution with the answer token's logit lowered, so the forgotten token loses
probability while the rest of the distribution (and fluency) is kept, rather than pushed down without bound as GA:

    q_t = softmax(z_ref,t - beta * onehot(y_t))
    L = forget_weight * mean_t [ -sum_v q_t(v) log p_theta,t(v) ] + retain_weight * NLL(retain)

over the forget answer tokens t, z_ref the logits of the model before forgetting (the LoRA adapters disabled) at the
same positions. Defaults follow open-unlearning (``compute_undial_loss`` in ``src/trainer/utils.py``,
``UNDIAL.yaml``: beta 10, no retain term), which takes the mean over every position of the batch instead (prompt
and padding too); ours scores the answer tokens only, as the paper describes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearning.data.streams import RANDOM, StreamUse
from unlearning.inference.scoring import AnswerLogits, mean_nll
from unlearning.training.methods.base import METHODS, Progress, StreamScores


def adjusted_targets(reference: AnswerLogits, beta: float) -> torch.Tensor:
    """The reference's distribution with each scored token's logit lowered by ``beta``, (N, V): the teacher."""
    logits = reference.logits.detach().clone()
    logits[torch.arange(len(reference.targets), device=logits.device), reference.targets] -= beta
    return torch.softmax(logits, dim=-1)


@METHODS.register("undial")
@dataclass
class AdjustedSelfDistillation:
    beta: float = 10.0  # how far the answer token's logit is lowered (the paper's gamma)
    forget_weight: float = 1.0  # open-unlearning's gamma
    retain_weight: float = 0.0  # open-unlearning's alpha; the paper uses no retain set

    needs_reference = True
    reference_streams = ("forget",)

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ValueError(f"undial beta must be non-negative, got {self.beta}")

    def streams(self) -> tuple[StreamUse, ...]:
        return (StreamUse("forget"), StreamUse("retain", RANDOM)) if self.retain_weight else (StreamUse("forget"),)

    def loss(
        self, policy: StreamScores, reference: StreamScores | None, progress: Progress
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if reference is None:
            raise ValueError("undial needs reference scores")
        student, teacher = policy["forget"], reference["forget"]
        if not torch.equal(student.targets, teacher.targets.to(student.targets.device)):
            raise ValueError("undial: the reference scored other tokens than the model (batches differ)")
        targets = adjusted_targets(teacher, self.beta).to(student.logits.device)
        undial = -(targets * F.log_softmax(student.logits, dim=-1)).sum(-1).mean()
        loss = self.forget_weight * undial
        logs = {"undial": undial.item()}
        if self.retain_weight:
            retain_nll = mean_nll(policy["retain"])
            loss = loss + self.retain_weight * retain_nll
            logs["retain_nll"] = retain_nll.item()
        return loss, logs
