"""EFUF on the shared engine: curated clauses as weighted streams, caption evaluation, its table rows.

Streams (``efuf.release``): ``forget`` (hallucinated clauses), ``positive`` (grounded clauses), ``sentence``
(whole grounded captions) and ``gold`` (instruction data); the split is ``curated``. The curated files come from
``scripts/curate_efuf.bash`` (or the release); finetune (split ``full``) trains a captioner on the instruction
file, which only the built-in world needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from efuf.evaluate import EvalOptions, evaluation
from efuf.release import SPLIT, STREAMS, EfufData, EfufOptions
from efuf.synthetic import write_efuf
from unlearning.benchmarks import BENCHMARKS, Column, Report, method_label
from unlearning.data.examples import DataError, Example
from unlearning.evaluation.runner import EvalSettings, Evaluation
from unlearning.evaluation.schema import Field
from unlearning.evaluation.shape import Expectation

# (column, aggregate key, better, scale)
METRICS = (("CHAIR_s", "chair_s", "lower", 100.0), ("CHAIR_i", "chair_i", "lower", 100.0),
           ("BLEU-1", "bleu1", "higher", 100.0), ("BLEU-2", "bleu2", "higher", 100.0),
           ("BLEU-4", "bleu4", "higher", 100.0), ("Length", "length", None, 1.0),
           ("Grounded", "grounded_per_caption", "higher", 1.0))
GENERAL = (("POPE", "pope"), ("MME", "mme"))


def _captions(summary: Mapping[str, Any], row: Mapping[str, Any]) -> int:
    return summary["captions"]["n_captions"]


def _general_n(key: str) -> Callable[[Mapping[str, Any], Mapping[str, Any]], int | None]:
    return lambda summary, row: ((summary.get("general") or {}).get(key) or {}).get("n")


@BENCHMARKS.register("efuf")
class EfufTask:
    name = "efuf"
    stream_names = STREAMS
    # CHAIR and BLEU in percent; Length in words; Grounded: objects per caption the image holds; POPE / MME accuracy
    # (percent) when attached (general_evals).
    report = Report(
        columns=(Column("run"), Column("method"),
                 *(Column(title, better, n=_captions) for title, _, better, _ in METRICS),
                 *(Column(title, "higher", n=_general_n(key)) for title, key in GENERAL)),
        tradeoff=("BLEU-4", "CHAIR_i"), log_y=False,
    )
    # What table_rows reads from a summary, checked before it runs (``unlearning.evaluation.schema``).
    summary_fields = (
        Field("captions", "object"), *(Field(f"captions.{key}", "number") for _, key, _, _ in METRICS),
        Field("general", "object", True, True),
        *(Field(f"general.{key}", "object", optional=True) for _, key in GENERAL),
        *(Field(f"general.{key}.accuracy", "number") for _, key in GENERAL),
    )
    demo_rows = ("method",)
    demo_shape = (
        Expectation("the vanilla captioner hallucinates (CHAIR_s >= 20)", lambda r: r["vanilla_full"]["CHAIR_s"] >= 20),
        Expectation("EFUF with the sentence loss lowers hallucination: CHAIR_i below the vanilla captioner's",
                    lambda r: r["efuf_sentence"]["CHAIR_i"] < r["vanilla_full"]["CHAIR_i"]),
        Expectation("and keeps its captions: BLEU-1 within 5 points of the vanilla captioner's or above",
                    lambda r: r["efuf_sentence"]["BLEU-1"] >= r["vanilla_full"]["BLEU-1"] - 5),
        Expectation("GA damages the captions: BLEU-1 at least 20 points below the vanilla captioner's",
                    lambda r: r["ga"]["BLEU-1"] <= r["vanilla_full"]["BLEU-1"] - 20),
    )

    def __init__(self, data_dir: str | Path, **options: Any) -> None:
        self.data_dir = Path(data_dir)
        self.data = EfufData(self.data_dir, EfufOptions(**options))

    @classmethod
    def write_builtin(cls, out_dir: Path, **settings: Any) -> None:
        write_efuf(out_dir, **settings)

    @staticmethod
    def table_rows(run: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
        captions = summary["captions"]
        row: dict[str, Any] = {"method": method_label(run, "vanilla")}
        for title, key, _, scale in METRICS:
            row[title] = scale * captions[key]
        general = summary.get("general") or {}
        for title, key in GENERAL:
            row[title] = 100 * general[key]["accuracy"] if key in general else None
        return [row]

    @staticmethod
    def finalize_rows(rows: list[dict[str, Any]]) -> None:
        """Every column comes from one run's summary."""

    def texts(self) -> list[str]:
        return [*(f"{e.question} {e.answer}" for e in self.data.instruct_examples()), self.data.options.prompt]

    def train_examples(self, split: str) -> list[Example]:
        if split != "full":
            raise DataError(f"EFUF finetunes on its instruction file ({self.data.options.instruct}) as split 'full'; "
                            f"got split {split!r}")
        return self.data.instruct_examples()

    def stream(self, name: str, forget_split: str) -> list[Example]:
        if forget_split != SPLIT:
            raise DataError(f"EFUF forgets its curated clauses (forget_split={SPLIT}); got {forget_split!r}")
        return self.data.stream(name)

    @staticmethod
    def unit_of(example: Example) -> str:
        """The unit of a curated clause: its image (the relearning attack relearns a fraction of the images'
        hallucinated clauses; the evaluation's images are held out from them)."""
        if not isinstance(example.image, Path):
            raise DataError(f"EFUF clause {example.uid!r} has no image file")
        return example.image.name

    def evaluation(self, settings: EvalSettings, forget_split: str, retain_split: str | None,
                   **eval_options: Any) -> Evaluation:
        if retain_split is not None:
            raise ValueError("EFUF evaluates captions of held-out images; leave retain_split unset")
        return evaluation(self.data, EvalOptions(**eval_options), settings)
