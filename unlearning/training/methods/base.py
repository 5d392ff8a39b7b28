"""What a forget method is: the streams it scores and a loss over their scores.

A step's batch holds one example per forget example for every stream the method consumes (see
``unlearning.data.streams``); one forward pass scores them all (a second pass through a DDP-wrapped model before
``backward`` is an error), and the reference, when needed, is the same weights with the LoRA adapters
disabled. The loss is told how far training has progressed, for weights that change over training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch

from unlearning.data.streams import StreamUse
from unlearning.inference.scoring import AnswerLogits
from unlearning.registry import Registry
from unlearning.training.progress import Progress


class StreamScores:
    """The scores of one batch, looked up by stream name."""

    def __init__(self, answer: AnswerLogits, spans: Mapping[str, tuple[int, int]]) -> None:
        self.answer, self.spans = answer, dict(spans)

    def __getitem__(self, stream: str) -> AnswerLogits:
        if stream not in self.spans:
            raise KeyError(f"stream {stream!r} is not in this batch (it holds {', '.join(self.spans)})")
        return self.answer.rows_between(*self.spans[stream])


class ForgetMethod(Protocol):
    needs_reference: bool  # score the batch with the pre-forgetting model as well
    # optional: ``needs_full_logits`` (bool), every position's logits kept for the loss (the originals' KL);
    # ``reference_streams`` (names), the streams whose reference scores the loss reads (others skip the reference pass)

    def streams(self) -> tuple[StreamUse, ...]:
        """The streams this method scores, in batch order, with their pairing."""
        ...

    def loss(
        self, policy: StreamScores, reference: StreamScores | None, progress: Progress
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to minimise and the scalar parts worth logging."""
        ...


METHODS: Registry[type] = Registry("forget method")
