"""MLLMU-Bench on the shared engine: its data as streams of Examples, its four-set evaluation, its results-table rows.

Streams: ``forget`` (the forget split's training QAs) and ``retain`` (those of ``retain_{100-r}``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mllmu.data import MllmuBench
from mllmu.evaluate import SETS, EvalOptions, evaluation
from mllmu.synthetic import write_mllmu
from unlearning.benchmarks import BENCHMARKS, Column, Report, method_label
from unlearning.data.examples import Example
from unlearning.evaluation.judge.judgments import judged_cell
from unlearning.evaluation.runner import EvalSettings, Evaluation
from unlearning.evaluation.schema import Field
from unlearning.evaluation.shape import Expectation

SET_TITLES = {"forget": "Forget", "test": "Test", "retain": "Retain", "celebrity": "Celebrity"}
METRIC_COLUMNS = (("Class. Acc", "classification_acc", 100), ("ROUGE-1", "rouge1_f", 1), ("ROUGE-2", "rouge2_f", 1),
                  ("ROUGE-L", "rougeL_f", 1), ("Fact.", "factuality", 1), ("Cloze Acc", "cloze_acc", 100))
FORGOTTEN_SETS = ("forget", "test")  # lower is better there: the forget profiles, with their own or other images
MODALITY_TITLES = {"image_text": "image+text", "text": "text-only"}


def _count(set_name: str, key: str) -> Callable[[Mapping[str, Any], Mapping[str, Any]], int | None]:
    """The samples behind one set's metric in a row's modality: its questions of that task (factuality: the
    judgments scored)."""
    def count(summary: Mapping[str, Any], row: Mapping[str, Any]) -> int | None:
        modality = next(m for m, title in MODALITY_TITLES.items() if title == row["eval modality"])
        values = summary["sets"][set_name][modality]
        if key == "factuality":
            return (values.get("judge") or {}).get("n_scored")
        task = {"classification_acc": "n_classification", "cloze_acc": "n_cloze"}.get(key, "n_generation")
        return values.get(task)

    return count


def _demo(rows: Mapping[str, Mapping[str, Any]], method: str) -> Mapping[str, Any]:
    """A demo row evaluated on image+text questions: the vanilla model's, or a method's forgetting with image+text
    data."""
    return rows[f"{method}/{'—' if method == 'vanilla_full' else 'image+text'}/image+text"]


@BENCHMARKS.register("mllmu")
class MllmuTask:
    name = "mllmu"
    stream_names = ("forget", "retain")

    # The paper's columns per set (accuracies in percent, ROUGE-1/2/L F in 0-1, factuality 1-10); one row per
    # run and evaluated modality.
    report = Report(
        columns=(Column("run"), Column("method"), Column("forget_split"), Column("forget data"),
                 Column("eval modality"),
                 *(Column(f"{SET_TITLES[s]} {title}", "lower" if s in FORGOTTEN_SETS else "higher",
                          judge="llm" if key == "factuality" else "none", n=_count(s, key))
                   for s in SETS for title, key, _ in METRIC_COLUMNS)),
        tradeoff=("Retain Class. Acc", "Forget Class. Acc"), log_y=False, row_key="eval modality",
    )
    # What table_rows reads from a summary, checked before it runs (``unlearning.evaluation.schema``).
    summary_fields = (
        Field("forget_split", "text"), Field("sets", "object"),
        *(Field(f"sets.{s}", "object") for s in SETS),
        *(Field(f"sets.{s}.{m}", "object") for s in SETS for m in MODALITY_TITLES),
        *(Field(f"sets.{s}.{m}.{key}", "number", optional=True, nullable=True) for s in SETS for m in MODALITY_TITLES
          for key in (*(key for _, key, _ in METRIC_COLUMNS), "factuality_partial")),
        *(Field(f"sets.{s}.{m}.judge", "object", optional=True, nullable=True) for s in SETS for m in MODALITY_TITLES),
    )
    # The built-in demo, forgetting with image+text data and evaluated on image+text questions (rows by method,
    # forget data and evaluated modality).
    demo_rows = ("method", "forget data", "eval modality")
    demo_shape = (
        Expectation("the vanilla model learnt the profiles: forget and retain classification accuracy >= 90",
                    lambda r: _demo(r, "vanilla_full")["Forget Class. Acc"] >= 90
                    and _demo(r, "vanilla_full")["Retain Class. Acc"] >= 90),
        Expectation("GA and NPO forget: forget classification accuracy at least 40 points below the vanilla model's",
                    lambda r: all(_demo(r, m)["Forget Class. Acc"] <= _demo(r, "vanilla_full")["Forget Class. Acc"]
                                  - 40 for m in ("ga", "npo"))),
        Expectation("and lose retain knowledge with it: retain classification at least 40 points below",
                    lambda r: all(_demo(r, m)["Retain Class. Acc"] <= _demo(r, "vanilla_full")["Retain Class. Acc"]
                                  - 40 for m in ("ga", "npo"))),
        Expectation("GD and KL keep retain knowledge: retain classification within 10 points of the vanilla model's",
                    lambda r: all(_demo(r, m)["Retain Class. Acc"] >= _demo(r, "vanilla_full")["Retain Class. Acc"]
                                  - 10 for m in ("gd", "kl"))),
        Expectation("while forgetting the generated answers: forget ROUGE-L at least 0.1 below the vanilla model's",
                    lambda r: all(_demo(r, m)["Forget ROUGE-L"] <= _demo(r, "vanilla_full")["Forget ROUGE-L"] - 0.1
                                  for m in ("gd", "kl"))),
    )

    def __init__(self, data_dir: str | Path, train_split_dir: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.data = MllmuBench(self.data_dir, train_split_dir)

    @classmethod
    def write_builtin(cls, out_dir: Path, **settings: Any) -> None:
        write_mllmu(out_dir, **settings)

    @staticmethod
    def table_rows(run: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for modality, title in MODALITY_TITLES.items():
            row = {
                "method": method_label(run, "vanilla"),
                "forget_split": summary["forget_split"],
                "forget data": {"multimodal": "image+text", "unimodal": "text-only"}.get(
                    run.get("forget_modality", ""), "—") if run["kind"] == "forget" else "—",
                "eval modality": title,
            }
            for set_name in SETS:
                values = summary["sets"][set_name][modality]
                for column, key, scale in METRIC_COLUMNS:
                    if key == "factuality":
                        value = judged_cell(values.get("factuality_partial", values.get(key)), values.get("judge"))
                    else:
                        value = values.get(key)
                        value = None if value is None else scale * value
                    row[f"{SET_TITLES[set_name]} {column}"] = value
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

    def stream(self, name: str, forget_split: str) -> list[Example]:
        if name == "forget":
            return self.data.train_examples(forget_split)
        if name == "retain":
            return self.data.train_examples(self.data.retain_split(forget_split))
        raise ValueError(f"mllmu has no stream {name!r}; it has {', '.join(self.stream_names)}")

    def evaluation(self, settings: EvalSettings, forget_split: str, retain_split: str | None,
                   **eval_options: Any) -> Evaluation:
        expected = self.data.retain_split(forget_split)
        if retain_split not in (None, expected):
            raise ValueError(f"MLLMU-Bench evaluates {forget_split} against {expected}; leave retain_split unset")
        return evaluation(self.data, EvalOptions(**eval_options), settings, forget_split)
