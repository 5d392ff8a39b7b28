"""Loss terms a method can add to another by configuration, and weights that change over training.

A term is a loss primitive applied to one stream with a weight: ``{loss: nll, stream: decoupled, weight: 0.5}``
is SafeEraser's Prompt-Decouple term. A weight is a number or a schedule over the training progress
(``{start: 0.3, end: 0.0, begin: 0.4}``: 0.3 until 40% of the steps, then linearly to 0, EFUF's negative weight).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from unlearning.data.streams import ALIGNED, StreamUse
from unlearning.inference.scoring import kl_ref_to_policy, mean_nll, sequence_mean_nll
from unlearning.registry import Registry
from unlearning.training.methods.base import Progress, StreamScores

SCHEDULE_KINDS = ("linear", "exp")


@dataclass(frozen=True)
class Schedule:
    """``start`` until ``begin`` (a fraction of the steps), then towards ``end`` (None: constant), reached at
    ``until``; ``kind`` linear or exponential (geometric, both ends positive)."""

    start: float
    end: float | None = None
    begin: float = 0.0
    until: float = 1.0
    kind: str = "linear"

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"schedule kind must be one of {SCHEDULE_KINDS}, got {self.kind!r}")
        if not 0.0 <= self.begin < self.until <= 1.0:
            raise ValueError(f"schedule needs 0 <= begin < until <= 1, got begin {self.begin}, until {self.until}")
        if self.kind == "exp" and self.end is not None and (self.start <= 0 or self.end <= 0):
            raise ValueError("an exponential schedule needs positive start and end")

    @property
    def always_zero(self) -> bool:
        return self.start == 0 and (self.end is None or self.end == 0)

    def at(self, progress: Progress) -> float:
        if self.end is None:
            return self.start
        t = min(max((progress.fraction - self.begin) / (self.until - self.begin), 0.0), 1.0)
        if self.kind == "exp":
            return self.start * math.exp(t * math.log(self.end / self.start))
        return self.start + (self.end - self.start) * t


def parse_schedule(value: Any, where: str) -> Schedule:
    """A number or a mapping of Schedule's fields."""
    try:
        if isinstance(value, int | float):
            return Schedule(float(value))
        if isinstance(value, Mapping):
            return Schedule(**value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from error
    raise ValueError(f"{where}: a weight is a number or a schedule mapping, got {value!r}")


@dataclass(frozen=True)
class TermLoss:
    compute: Callable[[StreamScores, StreamScores | None, str], torch.Tensor]
    needs_reference: bool = False


TERMS: Registry[TermLoss] = Registry("loss term")
TERMS.register("nll")(TermLoss(lambda policy, reference, stream: mean_nll(policy[stream])))
TERMS.register("ascent")(TermLoss(lambda policy, reference, stream: -mean_nll(policy[stream])))
TERMS.register("sequence_nll")(TermLoss(lambda policy, reference, stream: sequence_mean_nll(policy[stream])))
TERMS.register("sequence_ascent")(TermLoss(lambda policy, reference, stream: -sequence_mean_nll(policy[stream])))
TERMS.register("kl")(TermLoss(lambda policy, reference, stream: kl_ref_to_policy(policy[stream], reference[stream]),
                              needs_reference=True))


@dataclass(frozen=True)
class Term:
    """``weight * loss(stream)``: token-mean NLL (``nll``), its negation (``ascent``), the per-example mean
    (``sequence_nll`` / ``sequence_ascent``), or KL to the reference on the stream's tokens (``kl``)."""

    loss: str
    stream: str
    pairing: str = ALIGNED
    weight: Schedule = Schedule(1.0)

    @property
    def use(self) -> StreamUse:
        return StreamUse(self.stream, self.pairing)

    def value(self, policy: StreamScores, reference: StreamScores | None) -> torch.Tensor:
        return TERMS.get(self.loss).compute(policy, reference, self.stream)


def parse_term(config: Mapping[str, Any], method: str, index: int) -> Term:
    where = f"method {method!r} terms[{index}]"
    params = dict(config)
    unknown = set(params) - {"loss", "stream", "pairing", "weight"}
    if unknown or "loss" not in params or "stream" not in params:
        raise ValueError(f"{where}: a term has loss, stream, pairing (aligned|random) and weight; got {sorted(params)}")
    if params["loss"] not in TERMS:
        TERMS.get(params["loss"])  # raises, listing the known terms
    weight = parse_schedule(params.pop("weight", 1.0), f"{where} weight")
    try:
        term = Term(weight=weight, **params)
        term.use  # noqa: B018  (validates the pairing)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error
    return term
