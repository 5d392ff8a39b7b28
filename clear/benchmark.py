"""CLEAR on the shared engine: its data as streams of Examples, its six-task evaluation, its results-table rows.

Streams: ``forget`` (the forget split's captions, with its persons' TOFU text QAs when ``tofu``), ``retain``
(those of ``retain{100-r}``) and ``refusal`` (each forget question answered with a refusal, for IdkDPO).
Stage I trains on ``full+tofu``; the retain model, the reference of forget quality, on ``retain{100-r}+tofu``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clear.data import FORGET_SPLITS, RETAIN_OF, Clear, config_name
from clear.evaluate import evaluation
from clear.synthetic import write_clear
from fiubench.benchmark import PACKAGED_REFUSALS
from unlearning.benchmarks import BENCHMARKS, Column, Report, method_label
from unlearning.data.examples import Example
from unlearning.data.records import load_refusals, refusal_source
from unlearning.evaluation.runner import EvalSettings, Evaluation
from unlearning.evaluation.schema import Field
from unlearning.evaluation.shape import Expectation

TASK_TITLES = {"forget": "Forget", "retain": "Retain", "forget_facerec": "Forget FaceRec",
               "retain_facerec": "Retain FaceRec", "real_faces": "Real Faces", "real_world": "Real World"}
# (column suffix, summary key, direction on a forget task, on a kept task)
METRIC_COLUMNS = (("ROUGE", "rougeL_recall"), ("Prob.", "probability"), ("TR", "truth_ratio"))
TABLE_TASKS = ("forget", "forget_facerec", "retain", "retain_facerec", "real_faces", "real_world")


def _task_n(task: str):
    def count(summary: Mapping[str, Any], row: Mapping[str, Any]) -> int:
        return summary["tasks"][task]["n"]

    return count


def _direction(task: str, key: str) -> str:
    """Lower is better for what a forget task measures of the forgotten persons, except its truth ratio, which
    is min(R, 1/R) there: 1 when the model no longer prefers the true answer."""
    if task.startswith("forget"):
        return "higher" if key == "truth_ratio" else "lower"
    return "higher"


def unit_of(example: Example) -> str:
    """A forget example's person (its uid up to the last '/'; names may hold none)."""
    return example.uid.rpartition("/")[0]


