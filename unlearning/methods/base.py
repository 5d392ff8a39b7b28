"""What a forget method is: a loss over one paired forget/retain batch.

A step's batch holds the forget examples first and, when the method asks for them, as many retain
examples after them; ``is_forget`` marks the rows. One forward pass scores both (a second pass through a
DDP-wrapped model before ``backward`` is an error), and the reference, when needed, is the same weights
with the LoRA adapters disabled.
"""

from __future__ import annotations

from typing import Protocol

import torch

from unlearning.metrics.likelihood import AnswerLogits
from unlearning.registry import Registry


class ForgetMethod(Protocol):
    needs_retain: bool  # pair each forget example with a retain example
    needs_reference: bool  # score the batch with the pre-forgetting model as well
    forget_target: str  # "answer": train on the forget answers; "refusal": replace them with refusals

    def loss(
        self, policy: AnswerLogits, reference: AnswerLogits | None, is_forget: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to minimise and the scalar parts worth logging."""
        ...


METHODS: Registry[type] = Registry("forget method")
