"""MMUnlearner (Huo et al. 2025, arXiv 2502.11051): gradient ascent on the forget set through a fixed saliency
mask, plus the retain NLL:  L = -forget_weight * NLL(forget) [gradient masked] + retain_weight * NLL(retain).

Before training, a preparation pass estimates each trainable parameter's Fisher diagonal on the forget and the retain
stream: the mean over batches of the squared gradient of the batch's token-mean NLL. An entry is kept (mask 1)
where (F_forget + 1e-15) / (F_retain + 1e-15) >= threshold: it matters more to the forget set than to what stays.
The mask applies to the forget term's gradient only; the retain NLL moves every trainable entry, as in the original,
whose forget and retain updates were separate optimiser steps. Here both terms share one step (or, with
``passes=sequential``, alternate as the original did), and the forget gradient is masked by taking it apart with
``torch.autograd.grad``: one extra backward pass over the step's graph.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from unlearning.data.streams import RANDOM, StreamUse
from unlearning.inference.scoring import mean_nll
from unlearning.training.methods.base import METHODS, Progress, StreamScores
from unlearning.training.preparation import Preparation

log = logging.getLogger(__name__)

EPSILON = 1e-15  # SFRon.py's, on both sides of the ratio: entries no stream's gradient reaches have ratio 1
FISHER_STREAMS = ("forget", "retain")


def fisher_diagonal(preparation: Preparation, stream: str, parameters: Mapping[str, torch.nn.Parameter]
                    ) -> dict[str, torch.Tensor]:
    """Mean over the stream's batches of each parameter's squared gradient of the batch's mean NLL (float32, on the
    parameter's device). Gradients are taken with ``torch.autograd.grad``, one batch at a time: ``.grad`` is left
    alone and nothing per example is kept. Dropout is off while it runs, so the estimate repeats."""
    names, tensors = list(parameters), list(parameters.values())
    sums = [torch.zeros_like(tensor, dtype=torch.float32) for tensor in tensors]
    batches = 0
    was_training = preparation.model.training
    preparation.model.eval()
    try:
        for batch in preparation.batches(stream):
            answer, _ = preparation.forward(batch)
            grads = torch.autograd.grad(mean_nll(answer), tensors, allow_unused=True)
            for total, grad in zip(sums, grads, strict=True):
                if grad is not None:
                    total.add_(grad.float().square())
            batches += 1
    finally:
        preparation.model.train(was_training)
    if batches == 0:
        raise ValueError(f"mmunlearner: the {stream} stream is empty; its Fisher diagonal cannot be estimated")
    return {name: total / batches for name, total in zip(names, sums, strict=True)}


def saliency_masks(forget: Mapping[str, torch.Tensor], retain: Mapping[str, torch.Tensor], threshold: float
                   ) -> dict[str, torch.Tensor]:
    """1 where (F_forget + eps) / (F_retain + eps) >= threshold, else 0 (float32), per parameter."""
    if set(forget) != set(retain):
        raise ValueError(f"mmunlearner: Fisher diagonals for different parameters on forget and retain "
                         f"({sorted(set(forget) ^ set(retain))[:3]})")
    return {name: ((forget[name] + EPSILON) / (retain[name] + EPSILON) >= threshold).float() for name in forget}


def masked_gradient(term: torch.Tensor, bound: list[tuple[torch.nn.Parameter, torch.Tensor]]) -> torch.Tensor:
    """``term`` with the same value whose gradient reaches each bound parameter multiplied by its mask: the
    gradient is computed here (the graph kept for the rest of the loss) and handed back through a surrogate,
    sum <mask * grad, p>, whose derivative in p is exactly mask * grad."""
    parameters = [parameter for parameter, _ in bound]
    grads = torch.autograd.grad(term, parameters, retain_graph=True, allow_unused=True)
    pieces = [(grad * mask.to(grad.dtype)).mul(parameter).sum()
              for (parameter, mask), grad in zip(bound, grads, strict=True) if grad is not None]
    if not pieces:
        return term
    surrogate = torch.stack([piece.float() for piece in pieces]).sum()
    return term.detach() + (surrogate - surrogate.detach()).to(term.dtype)


@METHODS.register("mmunlearner")
@dataclass
class MMUnlearner:
    threshold: float = 1.0  # SFRon.py's threshold=1 (MLLMU_gen_mask.py)
    forget_weight: float = 1.0  # MLLMU_manifold.py's forget_alpha
    retain_weight: float = 1.0

    needs_reference = False
    preparation_settings = ()  # the Fisher diagonals depend on none of them: a new threshold reuses them

    def __post_init__(self) -> None:
        if self.threshold <= 0:
            raise ValueError(f"mmunlearner threshold must be positive, got {self.threshold}")
        self.masks: dict[str, torch.Tensor] = {}
        self._bound: list[tuple[torch.nn.Parameter, torch.Tensor]] | None = None

    def streams(self) -> tuple[StreamUse, ...]:
        return StreamUse("forget"), StreamUse("retain", RANDOM)

    def prepare(self, preparation: Preparation) -> dict[str, torch.Tensor]:
        """Both Fisher diagonals over the trainable parameters, keyed ``<stream>:<parameter name>``."""
        parameters = {name: p for name, p in preparation.model.named_parameters() if p.requires_grad}
        if not parameters:
            raise ValueError("mmunlearner: the model has no trainable parameter to estimate a Fisher diagonal for")
        statistics = {}
        for stream in FISHER_STREAMS:
            for name, value in fisher_diagonal(preparation, stream, parameters).items():
                statistics[f"{stream}:{name}"] = value
        return statistics

    def use_statistics(self, statistics: Mapping[str, torch.Tensor]) -> None:
        by_stream: dict[str, dict[str, torch.Tensor]] = {stream: {} for stream in FISHER_STREAMS}
        for key, value in statistics.items():
            stream, _, name = key.partition(":")
            if stream not in by_stream:
                raise ValueError(f"mmunlearner: unexpected statistic {key!r}")
            by_stream[stream][name] = value
        self.masks = saliency_masks(by_stream["forget"], by_stream["retain"], self.threshold)

    def gradient_masks(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Binds the masks to the model's parameters for the loss; hands the engine none, since its masks would
        cover the retain gradient too (its weight decay 0 is the original's: transformers' AdamW)."""
        trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
        if set(trainable) != set(self.masks):
            missing = sorted(set(trainable) ^ set(self.masks))[:3]
            raise ValueError(f"mmunlearner: the Fisher statistics do not match the trainable parameters (e.g. "
                             f"{missing}); were they computed for another model or tuning?")
        bound = []
        for name, parameter in trainable.items():
            mask = self.masks[name]
            if mask.shape != parameter.shape:
                raise ValueError(f"mmunlearner: mask for {name!r} has shape {tuple(mask.shape)}, the parameter "
                                 f"{tuple(parameter.shape)}")
            bound.append((parameter, mask.to(parameter.device)))
        self._bound = bound
        kept, total = sum(int(m.sum()) for m in self.masks.values()), sum(m.numel() for m in self.masks.values())
        log.info("mmunlearner: the forget gradient keeps %d of %d entries (%.1f%%) at threshold %g", kept, total,
                 100.0 * kept / max(total, 1), self.threshold)
        return {}

    def ascent(self, policy: StreamScores) -> tuple[torch.Tensor, torch.Tensor]:
        """The forget term (gradient masked) and the forget NLL."""
        if self._bound is None:
            raise RuntimeError("mmunlearner: its masks are not bound to a model (gradient_masks was not called)")
        forget_nll = mean_nll(policy["forget"])
        term = -self.forget_weight * forget_nll
        return (masked_gradient(term, self._bound) if term.requires_grad else term), forget_nll

    def loss(
        self, policy: StreamScores, reference: StreamScores | None, progress: Progress
    ) -> tuple[torch.Tensor, dict[str, float]]:
        ascent, forget_nll = self.ascent(policy)
        retain_nll = mean_nll(policy["retain"])
        loss = ascent + self.retain_weight * retain_nll
        return loss, {"forget_nll": forget_nll.item(), "retain_nll": retain_nll.item()}

    def sequential_passes(self) -> dict[str, Callable[[StreamScores, StreamScores | None], torch.Tensor]]:
        """The original's alternation: a masked ascent step per forget batch, an unmasked step per retain batch."""
        return {"forget": lambda policy, reference: self.ascent(policy)[0],
                "retain": lambda policy, reference: self.retain_weight * mean_nll(policy["retain"])}
