"""How a number is written in every table (Markdown, the report, the robustness tables): one rule, so the same value
reads the same everywhere, and ``value ± half-width`` of its confidence interval where the evaluation computed one."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def number(value: Any) -> str:
    """A value as the tables show it: 2 decimals from 1 up, 3 below, scientific under 0.01; None is "n/a"."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and abs(value) < 1e-2:
            return f"{value:.2e}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def half_width(interval: Any) -> float | None:
    """Half the width of a ``[low, high]`` interval; None when there is none (or an end is missing)."""
    if not isinstance(interval, Sequence) or isinstance(interval, str) or len(interval) != 2 or None in interval:
        return None
    return (float(interval[1]) - float(interval[0])) / 2


def with_spread(value: Any, interval: Any = None, spread: float | None = None) -> str:
    """``value ± spread`` (a standard deviation over seeds), else ``value ± half-width`` of ``interval``, else the
    value alone; only a float gets a ±."""
    if spread is None:
        spread = half_width(interval)
    if not isinstance(value, float) or isinstance(value, bool) or spread is None:
        return number(value)
    return f"{number(value)} ± {number(float(spread))}"


def row_intervals(summary: Mapping[str, Any], row_key: str) -> dict[str, list[float]]:
    """The confidence interval of each metric of one table row (``metrics.<row>.<metric>.interval`` of an
    evaluation summary), where the evaluation computed one."""
    metrics = (summary.get("metrics") or {}).get(row_key) or {}
    return {name: metric["interval"] for name, metric in metrics.items()
            if isinstance(metric, Mapping) and metric.get("interval")}


def with_bounds(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row with each interval's ends as ``<metric> low`` / ``<metric> high`` (the CSV's columns)."""
    return {**row, **{f"{name} {end}": value for name, interval in (row.get("intervals") or {}).items()
                      for end, value in zip(("low", "high"), interval, strict=True)}}
