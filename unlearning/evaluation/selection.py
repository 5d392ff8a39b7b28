"""Checkpoint selection without peeking: a validation split of each evaluation's units, and the rule choosing a step.

A run trained with ``save_every`` and evaluated at every kept step (``steps=all``) has one result per step; which
step to report is a choice, and making it on the numbers one then reports is optimistic (the choice fits the noise
of those very examples). So a seeded fraction of the *units* of every stratum (the unit and the stratum a
benchmark's bootstrap names: a person, a profile; a split) is held out as validation. At evaluation time the
benchmark's own resampling code (``Evaluation.resample``) is run with a fixed draw instead of a bootstrap one:
each validation unit drawn once and every other unit never, which gives every summary field the table reads
(composites such as a harmonic mean or a KS p-value recomputed from those units alone) on the validation units;
the same again with the reported units gives the reported numbers, and a bootstrap over the reported units their
intervals. Both are stored beside the summary (``selection.json``).

The validation numbers are computed from a summary whose every number is blanked (NaN) before the fields
recomputed from validation units are written in, so no number of the full evaluation, which includes the
reported units, can reach them; a column resting on results without per-sample units (general benchmarks kept
as accuracies) is then missing on validation, and the rule cannot use it. The rule (``SelectionRule``, ``choose``)
reads validation numbers only.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unlearning.evaluation.intervals import (
    BootstrapSettings,
    MetricsOf,
    PointResampler,
    Replicate,
    Resampler,
    RestrictedResampler,
    metric_replicates,
    percentile_interval,
    with_values,
)

RULES = ("tolerance", "best_forget", "last")


@dataclass(frozen=True)
class ValidationSplit:
    """``eval.selection``: the fraction of each stratum's units held out as validation (0: no split) and its
    seed. The split depends only on these and the units' names, so every step of a run, and every run evaluated on
    the same data, holds out the same units."""

    validation_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        fraction = self.validation_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction < 1:
            raise ValueError(f"eval.selection.validation_fraction must lie in [0, 1), got {fraction!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"eval.selection.seed must be a whole number >= 0, got {self.seed!r}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> ValidationSplit:
        try:
            return cls(**dict(config or {}))
        except TypeError as error:
            raise ValueError(f"eval.selection: {error}") from error


def validation_units(units: Iterable[str], stratum: str, split: ValidationSplit) -> frozenset[str]:
    """The stratum's validation units: ``round(fraction × n)`` of them (at least one, and at least one left to
    report, when the stratum has two or more), drawn by a generator seeded by (seed, the stratum's name) over the
    sorted names, so the draw ignores the order samples come in and a stratum's draw never moves another's."""
    names = sorted(set(units))
    n = len(names)
    if n < 2 or split.validation_fraction == 0:
        return frozenset()
    k = min(n - 1, max(1, round(split.validation_fraction * n)))
    rng = np.random.default_rng([split.seed, zlib.crc32(f"validation/{stratum}".encode())])
    return frozenset(names[i] for i in rng.permutation(n)[:k])


def units_hash(names: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(names)).encode("utf-8")).hexdigest()[:16]


def unit_subset(units: Mapping[str, Sequence[str]], kept: Mapping[str, Iterable[str]],
                settings: BootstrapSettings | None = None) -> RestrictedResampler:
    """Draws restricted to one side of the split: each kept unit once and the others never (``settings`` None: the
    subset's point values), or bootstrap resamples of the kept units alone. ``units``: every unit of each stratum
    (a unit outside them is an error: the split was drawn over other results)."""
    known = {stratum: frozenset(names) for stratum, names in units.items()}
    chosen = {stratum: frozenset(names) for stratum, names in kept.items()}

    def keep(stratum: str, unit: str) -> bool:
        if unit not in known.get(stratum, ()):
            raise ValueError(f"stratum {stratum!r} has units the validation split was not drawn over")
        return unit in chosen.get(stratum, ())

    return RestrictedResampler(PointResampler() if settings is None else Resampler(settings), keep)


def blank(value: Any) -> Any:
    """Every number in a summary (nested) replaced by NaN: what the validation numbers are computed on top of."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return math.nan
    if isinstance(value, Mapping):
        return {key: blank(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [blank(item) for item in value]
    return value


def _field(summary: Mapping[str, Any], path: str) -> Any:
    node: Any = summary
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _first(array: np.ndarray) -> float | None:
    value = float(array[0])
    return value if math.isfinite(value) else None


def _values(table: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, float | None]]:
    return {row: {name: _first(values) for name, values in columns.items()} for row, columns in table.items()}


def split_metrics(summary: dict[str, Any], results: Mapping[str, dict[str, Any]], reference_dir: Path | None,
                  replicate: Replicate, metrics: MetricsOf, split: ValidationSplit,
                  bootstrap: BootstrapSettings) -> dict[str, Any]:
    """What ``selection.json`` holds: the split (units per stratum, a hash of the validation units' names), every
    table column on the validation units (the rule's input) and on the reported units (the table's numbers, with
    bootstrap intervals over the reported units when ``bootstrap.resamples`` > 0).

    A summary field the benchmark's resampling leaves without a value even when every unit is drawn (a result
    kept without per-sample units, e.g. a general benchmark's accuracy) cannot be split: the reported numbers keep
    its evaluated value (listed under ``not_split``) and the validation numbers have none."""
    recorder = PointResampler()
    everything = replicate(results, reference_dir, recorder)
    units = {stratum: sorted(names) for stratum, names in recorder.seen.items()}
    validation = {stratum: validation_units(names, stratum, split) for stratum, names in units.items()}
    reported = {stratum: [name for name in names if name not in validation[stratum]]
                for stratum, names in units.items()}
    not_split = sorted(path for path, array in everything.items()
                       if _first(array) is None and _field(summary, path) is not None)

    on_validation = replicate(results, reference_dir, unit_subset(units, validation))
    validation_table = metric_replicates(blank(summary), on_validation, metrics, 1)

    reported_draw = replicate(results, reference_dir, unit_subset(units, reported))
    on_reported = {path: array for path, array in reported_draw.items() if path not in not_split}
    point = {path: _first(array) for path, array in on_reported.items()}
    reported_summary = with_values(summary, point)
    reported_metrics = metrics(reported_summary)
    if bootstrap.resamples:
        draws = replicate(results, reference_dir, unit_subset(units, reported, bootstrap))
        table = metric_replicates(reported_summary, draws, metrics, bootstrap.resamples)  # not split: no interval
        for row, columns in reported_metrics.items():
            for name, metric in columns.items():
                replicates = table.get(row, {}).get(name)
                if metric["value"] is not None and replicates is not None:
                    interval = percentile_interval(replicates, bootstrap.confidence)
                    metric["interval"] = None if interval is None else list(interval)
    for columns in reported_metrics.values():
        for metric in columns.values():
            metric["n"] = None  # the summary's counts are the full evaluation's; the units are under "units"
    return {
        "validation_fraction": split.validation_fraction, "seed": split.seed,
        "units": {stratum: {"validation": len(validation[stratum]), "reported": len(reported[stratum]),
                            "validation_hash": units_hash(validation[stratum]),
                            "reported_hash": units_hash(reported[stratum])} for stratum in sorted(units)},
        "validation": _values(validation_table),
        "reported": reported_metrics,
        "not_split": not_split,
        "bootstrap": {"resamples": bootstrap.resamples, "seed": bootstrap.seed, "confidence": bootstrap.confidence},
    }


def selection_file(summary_file: str) -> str:
    """Where a summary's split metrics go: ``summary.json`` -> ``selection.json``, ``summary.x.json`` ->
    ``selection.x.json``."""
    return "selection" + Path(summary_file).name.removeprefix("summary")


# ----------------------------------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class SelectionRule:
    """How a run's step is chosen from its steps' validation numbers.

    ``tolerance`` (default): among the steps whose validation utility stays within ``tolerance`` (relative) of the
    starting model's, the best validation forget metric; none within it: the step with the best utility.
    ``best_forget``: the best validation forget metric, utility ignored. ``last``: the final model (no selection;
    its numbers still on the reported units). Ties go to the earliest step. ``row``: the table row read (a
    benchmark with several rows per run, e.g. per evaluated modality); None: the run's only row."""

    forget_metric: str
    utility_metric: str
    forget_better: str
    utility_better: str
    rule: str = "tolerance"
    tolerance: float = 0.1
    row: str | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"selection.rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        if isinstance(self.tolerance, bool) or not isinstance(self.tolerance, int | float) or self.tolerance < 0:
            raise ValueError(f"selection.tolerance must be a number >= 0 (a relative drop), got {self.tolerance!r}")
        for name, better in ((self.forget_metric, self.forget_better), (self.utility_metric, self.utility_better)):
            if better not in ("higher", "lower"):
                raise ValueError(f"selection: metric {name!r} has no direction (higher or lower is better)")

    def describe(self) -> str:
        if self.rule == "last":
            return "the final model (selection.rule=last)"
        forget = f"{'highest' if self.forget_better == 'higher' else 'lowest'} validation {self.forget_metric}"
        if self.rule == "best_forget":
            return f"the step with the {forget} (ties: the earliest)"
        return (f"among the steps whose validation {self.utility_metric} stays within {self.tolerance:.0%} of the "
                f"starting model's, the one with the {forget} (ties: the earliest; none within: the best "
                f"validation {self.utility_metric})")

    def utility_floor(self, baseline: float) -> float:
        """The worst utility still within the tolerance of ``baseline``."""
        slack = self.tolerance * abs(baseline)
        return baseline - slack if self.utility_better == "higher" else baseline + slack

    def keeps_utility(self, utility: float, baseline: float) -> bool:
        floor = self.utility_floor(baseline)
        return utility >= floor if self.utility_better == "higher" else utility <= floor


@dataclass(frozen=True)
class StepValidation:
    """One evaluated step's validation numbers: all the rule sees."""

    step: int
    forget: float | None
    utility: float | None


@dataclass(frozen=True)
class Choice:
    step: int | None
    reason: str
    eligible: tuple[int, ...] = ()


def _best(steps: Sequence[StepValidation], key: str, better: str) -> StepValidation:
    """The best step by ``key`` (its direction), the earliest among equals."""
    sign = -1.0 if better == "higher" else 1.0
    return min(sorted(steps, key=lambda s: s.step), key=lambda s: sign * getattr(s, key))


def _cell(value: float) -> str:
    return f"{value:.3g}"


def choose(steps: Sequence[StepValidation], rule: SelectionRule, baseline: float | None,
           baseline_name: str = "the starting model's") -> Choice:
    """The step ``rule`` chooses among ``steps`` (validation numbers only), with the reason in words.
    ``baseline``: the starting model's validation utility (None: the earliest step's stands in for it)."""
    steps = sorted(steps, key=lambda s: s.step)
    if not steps:
        return Choice(None, "no evaluated step")
    if rule.rule == "last":
        return Choice(steps[-1].step, "the final model (selection.rule=last)")
    scored = [s for s in steps if s.forget is not None]
    if not scored:
        return Choice(None, f"no step has a validation {rule.forget_metric}")
    if rule.rule == "best_forget":
        best = _best(scored, "forget", rule.forget_better)
        return Choice(best.step, f"the {'highest' if rule.forget_better == 'higher' else 'lowest'} validation "
                                 f"{rule.forget_metric} ({_cell(best.forget)}) of {len(steps)} steps",
                      tuple(s.step for s in scored))
    with_utility = [s for s in scored if s.utility is not None]
    if not with_utility:
        return Choice(None, f"no step has a validation {rule.utility_metric}")
    if baseline is None:
        baseline = with_utility[0].utility
        baseline_name = f"step {with_utility[0].step}'s, the earliest: the starting model's evaluation was not found"
    eligible = [s for s in with_utility if rule.keeps_utility(s.utility, baseline)]
    floor = rule.utility_floor(baseline)
    bound = f"{'≥' if rule.utility_better == 'higher' else '≤'} {_cell(floor)}"
    if not eligible:
        best = _best(with_utility, "utility", rule.utility_better)
        return Choice(best.step, f"no step keeps validation {rule.utility_metric} {bound} (within "
                                 f"{rule.tolerance:.0%} of {_cell(baseline)}, {baseline_name}): the best validation "
                                 f"{rule.utility_metric} ({_cell(best.utility)})")
    best = _best(eligible, "forget", rule.forget_better)
    return Choice(best.step, f"the {'highest' if rule.forget_better == 'higher' else 'lowest'} validation "
                             f"{rule.forget_metric} ({_cell(best.forget)}) among the {len(eligible)} of {len(steps)} "
                             f"steps keeping validation {rule.utility_metric} {bound} (within {rule.tolerance:.0%} of "
                             f"{_cell(baseline)}, {baseline_name})", tuple(s.step for s in eligible))
