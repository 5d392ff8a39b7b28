"""Confidence intervals for every metric of a summary: a seeded, stratified percentile bootstrap over units.

A metric's samples are not independent: the questions about one person share that person, so resampling
questions would understate the noise. A benchmark therefore names, per sample, the *unit* it belongs to (the
person, profile, record or image) and the *stratum* the unit is drawn from (a split: forget units and retain units
are different people, each resampled within its own group). ``Resampler`` draws, once per stratum and seeded by
(seed, stratum name), ``resamples`` bootstrap samples of that stratum's units, as ``scipy.stats.bootstrap`` draws
indices (``rng.integers(0, n, (resamples, n))``), and keeps them as counts per unit.

A benchmark's ``Evaluation.resample`` turns its part results into replicates of the summary fields its table reads
(``{"retain.rougeL_recall": array of resamples}``), computing composite fields (a harmonic mean, a KS p-value)
inside each resample from the resampled units. The engine then writes each replicate into a copy of the summary,
asks the benchmark's own table code for the row, and takes per column the percentile interval of the replicates:
every column, however it is combined from summary fields, is recomputed per resample, never combined from
separate intervals. A column resting on a field without replicates (a value kept without per-sample results) gets
no interval: its resampled value is NaN.

Because the draws depend only on the seed and the sorted unit names, two runs evaluated on the same units get the
same resampled units in resample ``b``: the replicates stored beside each summary (``bootstrap.npz``) give a paired
comparison by subtraction (``paired_difference``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
METHOD = "percentile"


@dataclass(frozen=True)
class BootstrapSettings:
    """``eval.bootstrap``: how many resamples (0: no intervals), the seed, and the interval's confidence."""

    resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if isinstance(self.resamples, bool) or not isinstance(self.resamples, int) or self.resamples < 0:
            raise ValueError(f"eval.bootstrap.resamples must be a whole number >= 0, got {self.resamples!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"eval.bootstrap.seed must be a whole number >= 0, got {self.seed!r}")
        if not isinstance(self.confidence, int | float) or not 0 < self.confidence < 1:
            raise ValueError(f"eval.bootstrap.confidence must lie strictly between 0 and 1, got {self.confidence!r}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> BootstrapSettings:
        try:
            return cls(**dict(config or {}))
        except TypeError as error:
            raise ValueError(f"eval.bootstrap: {error}") from error


def draw_indices(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``resamples`` bootstrap samples of ``n`` items as index rows, drawn as ``scipy.stats.bootstrap`` draws them."""
    return rng.integers(0, n, (resamples, n))


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float] | None:
    """The percentile interval of a metric's replicates, None when some resample leaves the metric undefined."""
    values = np.asarray(replicates, dtype=float)
    if values.size == 0 or not np.all(np.isfinite(values)):
        return None
    alpha = (1 - confidence) / 2
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def bootstrap_interval(sample: Sequence[float], statistic: Callable[..., np.ndarray], settings: BootstrapSettings
                       ) -> tuple[float, float] | None:
    """The percentile interval of ``statistic`` (vectorised: it takes ``axis``) over a 1-D sample of independent
    values; the same draws as ``scipy.stats.bootstrap(..., rng=np.random.default_rng(seed))``."""
    values = np.asarray(sample, dtype=float)
    index = draw_indices(len(values), settings.resamples, np.random.default_rng(settings.seed))
    return percentile_interval(statistic(values[index], axis=-1), settings.confidence)


def _stratum_rng(seed: int, stratum: str) -> np.random.Generator:
    """One generator per stratum, so adding a stratum (or a benchmark's part) never moves another's draws."""
    return np.random.default_rng([seed, zlib.crc32(stratum.encode("utf-8"))])


class Resampler:
    """The bootstrap draws of one evaluation: per stratum, the resampled counts of its units, shared by every
    metric computed from that stratum."""

    def __init__(self, settings: BootstrapSettings) -> None:
        self.settings = settings
        self.resamples = settings.resamples
        self._units: dict[str, list[str]] = {}
        self._position: dict[str, dict[str, int]] = {}
        self._counts: dict[str, np.ndarray] = {}

    def counts(self, stratum: str, units: Sequence[str]) -> np.ndarray:
        """(resamples, units) how often each of the stratum's units is drawn; ``units`` are its distinct unit
        names, sorted here so the draws do not depend on the order samples come in."""
        names = sorted(set(units))
        if stratum in self._counts:
            if not set(names) <= set(self._units[stratum]):
                raise ValueError(f"bootstrap stratum {stratum!r} was drawn over other units")
            return self._counts[stratum]
        if not names:
            raise ValueError(f"bootstrap stratum {stratum!r} has no units")
        index = draw_indices(len(names), self.resamples, _stratum_rng(self.settings.seed, stratum))
        offsets = (index + len(names) * np.arange(self.resamples)[:, None]).ravel()
        counts = np.bincount(offsets, minlength=self.resamples * len(names)).reshape(self.resamples, len(names))
        self._units[stratum], self._counts[stratum] = names, counts
        self._position[stratum] = {name: i for i, name in enumerate(names)}
        return counts

    def weights(self, stratum: str, sample_units: Sequence[str]) -> np.ndarray:
        """(resamples, samples): each sample counted as often as its unit is drawn."""
        counts = self.counts(stratum, sample_units)
        position = self._position[stratum]
        return counts[:, [position[unit] for unit in sample_units]]

    def mean(self, stratum: str, sample_units: Sequence[str], values: Sequence[float | None]) -> np.ndarray:
        """Per resample, the mean of the values of the drawn units' samples (None or NaN values left out, as the
        point estimate leaves them out); NaN where a resample draws no value."""
        if not len(values):
            return np.full(self.resamples, np.nan)
        array = np.array([np.nan if v is None else float(v) for v in values])
        present = np.isfinite(array)
        weights = self.weights(stratum, sample_units).astype(float)
        total = weights @ np.where(present, array, 0.0)
        count = weights @ present.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)

    def each(self, stratum: str, sample_units: Sequence[str], statistic: Callable[[np.ndarray], float]
             ) -> np.ndarray:
        """Per resample, ``statistic`` of the drawn samples' positions (each repeated as often as its unit is
        drawn): for statistics that are not a weighted mean (a KS test, an AUC); NaN where a resample draws no
        sample, as ``mean`` gives (a stratum whose units all weigh 0)."""
        weights = self.weights(stratum, sample_units)
        positions = np.arange(len(sample_units))
        return np.array([statistic(np.repeat(positions, row)) if row.any() else np.nan for row in weights],
                        dtype=float)

    def fingerprint(self) -> dict[str, dict[str, Any]]:
        """What the draws rest on, per stratum: the number of units and a hash of their names. Two evaluations
        with equal fingerprints and settings drew the same units in every resample."""
        return {stratum: {"units": len(names), "hash": hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]}
                for stratum, names in sorted(self._units.items())}


class PointResampler(Resampler):
    """One "resample" drawing every unit once: a summary's point values through a benchmark's resampling code (what
    a metric is on a subset of units, with ``RestrictedResampler``); ``seen`` records each stratum's units."""

    def __init__(self) -> None:
        super().__init__(BootstrapSettings(resamples=1))
        self.seen: dict[str, set[str]] = {}

    def counts(self, stratum: str, units: Sequence[str]) -> np.ndarray:
        self.seen.setdefault(stratum, set()).update(units)
        names = sorted(self.seen[stratum])
        self._units[stratum], self._position[stratum] = names, {name: i for i, name in enumerate(names)}
        self._counts[stratum] = np.ones((1, len(names)), dtype=np.int64)
        return self._counts[stratum]


class RestrictedResampler(Resampler):
    """``inner``'s draws over only the units ``keep(stratum, unit)`` accepts, the others weighing 0 in every resample:
    the kept units are drawn (and fingerprinted) exactly as ``inner`` draws a stratum holding only them, so a metric
    on a held-out subset (a validation split, the half of a forget set not relearned) is the benchmark's own metric
    on that subset. A stratum keeping none weighs every unit 0 (its metrics NaN), or raises ``ValueError`` with
    ``empty`` (formatted with the stratum) when given. ``dropped`` records the units left out."""

    def __init__(self, inner: Resampler, keep: Callable[[str, str], bool], empty: str | None = None) -> None:
        super().__init__(inner.settings)
        self.resamples = inner.resamples
        self.inner, self.keep, self.empty = inner, keep, empty
        self.dropped: set[str] = set()

    def counts(self, stratum: str, units: Sequence[str]) -> np.ndarray:
        names = sorted(set(units))
        if stratum in self._counts:
            if not set(names) <= set(self._units[stratum]):
                raise ValueError(f"bootstrap stratum {stratum!r} was drawn over other units")
            return self._counts[stratum]
        kept = [name for name in names if self.keep(stratum, name)]
        self.dropped.update(name for name in names if name not in kept)
        counts = np.zeros((self.resamples, len(names)), dtype=np.int64)
        if kept:
            drawn = self.inner.counts(stratum, kept)
            counts[:, [names.index(name) for name in kept]] = drawn
        elif self.empty is not None:
            raise ValueError(self.empty.format(stratum=stratum))
        self._units[stratum], self._counts[stratum] = names, counts
        self._position[stratum] = {name: i for i, name in enumerate(names)}
        return counts

    def fingerprint(self) -> dict[str, dict[str, Any]]:
        return self.inner.fingerprint()


Replicate = Callable[[Mapping[str, dict[str, Any]], Path | None, Resampler], dict[str, np.ndarray]]
MetricsOf = Callable[[dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]


def with_values(summary: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``summary`` with the dotted fields in ``values`` replaced (only the objects on their paths are
    copied)."""
    out = dict(summary)
    for path, value in values.items():
        node = out
        keys = path.split(".")
        for key in keys[:-1]:
            node[key] = dict(node[key])
            node = node[key]
        node[keys[-1]] = value
    return out


def metric_replicates(summary: Mapping[str, Any], replicates: Mapping[str, np.ndarray], metrics: MetricsOf,
                      resamples: int) -> dict[str, dict[str, np.ndarray]]:
    """Per table row and column, the metric in each resample: the summary with resample ``b``'s field values,
    through the benchmark's own table code (``metrics``: the summary's typed-metrics block)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for b in range(resamples):
        values = {path: (None if not math.isfinite(array[b]) else float(array[b]))
                  for path, array in replicates.items()}
        for row, columns in metrics(with_values(summary, values)).items():
            for name, metric in columns.items():
                column = out.setdefault(row, {}).setdefault(name, np.full(resamples, np.nan))
                column[b] = np.nan if metric["value"] is None else metric["value"]
    return out


def add_intervals(summary: dict[str, Any], results: Mapping[str, dict[str, Any]], reference_dir: Path | None,
                  replicate: Replicate, metrics: MetricsOf, settings: BootstrapSettings, out_dir: Path,
                  summary_file: str, write: bool) -> dict[str, Any]:
    """Fill each metric's ``interval`` in ``summary["metrics"]``, store the replicates beside the summary (for
    paired comparisons) and return the ``bootstrap`` block saying how they were drawn and what that cost."""
    start = time.perf_counter()
    resampler = Resampler(settings)
    fields = replicate(results, reference_dir, resampler)
    table = metric_replicates(summary, fields, metrics, settings.resamples)
    strata = resampler.fingerprint()
    single = sorted(stratum for stratum, drawn in strata.items() if drawn["units"] == 1)
    alone = on_single_units(single, summary, results, reference_dir, replicate, metrics) if single else set()
    for row, columns in summary["metrics"].items():
        for name, metric in columns.items():
            replicates = table.get(row, {}).get(name)
            if (row, name) in alone:
                metric["interval"], metric["note"] = None, metric.get("note") or SINGLE_UNIT_NOTE
            elif metric["value"] is not None and replicates is not None:
                interval = percentile_interval(replicates, settings.confidence)
                metric["interval"] = None if interval is None else list(interval)
    file = replicates_file(summary_file)
    if write:
        write_replicates(out_dir / file, table)
    return {"method": METHOD, "resamples": settings.resamples, "seed": settings.seed,
            "confidence": settings.confidence, "strata": strata, "file": file,
            **({"single_unit_strata": single} if single else {}),
            "seconds": round(time.perf_counter() - start, 3)}


SINGLE_UNIT_NOTE = "no interval: it rests on a bootstrap stratum of one unit"


def on_single_units(single: Sequence[str], summary: Mapping[str, Any], results: Mapping[str, dict[str, Any]],
                    reference_dir: Path | None, replicate: Replicate, metrics: MetricsOf) -> set[tuple[str, str]]:
    """The (row, column) metrics that rest on a stratum of one unit: resampling one unit draws it every time, so
    their percentile interval would have width 0 and claim a certainty one unit cannot give. Found by weighing
    those strata's units 0 once: a metric whose value then changes (or becomes undefined) rests on them. When the
    benchmark's code cannot compute without them, every metric is taken to rest on them."""
    every = {(row, name) for row, columns in summary["metrics"].items() for name in columns}
    without = RestrictedResampler(PointResampler(), lambda stratum, unit: stratum not in single)
    try:
        point = metric_replicates(summary, replicate(results, reference_dir, PointResampler()), metrics, 1)
        with np.errstate(invalid="ignore", divide="ignore"):  # statistics of no samples: NaN, as intended
            dropped = metric_replicates(summary, replicate(results, reference_dir, without), metrics, 1)
    except (ValueError, TypeError, ZeroDivisionError, IndexError, KeyError) as error:
        log.warning("intervals: the metrics resting on the one-unit strata %s could not be told apart (%s: %s); "
                    "no metric of this summary gets an interval", list(single), type(error).__name__, error)
        return every
    out = set()
    for row, name in every:
        a, b = point.get(row, {}).get(name), dropped.get(row, {}).get(name)
        if a is None or b is None:
            continue
        if not np.array_equal(a, b, equal_nan=True):
            out.add((row, name))
    return out


def replicates_file(summary_file: str) -> str:
    """Where a summary's replicates go: ``summary.json`` -> ``bootstrap.npz``, ``summary.x.json`` ->
    ``bootstrap.x.npz``."""
    stem = Path(summary_file).name.removesuffix(".json").removeprefix("summary")
    return f"bootstrap{stem}.npz"


def write_replicates(path: Path, table: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    from unlearning.runs.io import atomic_write_bytes

    names = [[row, column] for row, columns in table.items() for column in columns]
    buffer = io.BytesIO()
    values = np.stack([table[row][column] for row, column in names]) if names else np.zeros((0, 0))
    np.savez_compressed(buffer, names=np.array(json.dumps(names)), replicates=values)
    atomic_write_bytes(path, buffer.getvalue())


def read_replicates(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """The replicates ``write_replicates`` stored, per row and column."""
    with np.load(path, allow_pickle=False) as data:
        names, values = json.loads(str(data["names"])), data["replicates"]
    out: dict[str, dict[str, np.ndarray]] = {}
    for (row, column), replicates in zip(names, values, strict=True):
        out.setdefault(row, {})[column] = replicates
    return out


def paired_difference(point_a: float, point_b: float, replicates_a: np.ndarray, replicates_b: np.ndarray,
                      confidence: float) -> dict[str, Any]:
    """A − B with its percentile interval and a two-sided bootstrap p-value, from replicates drawn over the same
    units in the same resamples (so each resample's difference is paired).

    p = min(1, 2 · min(#(d ≤ 0) + 1, #(d ≥ 0) + 1) / (B + 1)): twice the smaller tail of the resampled
    differences beyond zero, with the +1 that keeps it above 0 for B resamples; identical runs give d = 0
    everywhere and p = 1."""
    differences = np.asarray(replicates_a, dtype=float) - np.asarray(replicates_b, dtype=float)
    if not np.all(np.isfinite(differences)):
        return {"difference": point_a - point_b, "interval": None, "p_value": None}
    below, above = int(np.sum(differences <= 0)), int(np.sum(differences >= 0))
    p_value = min(1.0, 2 * (min(below, above) + 1) / (len(differences) + 1))
    interval = percentile_interval(differences, confidence)
    return {"difference": point_a - point_b, "interval": None if interval is None else list(interval),
            "p_value": p_value}
