"""The relearning attack: fine-tune the evaluated model for a few steps on one half of the forget set, then measure
the forget metrics on the other half.

Knowledge that unlearning only hid comes back after a few gradient steps on related data (Hu et al. 2024, "Jogging
the memory of unlearned LLMs"; Lynch et al. 2024, "Eight methods to evaluate robust unlearning in LLMs").
Relearning on the very facts that are then tested would measure how fast they are learnt again, which a model that
never knew them also does; so, as Deeb & Roger (2024, "Do unlearning methods remove information from language model
weights?") argue, the forget set is split into two halves of independent facts: the model relearns one half and is
tested on the other. The unit of the split is the benchmark's unit of independence (the one its bootstrap
resamples: FIUBench identity, MLLMU-Bench profile, SafeEraser record), so no fact of an evaluated unit is trained
on. The same relearning on the reference model (retain-only or vanilla) is the baseline.

The forget metrics on the evaluation half come from the benchmark's own ``Evaluation.resample``: one "resample"
weighing every evaluated unit once and every relearned unit zero gives each table field on the evaluation half,
computed by the benchmark's code (no per-benchmark code here); its confidence intervals resample the evaluation
half alone.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from unlearning.data.examples import Example
from unlearning.evaluation.intervals import (
    PointResampler,
    Replicate,
    Resampler,
    RestrictedResampler,
    with_values,
)
from unlearning.evaluation.runner import EvalContext, Evaluation, LazyModel
from unlearning.runs.fingerprint import content_hash

log = logging.getLogger(__name__)

PREFIX = "relearn"
PARTS = ("language_model", "projector", "vision_tower")


class RelearnError(ValueError):
    """Relearning that cannot be run as asked; the message says what to change."""


def budget_name(steps: int) -> str:
    """The attack name of one budget (its folder under ``eval/attacks/``)."""
    return f"{PREFIX}_{steps}"


def budget_of(name: str) -> int | None:
    """The steps of a ``relearn_<steps>`` attack name, else None."""
    head, _, tail = str(name).partition("_")
    return int(tail) if head == PREFIX and tail.isdigit() else None


@dataclass(frozen=True)
class RelearnOptions:
    """``attacks.relearn`` in the eval config. ``lr`` None: the benchmark recipe's (set by the evaluation command)."""

    steps: tuple[int, ...] = (0, 5, 10, 20)  # the budgets: optimiser steps, one attack each
    lr: float | None = None
    lora: bool = False  # False: the ``tune`` parts fully trained; True: a LoRA on the language model
    lora_r: int = 8
    lora_alpha: int = 16
    batch_size: int = 4
    fraction: float = 0.5  # of the forget set's units relearned; the others are evaluated
    seed: int = 0
    tune: tuple[str, ...] = ("language_model", "projector")

    def __post_init__(self) -> None:
        steps = self.steps
        if isinstance(steps, int) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in steps):
            raise RelearnError(f"attacks.relearn.steps must be a list of whole numbers >= 0, got {steps!r}")
        if not steps or len(set(steps)) != len(steps):
            raise RelearnError(f"attacks.relearn.steps must list distinct budgets, got {list(steps)}")
        object.__setattr__(self, "steps", tuple(steps))
        if self.lr is not None and (isinstance(self.lr, bool) or not isinstance(self.lr, int | float) or self.lr <= 0):
            raise RelearnError(f"attacks.relearn.lr must be a positive number (or null), got {self.lr!r}")
        for name in ("lora_r", "lora_alpha", "batch_size", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
                raise RelearnError(f"attacks.relearn.{name} must be a whole number >= {0 if name == 'seed' else 1}, "
                                   f"got {value!r}")
        if not isinstance(self.lora, bool):
            raise RelearnError(f"attacks.relearn.lora must be true or false, got {self.lora!r}")
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, int | float) or not 0 < self.fraction < 1:
            raise RelearnError(f"attacks.relearn.fraction must lie strictly between 0 and 1, got {self.fraction!r}")
        tune = (tuple(part for part, on in self.tune.items() if on) if isinstance(self.tune, Mapping)  # the recipe's
                else tuple(self.tune))
        if not tune or set(tune) - set(PARTS):
            raise RelearnError(f"attacks.relearn.tune must name some of {PARTS}, got {self.tune!r}")
        object.__setattr__(self, "tune", tune)

    def training(self) -> dict[str, Any]:
        """What the relearned weights rest on besides the data and the budget."""
        out: dict[str, Any] = {"lr": self.lr, "batch_size": self.batch_size, "seed": self.seed, "tune": list(self.tune),
                               "lora": self.lora, "optimizer": "adamw", "scheduler": "constant",
                               "weight_decay": 0.0, "max_grad_norm": 1.0}
        if self.lora:
            out.update(lora_r=self.lora_r, lora_alpha=self.lora_alpha)
        return out


