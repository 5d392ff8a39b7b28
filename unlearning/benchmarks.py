"""What a benchmark package provides to the shared recipes, and how a config name finds it.

A benchmark is a package ``<name>/`` whose ``benchmark.py`` registers one class here; the recipes never import
a benchmark directly, so adding one touches no engine code. Its config, ``config/benchmark/<name>.yaml``,
says what the engine does around it: which model forgetting starts from (``starts_from``), which run is the
reference for metrics measured against one (``reference_split``), the general evaluations it reports, and
its training defaults (``recipe``, specialised per model in ``config/recipe/<name>_<model>.yaml``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from unlearning.data.examples import Example
from unlearning.evaluation.runner import EvalSettings, Evaluation
from unlearning.registry import Registry

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STARTS_FROM = ("stage_one", "vanilla")
DIRECTIONS = ("higher", "lower")


@dataclass(frozen=True)
class Column:
    """A results-table column; ``better`` is the metric's direction (None for columns that name the run).

    For the summary's typed metrics (``unlearning.evaluation.schema``): ``judge`` says what produced the value
    (``none``, ``llm``, or ``judged_by``: the row's ``judge`` column names it), ``n`` gives the samples behind it
    from the summary and the row (None for a composite of several means)."""

    name: str
    better: str | None = None
    judge: str = "none"
    n: Callable[[Mapping[str, Any], Mapping[str, Any]], int | None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.better is not None and self.better not in DIRECTIONS:
            raise ValueError(f"column {self.name!r}: better must be one of {DIRECTIONS} or None")
        if self.judge not in ("none", "llm", "judged_by"):
            raise ValueError(f"column {self.name!r}: judge must be none, llm or judged_by")

    @property
    def title(self) -> str:
        """The header shown in Markdown: the name with an arrow pointing to the better direction."""
        return self.name + {"higher": " ↑", "lower": " ↓", None: ""}[self.better]


@dataclass(frozen=True)
class Report:
    """How a benchmark's runs are tabulated and plotted."""

    columns: tuple[Column, ...]
    tradeoff: tuple[str, str]  # the columns plotted against each other (x, y)
    log_y: bool = True
    row_key: str | None = None  # the column telling a run's rows apart (None: one row per run)

    def __post_init__(self) -> None:
        names = [column.name for column in self.columns]
        missing = [axis for axis in self.tradeoff if axis not in names]
        if missing:
            raise ValueError(f"trade-off axes {missing} are not table columns")

    def column(self, name: str) -> Column:
        return next(column for column in self.columns if column.name == name)

    def direction(self, name: str) -> str:
        better = self.column(name).better
        return f"{better} is better" if better else ""


class Benchmark(Protocol):
    name: ClassVar[str]
    stream_names: ClassVar[tuple[str, ...]]  # the forgetting streams it provides (always "forget")
    report: ClassVar[Report]
    # What its built-in demo's table must show on any machine (``unlearning.evaluation.shape``), with the
    # columns labelling its rows; optional.
    demo_shape: ClassVar[tuple[Any, ...]]
    demo_rows: ClassVar[tuple[str, ...]]

    def __init__(self, data_dir: Path, **options: Any) -> None: ...

    @classmethod
    def write_builtin(cls, out_dir: Path, **settings: Any) -> None:
        """Write the offline synthetic version of this benchmark in its release format."""
        ...

    def texts(self) -> list[str]:
        """All question/answer text, for training a tiny model's tokenizer offline."""
        ...

    def train_examples(self, split: str) -> list[Example]:
        """What a finetune run on ``split`` learns (Stage I, the vanilla model, a retain model)."""
        ...

    def stream(self, name: str, forget_split: str) -> list[Example]:
        """One of ``stream_names`` for forgetting ``forget_split``."""
        ...

    def evaluation(self, settings: EvalSettings, forget_split: str, retain_split: str | None,
                   **eval_options: Any) -> Evaluation:
        """The parts of one model's evaluation (typed and checked here, before any model loads) and its summary."""
        ...

    @staticmethod
    def table_rows(run: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
        """The results-table rows of one run, from its ``run.json`` and ``eval/summary.json``."""
        ...

    @staticmethod
    def finalize_rows(rows: list[dict[str, Any]]) -> None:
        """Fill the columns that depend on several runs (e.g. a normalisation over the compared runs)."""
        ...


BENCHMARKS: Registry[type] = Registry("benchmark")


def benchmark_class(name: str) -> type:
    """Import ``<name>.benchmark`` (which registers the class) and return the class."""
    return BENCHMARKS.find(name, f"{name}.benchmark")


def benchmark_names(root: Path = PROJECT_ROOT) -> list[str]:
    """Every benchmark package beside the engine (a folder holding ``benchmark.py``)."""
    return sorted(path.parent.name for path in root.glob("*/benchmark.py"))


def streams_elsewhere(name: str, root: Path = PROJECT_ROOT) -> dict[str, list[str]]:
    """For each stream some other benchmark provides, which ones do."""
    out: dict[str, list[str]] = {}
    for other in benchmark_names(root):
        if other != name:
            for stream in benchmark_class(other).stream_names:
                out.setdefault(stream, []).append(other)
    return out


def method_label(run: Mapping[str, Any], finetune_prefix: str) -> str:
    """The method column of a run: its method, ``<prefix>_<split>`` for a finetune, ``external`` otherwise."""
    if run.get("method"):
        return str(run["method"])
    if run["kind"] == "finetune":
        return f"{finetune_prefix}_{run['split']}"
    return "external"
