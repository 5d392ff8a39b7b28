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
from unlearning.training.hidden_states import HiddenStates
from unlearning.training.progress import Progress


class StreamScores:
    """The scores of one batch, looked up by stream name; with the hidden states of the layers the method names
    (``hidden_layers``), looked up by stream and layer."""

    def __init__(self, answer: AnswerLogits, spans: Mapping[str, tuple[int, int]],
                 hidden: Mapping[str, HiddenStates] | None = None) -> None:
        self.answer, self.spans, self._hidden = answer, dict(spans), dict(hidden or {})

    def __getitem__(self, stream: str) -> AnswerLogits:
        return self.answer.rows_between(*self._span(stream))

    def hidden(self, stream: str, layer: str) -> HiddenStates:
        """``layer``'s output (a name from the method's ``hidden_layers``) for the stream's rows."""
        if layer not in self._hidden:
            raise KeyError(f"layer {layer!r} was not captured (the method's hidden_layers: {', '.join(self._hidden)})")
        return self._hidden[layer].rows_between(*self._span(stream))

    def _span(self, stream: str) -> tuple[int, int]:
        if stream not in self.spans:
            raise KeyError(f"stream {stream!r} is not in this batch (it holds {', '.join(self.spans)})")
        return self.spans[stream]


class ForgetMethod(Protocol):
    needs_reference: bool  # score the batch with the pre-forgetting model as well
    # optional: ``needs_full_logits`` (bool), every position's logits kept for the loss (the originals' KL);
    # ``reference_streams`` (names), the streams whose reference scores the loss reads (others skip the reference
    # pass); ``hidden_layers`` (paths under the language model, e.g. "layers.7"), layers whose outputs the loss reads
    # (``StreamScores.hidden``); ``trained_modules`` (paths under the language model), the only modules whose
    # trainable parameters train; ``prepare(preparation)`` -> statistics (tensors by name), computed once over the
    # streams before training (``unlearning.training.preparation``) and handed to ``use_statistics``;
    # ``gradient_masks(model)`` -> {parameter name: 0/1 mask}, applied to every step's gradients (masked entries
    # never move); ``trains = False`` with ``edit(model)``: a training-free method that edits the weights once.

    def streams(self) -> tuple[StreamUse, ...]:
        """The streams this method scores, in batch order, with their pairing."""
        ...

    def loss(
        self, policy: StreamScores, reference: StreamScores | None, progress: Progress
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to minimise and the scalar parts worth logging."""
        ...


METHODS: Registry[type] = Registry("forget method")