def unit_of(example: Example) -> str:
    """The unit a forget example belongs to: its uid up to the last ``/`` (``<identity>/<qa>``,
    ``<profile>/<index>``, ``<split>/<record>/<pair>``); a benchmark whose uids say otherwise defines ``unit_of``."""
    unit, slash, _ = example.uid.rpartition("/")
    if not slash or not unit:
        raise RelearnError(f"forget example uid {example.uid!r} names no unit (<unit>/<index>): the benchmark must "
                           "define unit_of(example) for the relearning attack")
    return unit


@dataclass(frozen=True)
class RelearnSplit:
    """The forget set's units in two disjoint halves: relearned (with their examples) and evaluated."""

    relearn_units: tuple[str, ...]
    eval_units: tuple[str, ...]
    examples: tuple[Example, ...]  # the relearned half's forget examples, in the forget set's order

    def __post_init__(self) -> None:
        shared = set(self.relearn_units) & set(self.eval_units)
        if shared:
            raise RelearnError(f"relearn split: units {sorted(shared)[:5]} are in both halves")

    @functools.cached_property
    def key(self) -> dict[str, Any]:
        """Hashed once (the examples' images by their bytes), however many runs and budgets are keyed with it."""
        return {"relearn_units": content_hash(list(self.relearn_units)), "n_relearn": len(self.relearn_units),
                "n_eval": len(self.eval_units), "examples": content_hash(list(self.examples))}

    def fingerprint(self) -> dict[str, Any]:
        return dict(self.key)


def split_forget(examples: Sequence[Example], fraction: float, seed: int,
                 unit: Callable[[Example], str] = unit_of) -> RelearnSplit:
    """Draw ``fraction`` of the forget set's units (seeded, from their sorted names) to relearn; the rest are
    evaluated. Each half keeps at least one unit."""
    units = sorted({unit(example) for example in examples})
    if len(units) < 2:
        raise RelearnError(f"the relearning attack splits the forget set's units in two; it has {len(units)}")
    k = min(len(units) - 1, max(1, round(fraction * len(units))))
    relearn = set(random.Random(seed).sample(units, k))
    return RelearnSplit(tuple(u for u in units if u in relearn), tuple(u for u in units if u not in relearn),
                        tuple(example for example in examples if unit(example) in relearn))


@dataclass(frozen=True)
class Relearn:
    """One budget of the attack, ready to run once the split and the model's module paths are set."""

    steps: int
    options: RelearnOptions
    split: RelearnSplit | None = None
    modules: Mapping[str, Sequence[str]] | None = None  # model.modules: the module paths of each part
    lora_targets: tuple[str, ...] = ()
    strata: tuple[str, ...] = ("forget",)  # the bootstrap strata of the forget units (benchmark.robustness)

    def fingerprint(self) -> dict[str, Any]:
        if self.split is None:
            raise RelearnError("relearn attack: the forget set was not split yet")
        return {"steps": self.steps, **self.options.training(), "fraction": self.options.fraction,
                "split": self.split.fingerprint()}


