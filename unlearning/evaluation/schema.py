"""The evaluation summary's schema (``eval/summary.json``), versioned, and its check when a summary is read back.

A summary holds the benchmark's own fields (what its table reads) and, for every reader, two typed blocks:

- ``metrics``: per row of the run's results table (``all``, or the value of the benchmark's ``Report.row_key``,
  e.g. MLLMU-Bench's evaluated modality) and per column, a ``Metric``: its value, its direction (``higher`` or
  ``lower`` is better, or none), ``n`` (the samples it averages, when it is a mean over samples), the judge that
  produced it (``llm``, ``offline`` or ``none``), room for a confidence interval, and a note (why a value is
  missing: an incomplete judge);
- ``provenance``: the compat switches on, the package versions and their differences from the lock, the git
  revision, the date, what decided the CPU digits, and content fingerprints of each part's data and of the weights.

``read_summary`` refuses a file that does not fit, naming the file and the field: the engine's fields, and the
benchmark's own fields its table reads, which a benchmark declares as ``summary_fields`` (``Field``s), so that a
summary of the wrong shape is refused before the table code indexes it. ``SCHEMA_VERSION`` changes when a field's
meaning changes; evaluating a run again rewrites its summary (finished parts are reused).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from unlearning.runs.io import CorruptFile, read_json

SCHEMA_VERSION = 1
JUDGES = ("llm", "offline", "none")
DIRECTIONS = ("higher", "lower", None)
PROVENANCE_FIELDS = ("git", "date", "versions", "lock_differences", "numerics", "compat", "compat_switches", "data",
                     "weights")


class SchemaError(CorruptFile):
    """A summary that does not fit the schema; the message names the file and the field."""


@dataclass(frozen=True)
class Metric:
    value: float | None
    direction: str | None
    n: int | None = None
    judge: str = "none"
    interval: tuple[float, float] | None = None  # a confidence interval, when one is computed
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["interval"] = None if self.interval is None else list(self.interval)
        return out


def table_metrics(report: Any, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]
                  ) -> dict[str, dict[str, dict[str, Any]]]:
    """The ``metrics`` block from the run's table rows: every column with a direction or a judge, typed."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        key = str(row.get(report.row_key)) if report.row_key else "all"
        metrics = {}
        for column in report.columns:
            if column.better is None and column.judge == "none" and column.n is None:
                continue  # a column that names the run
            if column.name not in row:
                continue  # filled across runs when the table is made (FIUBench's Avg FQ)
            value, note = row.get(column.name), None
            if isinstance(value, str):  # an incomplete judge's partial mean, "61.0 (4/20)": not a value
                value, note = None, f"incomplete judge: {value}"
            elif isinstance(value, float) and math.isnan(value):
                value, note = None, "not a number"
            judge = column.judge
            if judge == "judged_by":  # the row says who judged it
                judge = "offline" if row.get("judge") in (None, "offline") else "llm"
            metrics[column.name] = Metric(
                None if value is None else float(value), column.better,
                column.n(summary, row) if column.n else None, judge, note=note).to_json()
        out[key] = metrics
    return out


KINDS = ("object", "number", "text", "list")


@dataclass(frozen=True)
class Field:
    """A benchmark field its results table reads from a summary: the dotted ``path``, the ``kind`` of value it
    holds (object, number, text or list), whether it may be absent (``optional``) or null (``nullable``).

    A field is checked only where every field above it is present and not null (those are declared on their own):
    ``general.mme.accuracy`` is required wherever ``general.mme`` is there."""

    path: str
    kind: str
    optional: bool = False
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"summary field {self.path!r}: kind must be one of {KINDS}, got {self.kind!r}")


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, Mapping)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str if kind == "text" else list)


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def check_fields(data: Mapping[str, Any], path: Path, fields: Sequence[Field]) -> None:
    """A SchemaError naming ``path`` and the first of ``fields`` that is missing or holds the wrong kind of value."""
    for field in fields:
        node: Any = data
        parts = field.path.split(".")
        for depth, key in enumerate(parts[:-1]):
            if not isinstance(node, Mapping):
                raise _fail(path, ".".join(parts[:depth]), f"must be an object, got {_shown(node)}")
            node = node.get(key)
            if node is None:
                break
        if node is None:
            continue  # a field above it is absent or null: its own declaration decides
        if not isinstance(node, Mapping):
            raise _fail(path, ".".join(parts[:-1]), f"must be an object, got {_shown(node)}")
        if parts[-1] not in node:
            if field.optional:
                continue
            raise _fail(path, field.path, "is missing")
        value = node[parts[-1]]
        if value is None and field.nullable:
            continue
        if not _is_kind(value, field.kind):
            allowed = f"{'an' if field.kind == 'object' else 'a'} {field.kind}" + (" or null" if field.nullable else "")
            raise _fail(path, field.path, f"must be {allowed}, got {_shown(value)}")


