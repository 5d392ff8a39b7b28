"""MLLMU-Bench on the shared engine: its data as Examples, its four-set evaluation, its results-table rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from mllmu.data import MllmuBench
from mllmu.evaluate import SETS, EvalOptions, evaluate_run
from mllmu.synthetic import write_mllmu
from unlearning.benchmarks import BENCHMARKS
from unlearning.data import ChatCollator, Example

SET_TITLES = {"forget": "Forget", "test": "Test", "retain": "Retain", "celebrity": "Celebrity"}
METRIC_COLUMNS = (("Class. Acc", "classification_acc", 100), ("ROUGE-L", "rougeL_f", 1),
                  ("Fact.", "factuality", 1), ("Cloze Acc", "cloze_acc", 100))
MODALITY_TITLES = {"image_text": "image+text", "text": "text-only"}


@BENCHMARKS.register("mllmu")
class MllmuTask:
    name = "mllmu"
    needs_reference_run = False  # no forget-quality test against a retain model
    uses_general_evals = False  # utility is measured on the retain and celebrity sets

    # The paper's columns per set (accuracies in percent, ROUGE-L F in 0-1, factuality 1-10); one row per
    # run and evaluated modality.
    table_columns = ("run", "method", "forget_split", "forget data", "eval modality",
                     *(f"{SET_TITLES[s]} {title}" for s in SETS for title, _, _ in METRIC_COLUMNS))
    tradeoff_axes = ("Retain Class. Acc", "Forget Class. Acc")
    tradeoff_log_y = False
    tradeoff_directions = ("higher is better", "lower is better")

    def __init__(self, data_dir: str | Path, train_split_dir: str | None = None, **eval_options: Any) -> None:
        self.data_dir = Path(data_dir)
        self.data = MllmuBench(self.data_dir, train_split_dir)
        self.options = EvalOptions(**eval_options)

    @classmethod
    def write_builtin(cls, out_dir: Path, **settings: Any) -> None:
        write_mllmu(out_dir, **settings)

    @staticmethod
    def table_rows(run: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for modality, title in MODALITY_TITLES.items():
            row = {
                "method": run.get("method") or f"vanilla_{run['split']}",
                "forget_split": summary["forget_split"],
                "forget data": {"multimodal": "image+text", "unimodal": "text-only"}.get(
                    run.get("forget_modality", ""), "—") if run["kind"] == "forget" else "—",
                "eval modality": title,
            }
            for set_name in SETS:
                values = summary["sets"][set_name][modality]
                for column, key, scale in METRIC_COLUMNS:
                    value = values.get(key)
                    row[f"{SET_TITLES[set_name]} {column}"] = None if value is None else scale * value
            unimodal = "-uni" if run.get("forget_modality") == "unimodal" else ""
            row["label"] = f"{row['method']}{unimodal} ({'img' if modality == 'image_text' else 'txt'})"
            rows.append(row)
        return rows

    @staticmethod
    def finalize_rows(rows: list[dict[str, Any]]) -> None:
        """Every column comes from one run's summary."""

    def texts(self) -> list[str]:
        return self.data.texts()

    def train_examples(self, split: str) -> list[Example]:
        return self.data.train_examples(split)

    def forget_examples(self, split: str, target: str) -> list[Example]:
        if target != "answer":
            raise ValueError(f"MLLMU-Bench has no refusal targets (method needs {target!r}); use ga, gd, kl or npo")
        return self.data.train_examples(split)

    def retain_examples(self, forget_split: str) -> list[Example]:
        return self.data.train_examples(self.data.retain_split(forget_split))

    def evaluate(
        self, load_model: Callable[[], tuple[Any, ChatCollator]], settings: Mapping[str, Any], out_dir: Path,
        reference_eval_dir: Path | None, accelerator: Accelerator | None,
    ) -> dict[str, Any]:
        return evaluate_run(self.data, self.options, load_model, settings, out_dir, accelerator)