def relearn_model(model: torch.nn.Module, collate: Callable[[list[Example]], dict[str, Any]], relearn: Relearn,
                  accelerator: Accelerator) -> torch.nn.Module:
    """A relearned copy of ``model`` (never changed itself): plain NLL on the relearned half's forget examples for
    ``relearn.steps`` optimiser steps with the engine's training loop; a LoRA is merged back."""
    from unlearning.inference.scoring import forward_answer_logits, mean_nll
    from unlearning.models.loading import apply_lora, freeze_all_but, tuned_prefixes
    from unlearning.training.trainer import TrainSettings, seed_everything, train

    options, split = relearn.options, relearn.split
    if split is None or relearn.modules is None or options.lr is None:
        raise RelearnError("relearn attack: split, module paths and learning rate must be set before relearning")
    net = copy.deepcopy(model)
    if hasattr(net, "merge_and_unload"):  # an unmerged adapter (eval.merge_adapters=false): relearn the merged model
        net = net.merge_and_unload()
    tune = {part: part in options.tune for part in PARTS}
    seed_everything(options.seed)  # the LoRA's initialisation
    if options.lora:
        net = apply_lora(net, relearn.modules, tune, options.lora_r, options.lora_alpha, 0.0, relearn.lora_targets)
    else:
        freeze_all_but(net, [p for ps in tuned_prefixes(relearn.modules, tune).values() for p in ps])
    per_epoch = math.ceil(len(split.examples) / options.batch_size)
    settings = TrainSettings(lr=float(options.lr), epochs=math.ceil(relearn.steps / per_epoch),
                             batch_size=options.batch_size, weight_decay=0.0, scheduler="constant",
                             max_steps=relearn.steps, seed=options.seed, log_every=max(1, relearn.steps))

    def step_loss(model: torch.nn.Module, batch: dict, progress: Any) -> tuple[torch.Tensor, dict[str, float]]:
        return mean_nll(forward_answer_logits(model, batch)), {}

    prepared, summary = train(net, list(split.examples), collate, step_loss, settings, accelerator)
    net = accelerator.unwrap_model(prepared)
    accelerator.free_memory()  # the optimiser's state goes; the evaluation keeps the weights alone
    if options.lora:
        net = net.merge_and_unload()
    log.info("relearned %d steps on %d units (%d examples): loss %.4g", summary["steps"], len(split.relearn_units),
             len(split.examples), summary["final"].get("loss", float("nan")))
    net.requires_grad_(False)
    return net.eval()


class RelearnedModel(LazyModel):
    """The relearned copy of an evaluation's model, made the first time an attacked part needs it, from the
    evaluation's own lazily loaded model (which the unattacked parts keep using)."""

    def __init__(self, relearn: Relearn, accelerator: Accelerator | None) -> None:
        super().__init__(self._relearned)
        self.relearn, self.accelerator = relearn, accelerator
        self._source: LazyModel | None = None

    def bind(self, source: LazyModel) -> RelearnedModel:
        self._source = source
        return self

    def _relearned(self) -> tuple[Any, Any]:
        if self._source is None:
            raise RuntimeError("relearned model used before it was bound to the evaluation's model")
        net, collator = self._source.get()
        return relearn_model(net, collator, self.relearn, self.accelerator or Accelerator()), collator


def relearned_compute(compute: Callable[[EvalContext], dict[str, Any]], model: RelearnedModel
                      ) -> Callable[[EvalContext], dict[str, Any]]:
    """A part computed on the relearned model (one relearning shared by every attacked part of the evaluation)."""

    def run(context: EvalContext) -> dict[str, Any]:
        return compute(dataclasses.replace(context, model=model.bind(context.model)))

    return run


# ------------------------------------------------------------------ the evaluation half


