"""KL minimisation (TOFU's ``KL``): L = -NLL(forget) + retain_weight * KL(p_ref || p_theta) on retain answers.

The KL is averaged over retain *answer* tokens only. The originals took it over every position of the retain
batch (padding, prompt and 576 image positions included), which dilutes it (docs/fidelity.md); ``reduction``
reproduces them (compat switches ``kl_over_all_positions``, ``kl_min``): ``all_positions`` (FIUBench, SafeEraser:
the mean over B*T positions), ``all_positions_per_row`` (MLLMU-Bench's KL_Min: their sum over B rows, plus
``retain_nll`` x NLL(retain)).
The reference is the pre-forgetting model (LoRA adapters disabled). Typical retain_weight: 1.0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from unlearning.data.streams import RANDOM, StreamUse
from unlearning.inference.scoring import kl_all_positions, kl_ref_to_policy, mean_nll
from unlearning.training.methods.base import METHODS, Progress, StreamScores

REDUCTIONS = {"answer_tokens": None, "all_positions": "position", "all_positions_per_row": "row"}


@METHODS.register("kl")
@dataclass
class KLMinimisation:
    retain_weight: float = 1.0
    reduction: str = "answer_tokens"  # answer_tokens | all_positions | all_positions_per_row
    retain_nll: float = 0.0  # MLLMU-Bench's KL_Min adds the retain NLL

    needs_reference = True
    reference_streams = ("retain",)

    def __post_init__(self) -> None:
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"kl reduction must be one of {tuple(REDUCTIONS)}, got {self.reduction!r}")

    @property
    def needs_full_logits(self) -> bool:
        return self.reduction != "answer_tokens"

    def streams(self) -> tuple[StreamUse, ...]:
        return StreamUse("forget"), StreamUse("retain", RANDOM)

    def loss(
        self, policy: StreamScores, reference: StreamScores | None, progress: Progress
    ) -> tuple[torch.Tensor, dict[str, float]]:
        forget_nll = mean_nll(policy["forget"])
        retain_kl = self._retain_kl(policy, reference)
        loss = -forget_nll + self.retain_weight * retain_kl
        logs = {"forget_nll": forget_nll.item(), "retain_kl": retain_kl.item()}
        if self.retain_nll:
            retain_nll = mean_nll(policy["retain"])
            loss = loss + self.retain_nll * retain_nll
            logs["retain_nll"] = retain_nll.item()
        return loss, logs

    def _retain_kl(self, policy: StreamScores, reference: StreamScores | None) -> torch.Tensor:
        if reference is None:
            raise ValueError("kl needs reference scores")
        if self.reduction == "answer_tokens":
            return kl_ref_to_policy(policy["retain"], reference["retain"])
        return kl_all_positions(policy["retain"], reference["retain"], REDUCTIONS[self.reduction])

    def _retain_loss(self, policy: StreamScores, reference: StreamScores | None) -> torch.Tensor:
        loss = self.retain_weight * self._retain_kl(policy, reference)
        return loss + self.retain_nll * mean_nll(policy["retain"]) if self.retain_nll else loss

    def sequential_passes(self) -> dict[str, Callable[[StreamScores, StreamScores | None], torch.Tensor]]:
        """MLLMU-Bench's KL_Min form: every forget batch ascends, then every retain batch takes the KL (+ NLL)."""
        return {"forget": lambda policy, reference: -mean_nll(policy["forget"]), "retain": self._retain_loss}