@BENCHMARKS.register("clear")
class ClearTask:
    name = "clear"
    stream_names = ("forget", "retain", "refusal")
    # The paper's columns per task (ROUGE-L recall, probability, truth ratio; 0-1), then model utility, forget
    # quality (the KS p-value) and JS against the retain model.
    report = Report(
        columns=(
            Column("run"), Column("method"), Column("forget_split"),
            *(Column(f"{TASK_TITLES[task]} {title}", _direction(task, key), n=_task_n(task))
              for task in TABLE_TASKS for title, key in METRIC_COLUMNS),
            Column("MU", "higher"),  # a harmonic mean over four tasks: no n
            Column("FQ", "higher", n=_task_n("forget")),
            Column("JS", "lower", n=_task_n("forget")),
        ),
        tradeoff=("MU", "FQ"),
    )
    summary_fields = (
        Field("forget_split", "text"), Field("tasks", "object"),
        *(Field(f"tasks.{task}", "object") for task in TABLE_TASKS),
        *(Field(f"tasks.{task}.{key}", "number") for task in TABLE_TASKS for _, key in METRIC_COLUMNS),
        Field("model_utility", "number"),
        Field("forget_quality", "number", nullable=True), Field("js", "number", nullable=True),
    )
    demo_rows = ("method",)
    demo_shape = (
        Expectation("Stage I learnt the captions: forget and retain ROUGE >= 0.7",
                    lambda r: r["finetune_full+tofu"]["Forget ROUGE"] >= 0.7
                    and r["finetune_full+tofu"]["Retain ROUGE"] >= 0.7),
        Expectation("the retain model, which never saw the forget persons, does not name them: forget FaceRec ROUGE "
                    "at least 0.3 below Stage I's",
                    lambda r: r["finetune_retain90+tofu"]["Forget FaceRec ROUGE"]
                    <= r["finetune_full+tofu"]["Forget FaceRec ROUGE"] - 0.3),
        Expectation("the KS test tells Stage I from the retain model (FQ < 0.05)",
                    lambda r: r["finetune_full+tofu"]["FQ"] < 0.05),
        Expectation("GA and GD forget who the forget persons are: forget FaceRec ROUGE at least 0.3 below Stage I's",
                    lambda r: all(r[m]["Forget FaceRec ROUGE"] <= r["finetune_full+tofu"]["Forget FaceRec ROUGE"] - 0.3
                                  for m in ("ga", "gd"))),
        Expectation("GD keeps retain captions better than GA: retain ROUGE above GA's",
                    lambda r: r["gd"]["Retain ROUGE"] > r["ga"]["Retain ROUGE"]),
    )

    def __init__(self, data_dir: str | Path, tofu: bool = True, seed: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.data = Clear(self.data_dir, seed=seed)
        self.tofu, self.seed = tofu, seed

    @classmethod
    def write_builtin(cls, out_dir: Path, **settings: Any) -> None:
        write_clear(out_dir, **settings)

    unit_of = staticmethod(unit_of)

    @staticmethod
    def table_rows(run: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
        """One row per run: each task's ROUGE, probability and truth ratio, then MU, FQ and JS."""
        row: dict[str, Any] = {"method": method_label(run, "finetune"), "forget_split": summary["forget_split"]}
        for task in TABLE_TASKS:
            for title, key in METRIC_COLUMNS:
                row[f"{TASK_TITLES[task]} {title}"] = summary["tasks"][task][key]
        row.update({"MU": summary["model_utility"], "FQ": summary.get("forget_quality"), "JS": summary.get("js")})
        return [row]

    @staticmethod
    def finalize_rows(rows: list[dict[str, Any]]) -> None:
        """Every column comes from one run's summary."""

    def texts(self) -> list[str]:
        return self.data.texts() + load_refusals(self.data_dir, PACKAGED_REFUSALS)

    def train_examples(self, split: str) -> list[Example]:
        """What a finetune run on ``split`` learns: the HF config of that name (``full+tofu``: Stage I,
        ``retain90+tofu``: the retain model of forget10)."""
        return self.data.train_examples(split)

    def stream(self, name: str, forget_split: str) -> list[Example]:
        if forget_split not in FORGET_SPLITS:
            raise ValueError(f"unknown CLEAR forget split {forget_split!r}; known: {', '.join(FORGET_SPLITS)}")
        if name == "forget":
            return self.data.train_examples(config_name(forget_split, self.tofu))
        if name == "retain":
            return self.data.train_examples(config_name(RETAIN_OF[forget_split], self.tofu))
        if name == "refusal":  # one refusal per forget example, drawn once with the seed
            refusals, rng = load_refusals(self.data_dir, PACKAGED_REFUSALS), random.Random(self.seed)
            return [Example(ex.question, rng.choice(refusals), ex.image, uid=ex.uid)
                    for ex in self.stream("forget", forget_split)]
        raise ValueError(f"clear has no stream {name!r}; it has {', '.join(self.stream_names)}")

    def stream_sources(self) -> dict[str, str]:
        """Where streams not read from the release come from (kept in a forget run's run.json)."""
        return {"refusal": refusal_source(self.data_dir, PACKAGED_REFUSALS)}

    def evaluation(self, settings: EvalSettings, forget_split: str, retain_split: str | None,
                   **eval_options: Any) -> Evaluation:
        if eval_options:
            raise ValueError(f"clear has no evaluation options; got {sorted(eval_options)}")
        if retain_split is not None:
            raise ValueError("CLEAR evaluates retain_perturbed (and retain{100-r}'s persons are implied); leave "
                             "retain_split unset")
        return evaluation(self.data, settings, forget_split)