def half_resampler(inner: Resampler, dropped: frozenset[str], strata: Sequence[str] = ("forget",)
                   ) -> RestrictedResampler:
    """``inner``'s draws over the units not ``dropped`` from ``strata`` (the forget units' strata: another stratum's
    unit of the same name is another person); ``dropped`` units weigh 0 in every resample."""
    masked = frozenset(strata)
    return RestrictedResampler(inner, lambda stratum, unit: stratum not in masked or unit not in dropped,
                               "stratum {stratum!r}: every unit was relearned; none is left to evaluate")


def _values(replicate: Replicate, results: Mapping[str, dict[str, Any]], reference_dir: Path | None,
            resampler: Resampler) -> dict[str, float | None]:
    out = {}
    for path, array in replicate(results, reference_dir, resampler).items():
        value = float(np.asarray(array, dtype=float)[0])
        out[path] = value if math.isfinite(value) else None
    return out


def evaluation_half(evaluation: Evaluation, split: RelearnSplit, steps: int, strata: Sequence[str] = ("forget",)
                    ) -> Evaluation:
    """``evaluation`` with its summary (and intervals) over the evaluation half: every summary field the benchmark
    resamples that the relearned units (in ``strata``) change is recomputed without them; the rest is as it was."""
    if not strata:  # the evaluation's data is held out from the forget set: every unit is evaluated
        return _held_out(evaluation, split, steps)
    if evaluation.resample is None:
        raise RelearnError("the relearning attack measures the evaluation half through the benchmark's "
                           "Evaluation.resample (its bootstrap over units); this benchmark has none")
    replicate, dropped = evaluation.resample, frozenset(split.relearn_units)

    def summarize(results: Mapping[str, dict[str, Any]], reference_dir: Path | None) -> dict[str, Any]:
        summary = evaluation.summarize(results, reference_dir)
        half = half_resampler(PointResampler(), dropped, strata)
        restricted = _values(replicate, results, reference_dir, half)
        if not half.dropped:
            raise RelearnError(f"none of the {len(dropped)} relearned units is a unit of the evaluation's results in "
                               f"its strata {sorted(strata)} (benchmark.robustness.relearn_strata): the benchmark "
                               "names its forget units otherwise in its evaluation than in its forget examples "
                               "(define unit_of(example) to match its resample) or in other strata")
        whole = _values(replicate, results, reference_dir, PointResampler())
        changed = sorted(path for path, value in restricted.items() if whole.get(path) != value)
        return {**with_values(summary, {path: restricted[path] for path in changed}),
                "relearn": {"steps": steps, "relearned_units": len(split.relearn_units),
                            "evaluated_units": len(split.eval_units), "units_in_results": len(half.dropped),
                            "restricted_fields": changed,
                            "note": "the restricted fields are over the evaluation half (units not relearned); the "
                                    "forget parts' other fields and files hold every unit"}}

    def resample(results: Mapping[str, dict[str, Any]], reference_dir: Path | None, resampler: Resampler
                 ) -> dict[str, np.ndarray]:
        return replicate(results, reference_dir, half_resampler(resampler, dropped, strata))

    return dataclasses.replace(evaluation, summarize=summarize, resample=resample)


def _held_out(evaluation: Evaluation, split: RelearnSplit, steps: int) -> Evaluation:
    """``evaluation`` as it is, its summary noting the budget: a benchmark whose evaluation data shares no unit with
    its forget set (``robustness.relearn_strata: []``, e.g. captions of held-out images) is measured whole after
    relearning on ``fraction`` of the forget set's units."""

    def summarize(results: Mapping[str, dict[str, Any]], reference_dir: Path | None) -> dict[str, Any]:
        return {**evaluation.summarize(results, reference_dir),
                "relearn": {"steps": steps, "relearned_units": len(split.relearn_units),
                            "evaluated_units": None, "restricted_fields": [],
                            "note": "the evaluation's data is held out from the forget set (robustness."
                                    "relearn_strata is empty): every evaluated unit is reported"}}

    return dataclasses.replace(evaluation, summarize=summarize)