def _fail(path: Path, field: str, problem: str) -> SchemaError:
    return SchemaError(f"{path}: field {field!r} {problem}")


def validate_summary(data: Any, path: Path, fields: Sequence[Field] = ()) -> dict[str, Any]:
    """``data`` when it fits the schema (and has the benchmark's ``fields``), else a SchemaError naming ``path`` and
    the field."""
    if not isinstance(data, Mapping):
        raise _fail(path, "(top level)", "must be an object")
    version = data.get("schema_version")
    if version is None:
        raise _fail(path, "schema_version", "is missing (written before the schema): evaluate the run again "
                    "(eval_everything.bash; finished parts are reused)")
    if version != SCHEMA_VERSION:
        raise _fail(path, "schema_version", f"is {version!r}; this toolkit reads version {SCHEMA_VERSION}")
    if not isinstance(data.get("benchmark"), str):
        raise _fail(path, "benchmark", "must be the benchmark's name")
    metrics = data.get("metrics")
    if not isinstance(metrics, Mapping) or not metrics:
        raise _fail(path, "metrics", "must map each table row to its metrics")
    for row, columns in metrics.items():
        if not isinstance(columns, Mapping):
            raise _fail(path, f"metrics.{row}", "must map column names to metrics")
        for name, metric in columns.items():
            _check_metric(metric, path, f"metrics.{row}.{name}")
    provenance = data.get("provenance")
    if not isinstance(provenance, Mapping):
        raise _fail(path, "provenance", "must be an object")
    for field in PROVENANCE_FIELDS:
        if field not in provenance:
            raise _fail(path, f"provenance.{field}", "is missing")
    if not isinstance(provenance["compat_switches"], list):
        raise _fail(path, "provenance.compat_switches", "must be a list of switch names")
    check_fields(data, path, fields)
    return dict(data)


def _check_metric(metric: Any, path: Path, field: str) -> None:
    if not isinstance(metric, Mapping):
        raise _fail(path, field, "must be an object")
    missing = [key for key in ("value", "direction", "n", "judge", "interval") if key not in metric]
    if missing:
        raise _fail(path, f"{field}.{missing[0]}", "is missing")
    value = metric["value"]
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value)):
        raise _fail(path, f"{field}.value", f"must be a number or null, got {value!r}")
    if metric["direction"] not in DIRECTIONS:
        raise _fail(path, f"{field}.direction", f"must be one of {DIRECTIONS}, got {metric['direction']!r}")
    n = metric["n"]
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise _fail(path, f"{field}.n", f"must be a count or null, got {n!r}")
    if metric["judge"] not in JUDGES:
        raise _fail(path, f"{field}.judge", f"must be one of {JUDGES}, got {metric['judge']!r}")
    interval = metric["interval"]
    if interval is not None and not (isinstance(interval, list) and len(interval) == 2
                                     and all(isinstance(x, int | float) for x in interval)):
        raise _fail(path, f"{field}.interval", f"must be [low, high] or null, got {interval!r}")


def read_summary(path: Path, fields: Sequence[Field] = ()) -> dict[str, Any]:
    """A summary file, checked against the schema and the benchmark's ``fields`` (CorruptFile or SchemaError,
    naming the file, otherwise)."""
    return validate_summary(read_json(path), path, fields)
