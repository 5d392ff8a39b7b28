"""The shape a built-in demo's table must have: which methods forget, which keep what they should.

The demo's digits repeat where the CPU numerics are pinned (``unlearning.runs.numerics``) and the packages are the
lock's, but training a tiny model for a thousand steps amplifies the last bit of any other code path into another
table. What must hold on any machine is the shape: a benchmark lists it as ``Expectation``s over its table's rows
(by method), with margins wide enough for the spread measured across machines and settings (docs/reproducibility.md),
and ``check_shape`` says which hold. ``results_collect.py check_shape=true`` (what the demos run) fails when one
does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Rows = Mapping[str, Mapping[str, Any]]  # a table's rows by label (method, or method and modality)


@dataclass(frozen=True)
class Expectation:
    """``what`` the table shows, and ``holds(rows)``; a row or value it needs that is missing fails it."""

    what: str
    holds: Callable[[Rows], bool]


def rows_by(rows: Sequence[Mapping[str, Any]], *keys: str) -> dict[str, Mapping[str, Any]]:
    """The rows labelled by their ``keys`` values joined with '/' (a label seen twice is an error)."""
    out: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        label = "/".join(str(row.get(key)) for key in keys)
        if label in out:
            raise ValueError(f"two rows are labelled {label!r}: the shape check needs one per label")
        out[label] = row
    return out


def check_shape(rows: Rows, expectations: Sequence[Expectation]) -> list[tuple[str, bool]]:
    """Each expectation with whether it holds (False when a row or value it reads is missing)."""
    results = []
    for expectation in expectations:
        try:
            holds = bool(expectation.holds(rows))
        except (KeyError, TypeError):
            holds = False
        results.append((expectation.what, holds))
    return results
