"""UMU-Bench on the shared engine: its splits as streams of Examples, its three-set evaluation with the two modalities
side by side, its results-table row.

Streams: ``forget`` (the forget split's MM_QA with their images and UM_QA as text, as the authors train on both),
``retain`` (those of ``retain_{100-r}``) and ``refusal`` (each forget question answered with a refusal, for PO and
IdkDPO; the toolkit's own refusals, ``umu/refusals.json``, one per question drawn once with the seed).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from umu.data import UmuBench
from umu.evaluate import SETS, EvalOptions, evaluation
from umu.synthetic import write_umu
from unlearning.benchmarks import BENCHMARKS, Column, Report, method_label
from unlearning.data.examples import Example
from unlearning.evaluation.runner import EvalSettings, Evaluation
from unlearning.evaluation.schema import Field
from unlearning.evaluation.shape import Expectation

REFUSALS = Path(__file__).with_name("refusals.json")
SET_TITLES = {"forget": "Forget", "retain": "Retain", "real": "Real"}
TASK_TITLES = {"classification": "Class.", "cloze": "Cloze", "generation": "ROUGE-L"}
MODALITY_TITLES = {"image_text": "MM", "text": "UM"}  # the paper's multimodal / unimodal
# The paired column of each set and task: the paper's AccF, AccR, RLF, RLR, and the same rule elsewhere.
PAIRED_TITLES = {("forget", "classification"): "AccF", ("retain", "classification"): "AccR",
                 ("forget", "generation"): "RLF", ("retain", "generation"): "RLR"}


def paired_title(set_name: str, task: str) -> str:
    """The column of a set's modality-paired number: the paper's name where it has one."""
    return PAIRED_TITLES.get((set_name, task), f"{SET_TITLES[set_name]} {TASK_TITLES[task]} All")


def _value(set_name: str, task: str, modality: str | None, values: Mapping[str, Any]) -> float | None:
    """One cell: accuracies in percent, ROUGE-L in [0, 1]. The paired accuracy on the forget set counts a pair as
    known when either modality answers it (100 - "All Modal Question Error"); elsewhere when both do ("All Modal
    Question Accuracy"): the rule of the all-modal ROUGE-L's contraharmonic / harmonic mean (docs/umu.md)."""
    if task == "generation":
        return values.get(f"rougeL_f_{modality}") if modality else values.get("all_modal_rougeL")
    if modality:
        value = values.get(modality)
    elif set_name == "forget":
        value = None if values.get("all_wrong") is None else 1 - values["all_wrong"]
    else:
        value = values.get("all_correct")
    return None if value is None else 100 * value


def _count(set_name: str, task: str) -> Callable[[Mapping[str, Any], Mapping[str, Any]], int | None]:
    """The question pairs behind a cell (each modality asks one question of each pair)."""
    return lambda summary, row: summary["sets"][set_name][task].get("n_pairs")


def _columns(set_name: str) -> list[Column]:
    better = "lower" if set_name == "forget" else "higher"
    out = []
    for task, title in TASK_TITLES.items():
        out += [Column(f"{SET_TITLES[set_name]} {title} {m}", better, n=_count(set_name, task))
                for m in MODALITY_TITLES.values()]
        out.append(Column(paired_title(set_name, task), better, n=_count(set_name, task)))
    return out


@BENCHMARKS.register("umu")
class UmuTask:
    name = "umu"
    stream_names = ("forget", "retain", "refusal")

    # One row per run: each set's classification, cloze and generation asked with the image (MM) and as text
    # (UM), and their paired aggregate.
    report = Report(
        columns=(Column("run"), Column("method"), Column("forget_split"),
                 *(column for set_name in SETS for column in _columns(set_name))),
        tradeoff=("AccR", "AccF"), log_y=False,
    )
    # What table_rows reads from a summary, checked before it runs (``unlearning.evaluation.schema``).
    summary_fields = (
        Field("forget_split", "text"), Field("sets", "object"),
        *(Field(f"sets.{s}.{t}", "object") for s in SETS for t in TASK_TITLES),
        *(Field(f"sets.{s}.{t}.{k}", "number", nullable=True) for s in SETS for t in ("classification", "cloze")
          for k in ("image_text", "text", "all_correct", "all_wrong")),
        *(Field(f"sets.{s}.generation.{k}", "number", nullable=True) for s in SETS
          for k in ("rougeL_f_image_text", "rougeL_f_text", "all_modal_rougeL")),
    )
    # The built-in demo (rows by method): what its table must show on any machine. Measured (docs/umu.md): the
    # vanilla model at 62-75 classification and ROUGE-L 0.59 / 0.63; GA and NPO at RLF 0.13 / 0.15 and RLR 0.20 /
    # 0.22; GD and KL at RLR 0.62 / 0.63.
    demo_rows = ("method",)
    demo_shape = (
        Expectation("the vanilla model learnt the profiles: classification (MM and UM) >= 50 on forget and retain "
                    "(chance 25), RLF and RLR >= 0.4",
                    lambda r: min(r["vanilla_full"][f"{s} Class. {m}"] for s in ("Forget", "Retain")
                                  for m in ("MM", "UM")) >= 50
                    and min(r["vanilla_full"]["RLF"], r["vanilla_full"]["RLR"]) >= 0.4),
        Expectation("GA and NPO forget the generated answers in both modalities: RLF at least 0.25 below the vanilla "
                    "model's",
                    lambda r: all(r[m]["RLF"] <= r["vanilla_full"]["RLF"] - 0.25 for m in ("ga", "npo"))),
        Expectation("and lose the retain answers with them: RLR at least 0.25 below the vanilla model's",
                    lambda r: all(r[m]["RLR"] <= r["vanilla_full"]["RLR"] - 0.25 for m in ("ga", "npo"))),
        Expectation("GD and KL keep the retain answers: RLR within 0.05 of the vanilla model's",
                    lambda r: all(r[m]["RLR"] >= r["vanilla_full"]["RLR"] - 0.05 for m in ("gd", "kl"))),
    )

    def __init__(self, data_dir: str | Path, train_qa: str = "both", retain_pool: str = "all", seed: int = 0
                 ) -> None:
        self.data_dir, self.seed = Path(data_dir), seed
        self.data = UmuBench(self.data_dir, train_qa, retain_pool)

    @classmethod
    def write_builtin(cls, out_dir: Path, **settings: Any) -> None:
        write_umu(out_dir, **settings)

    @staticmethod
    def table_rows(run: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
        row: dict[str, Any] = {"method": method_label(run, "vanilla"), "forget_split": summary["forget_split"]}
        for set_name in SETS:
            for task, title in TASK_TITLES.items():
                values = summary["sets"][set_name][task]
                for modality, short in MODALITY_TITLES.items():
                    row[f"{SET_TITLES[set_name]} {title} {short}"] = _value(set_name, task, modality, values)
                row[paired_title(set_name, task)] = _value(set_name, task, None, values)
        row["label"] = row["method"]
        return [row]

    @staticmethod
    def finalize_rows(rows: list[dict[str, Any]]) -> None:
        """Every column comes from one run's summary."""

    def texts(self) -> list[str]:
        return self.data.texts() + json.loads(REFUSALS.read_text(encoding="utf-8"))

    def train_examples(self, split: str) -> list[Example]:
        return self.data.train_examples(split)

    def stream(self, name: str, forget_split: str) -> list[Example]:
        if name == "forget":
            return self.data.train_examples(forget_split)
        if name == "retain":
            return self.data.retain_examples(forget_split)
        if name == "refusal":  # the authors draw a refusal each time a batch is built (PO.py:125-130)
            refusals, rng = json.loads(REFUSALS.read_text(encoding="utf-8")), random.Random(self.seed)
            return [dataclasses.replace(ex, answer=rng.choice(refusals))
                    for ex in self.data.train_examples(forget_split)]
        raise ValueError(f"umu has no stream {name!r}; it has {', '.join(self.stream_names)}")

    @staticmethod
    def stream_sources() -> dict[str, str]:
        """Where streams not read from the release come from (kept in a forget run's run.json)."""
        return {"refusal": f"the toolkit's refusals ({REFUSALS.name}); the authors' unlearn/idk.txt is not in the "
                           "release"}

    def evaluation(self, settings: EvalSettings, forget_split: str, retain_split: str | None,
                   **eval_options: Any) -> Evaluation:
        expected = self.data.retain_split(forget_split)
        if retain_split not in (None, expected):
            raise ValueError(f"UMU-Bench evaluates {forget_split} against {expected}; leave retain_split unset")
        return evaluation(self.data, EvalOptions(**eval_options), settings, forget_split)
