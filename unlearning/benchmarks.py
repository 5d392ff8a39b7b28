"""What a benchmark package provides to the shared recipes, and how a config name finds it.

A benchmark package ``<name>/benchmark.py`` registers one class here; the recipes never import a
benchmark directly, so adding one touches no engine code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from accelerate import Accelerator

from unlearning.data import ChatCollator, Example
from unlearning.registry import Registry


class Benchmark(Protocol):
    name: str
    table_columns: tuple[str, ...]  # results-table columns, in order
    tradeoff_axes: tuple[str, str]  # the columns plotted against each other (x, y)
    # Optional: tradeoff_log_y (default True), tradeoff_directions (default both "higher is better"),
    # needs_reference_run (default True: evaluation looks for the retain model), uses_general_evals (MME/POPE).

    @staticmethod
    def table_rows(run: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
        """The results-table rows of one run, from its ``run.json`` and ``eval/summary.json``."""
        ...

    @staticmethod
    def finalize_rows(rows: list[dict[str, Any]]) -> None:
        """Fill the columns that depend on several runs (e.g. a normalisation over the compared runs)."""
        ...

    @classmethod
    def write_builtin(cls, out_dir: Path, **settings: Any) -> None:
        """Write the offline synthetic version of this benchmark in its release format."""
        ...

    def texts(self) -> list[str]:
        """All question/answer text, for training a tiny model's tokenizer offline."""
        ...

    def train_examples(self, split: str) -> list[Example]: ...

    def forget_examples(self, split: str, target: str) -> list[Example]:
        """The forget set; ``target`` 'refusal' swaps each answer for a refusal."""
        ...

    def retain_examples(self, forget_split: str) -> list[Example]: ...

    def evaluate(
        self, load_model: Callable[[], tuple[Any, ChatCollator]], settings: Mapping[str, Any], out_dir: Path,
        reference_eval_dir: Path | None, accelerator: Accelerator | None,
    ) -> dict[str, Any]:
        """Write per-sample and summary JSON under ``out_dir``; return the summary.

        ``load_model`` is called only when some split has no up-to-date results on disk.
        """
        ...


BENCHMARKS: Registry[type] = Registry("benchmark")


def benchmark_class(name: str) -> type:
    """Import ``<name>.benchmark`` (which registers the class) and return the class."""
    if name not in BENCHMARKS:
        try:
            importlib.import_module(f"{name}.benchmark")
        except ModuleNotFoundError as error:
            if error.name not in (name, f"{name}.benchmark"):
                raise
    return BENCHMARKS.get(name)
