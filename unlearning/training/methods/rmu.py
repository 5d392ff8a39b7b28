"""RMU, representation misdirection for unlearning (Li et al. 2024, WMDP, arXiv 2403.03218):
L = forget_weight * d(h_l(x_f), c * u) + alpha * d(h_l(x_r), h_l^ref(x_r)).

h_l is the output of decoder layer ``layer`` (the residual stream), u a fixed random unit vector (uniform [0, 1)
entries, normalised) drawn once from ``seed``, c the steering coefficient, and the reference the model before
forgetting (the adapter disabled). d is the squared difference averaged over the hidden size per token, then over
positions: ``answer`` (the scored tokens; each row's mean, then the mean over rows: open-unlearning's rule on chat
data) or ``attention`` (every token of the batch, padding left out: WMDP's plain MSE). Only the MLPs of layers
``layer-2 .. layer`` train (WMDP trained their ``down_proj`` weights; here their LoRA adapters).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from unlearning.data.streams import RANDOM, StreamUse
from unlearning.training.hidden_states import HiddenStates
from unlearning.training.methods.base import METHODS, Progress, StreamScores

POSITIONS = ("answer", "attention")


def control_vector(dim: int, coefficient: float, seed: int) -> torch.Tensor:
    """c * u with u = r / |r|, r ~ U[0, 1)^dim from a generator of its own: the same vector on every run, device
    and process, whatever else consumed the global random state. Shape (dim,), float32 on the CPU."""
    draw = torch.rand(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    return draw / draw.norm() * coefficient


def squared_distance(states: HiddenStates, target: torch.Tensor, positions: str) -> torch.Tensor:
    """Mean over the hidden size of (h - target)^2 per token, averaged as ``positions`` says (module docstring).
    ``target`` is (D,) or the other side's states at the same positions, (N, D). Rows without a chosen token
    count for nothing (a 0/0 would make the loss NaN)."""
    mask = states.answer if positions == "answer" else states.attention
    chosen = states.values[mask].float()
    if target.dim() == 2 and target.shape != chosen.shape:
        raise ValueError(f"rmu: {tuple(chosen.shape)} policy states at the chosen positions, but "
                         f"{tuple(target.shape)} reference states: the two passes saw different tokens")
    per_token = (chosen - target.float()).square().mean(-1)  # (N,)
    if per_token.numel() == 0:
        return states.values.sum() * 0.0  # nothing to steer in this batch: zero, still on the graph
    if positions == "attention":
        return per_token.mean()
    rows = mask.nonzero()[:, 0]
    counts = torch.bincount(rows, minlength=mask.shape[0]).to(per_token.dtype)
    sums = torch.zeros_like(counts).index_add(0, rows, per_token)
    present = counts > 0
    return (sums[present] / counts[present]).mean()


@METHODS.register("rmu")
@dataclass
class RepresentationMisdirection:
    layer: int = 7  # WMDP's layer_id (Zephyr-7B, 32 layers)
    trained_layers: list[int] | None = None  # None: layer-2 .. layer (WMDP's layer_ids 5,6,7)
    module: str = "mlp"  # under each trained layer: mlp.down_proj is WMDP's one weight (param_ids 6)
    steering_coeff: float = 20.0  # c
    alpha: float = 100.0  # retain weight
    forget_weight: float = 1.0  # open-unlearning's gamma
    positions: str = "answer"  # answer | attention
    seed: int = 42
    layer_by_model: Mapping[str, int] = field(default_factory=dict)  # read by the YAML's `layer` default only

    needs_reference = True
    reference_streams = ("retain",)

    def __post_init__(self) -> None:
        if self.positions not in POSITIONS:
            raise ValueError(f"rmu positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.layer < 0:
            raise ValueError(f"rmu layer must be a layer index (0 or more), got {self.layer}")
        layers = range(max(0, self.layer - 2), self.layer + 1) if self.trained_layers is None else self.trained_layers
        self._trained = tuple(int(i) for i in layers)
        if not self._trained:
            raise ValueError("rmu trained_layers is empty: nothing would train")
        self._vectors: dict[int, torch.Tensor] = {}

    @property
    def hidden_layers(self) -> tuple[str, ...]:
        return (f"layers.{self.layer}",)

    @property
    def trained_modules(self) -> tuple[str, ...]:
        return tuple(f"layers.{i}.{self.module}" if self.module else f"layers.{i}" for i in self._trained)

    def streams(self) -> tuple[StreamUse, ...]:
        return StreamUse("forget"), StreamUse("retain", RANDOM)

    def control(self, dim: int) -> torch.Tensor:
        """c * u for a hidden size, drawn on first use and kept (one vector for the whole run)."""
        if dim not in self._vectors:
            self._vectors[dim] = control_vector(dim, self.steering_coeff, self.seed)
        return self._vectors[dim]

    def loss(
        self, policy: StreamScores, reference: StreamScores | None, progress: Progress
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if reference is None:
            raise ValueError("rmu needs reference scores (the retain stream's hidden states before forgetting)")
        layer = self.hidden_layers[0]
        forget = policy.hidden("forget", layer)
        target = self.control(forget.values.shape[-1]).to(forget.values.device)
        forget_loss = squared_distance(forget, target, self.positions)
        retain, frozen = policy.hidden("retain", layer), reference.hidden("retain", layer)
        mask = frozen.answer if self.positions == "answer" else frozen.attention
        retain_loss = squared_distance(retain, frozen.values[mask].detach(), self.positions)
        loss = self.forget_weight * forget_loss + self.alpha * retain_loss
        return loss, {"forget_mse": forget_loss.item(), "retain_mse": retain_loss.item()}
