"""FIUBench on the shared engine: its data as streams of Examples, its evaluation, its rows of the results table.

Streams: ``forget`` (the split's QAs), ``retain`` (every identity outside all forget splits) and ``refusal``
(each forget question answered with a refusal, for PO).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fiubench.data import FiuBench
from fiubench.evaluate import evaluation
from fiubench.synthetic import write_fiubench
from unlearning.benchmarks import BENCHMARKS, Column, Report, method_label
from unlearning.data.examples import Example
from unlearning.data.records import load_refusals, refusal_source
from unlearning.evaluation.judge.judgments import judged_cell
from unlearning.evaluation.runner import EvalSettings, Evaluation
from unlearning.evaluation.schema import Field
from unlearning.evaluation.shape import Expectation

PACKAGED_REFUSALS = Path(__file__).with_name("refusals.json")
log = logging.getLogger(__name__)


def _forget_n(summary: Mapping[str, Any], row: Mapping[str, Any]) -> int:
    return summary["forget"]["n"]


def _retain_n(summary: Mapping[str, Any], row: Mapping[str, Any]) -> int:
    return summary["retain"]["n"]


def _judged_n(summary: Mapping[str, Any], row: Mapping[str, Any]) -> int | None:
    counts = (summary.get("judge") or {}).get("retain")
    return counts["n_scored"] if counts else None


def _members_n(summary: Mapping[str, Any], row: Mapping[str, Any]) -> int | None:
    auc = summary.get("membership_auc") or {}
    return auc["n_members"] + auc["n_nonmembers"] if auc else None


@BENCHMARKS.register("fiubench")
class FiuBenchTask:
    name = "fiubench"

    def __init__(self, data_dir: str | Path, max_identities: int = 400, seed: int = 0, capitalize: bool = False
                 ) -> None:
        self.data_dir = Path(data_dir)
        self.data = FiuBench(self.data_dir, max_identities=max_identities, capitalize=capitalize)
        self.seed, self.capitalize = seed, capitalize

    @classmethod
    def write_builtin(cls, out_dir: Path, **settings: Any) -> None:
        write_fiubench(out_dir, **settings)

    stream_names = ("forget", "retain", "refusal")
    # Paper Table 2's columns (percent; KS as log10 p), then the columns behind the demo's narrative.
    report = Report(
        columns=(
            Column("run"), Column("method"), Column("forget_split"), Column("ROUGE-L", "higher", n=_retain_n),
            Column("GPT", "higher", judge="llm", n=_judged_n), Column("Truth", "higher", n=_retain_n),
            Column("ACC", "higher"), Column("Avg MU", "higher"),  # means of several metrics: no n
            Column("KS", "higher", n=_forget_n), Column("EM", "lower", n=_forget_n),
            Column("MIA", "lower", n=_forget_n), Column("APE", "lower", n=_forget_n),
            Column("Avg FQ", "higher"), Column("MU (hmean)", "higher"),  # across runs; a mean of several: no n
            Column("forget ROUGE-L", "lower", n=_forget_n), Column("forget quality", "higher", n=_forget_n),
            Column("MIA AUC (Min-K++)", "lower", n=_members_n),
        ),
        tradeoff=("MU (hmean)", "forget quality"),  # x, y (log scale) of the results plot
    )
    # What table_rows reads from a summary, checked before it runs (``unlearning.evaluation.schema``).
    summary_fields = (
        Field("forget_split", "text"), Field("forget", "object"), Field("retain", "object"),
        *(Field(f"{part}.{key}", "number", nullable=True) for part, key in (
            ("forget", "rougeL_recall"), ("forget", "exact_match"), ("retain", "rougeL_recall"),
            ("retain", "truth_ratio"))),
        *(Field(f"{part}.{key}", "number", optional=True, nullable=True) for part, key in (
            ("forget", "mia"), ("forget", "ape"), ("retain", "gpt"), ("retain", "gpt_partial"))),
        Field("model_utility", "number", nullable=True), Field("model_utility_terms", "list", True, True),
        Field("forget_quality", "number", True, True), Field("forget_quality_log10", "number", True, True),
        Field("general", "object", True, True), Field("general.acc", "number", True, True),
        Field("membership_auc", "object", True, True), Field("membership_auc.mink_pp", "number", True, True),
        Field("judge", "object", True, True), Field("judge.retain", "object", True, True),
    )
    demo_rows = ("method",)
    demo_shape = (
        Expectation("Stage I memorises the forget identities (forget ROUGE-L >= 90); the retain model, which never saw "
                    "them, does not (< 75)", lambda r: r["stage1_full"]["forget ROUGE-L"] >= 90
                    and r["stage1_retain"]["forget ROUGE-L"] < 75),
        Expectation("the KS test tells Stage I from the retain model (forget quality < 0.05)",
                    lambda r: r["stage1_full"]["forget quality"] < 0.05),
        Expectation("GA and NPO forget: forget ROUGE-L at least 20 points below Stage I's",
                    lambda r: all(r[m]["forget ROUGE-L"] <= r["stage1_full"]["forget ROUGE-L"] - 20
                                  for m in ("ga", "npo"))),
        Expectation("and damage retain answers with them: retain ROUGE-L at least 20 points below Stage I's",
                    lambda r: all(r[m]["ROUGE-L"] <= r["stage1_full"]["ROUGE-L"] - 20 for m in ("ga", "npo"))),
        Expectation("GD and KL keep retain answers: retain ROUGE-L within 10 points of Stage I's",
                    lambda r: all(r[m]["ROUGE-L"] >= r["stage1_full"]["ROUGE-L"] - 10 for m in ("gd", "kl"))),
        Expectation("while forgetting some: forget ROUGE-L at least 5 points below Stage I's",
                    lambda r: all(r[m]["forget ROUGE-L"] <= r["stage1_full"]["forget ROUGE-L"] - 5
                                  for m in ("gd", "kl"))),
    )

    @staticmethod
    def table_rows(run: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
        """One results-table row from a run's ``run.json`` and ``eval/summary.json`` (Avg FQ: see finalize_rows)."""
        forget, retain = summary["forget"], summary["retain"]
        general = summary.get("general") or {}
        mu_parts = [retain["rougeL_recall"], retain.get("gpt"), retain["truth_ratio"], general.get("acc")]
        return [{
            "method": method_label(run, "stage1"),
            "forget_split": summary["forget_split"],
            "ROUGE-L": _percent(retain["rougeL_recall"]),
            "GPT": judged_cell(retain.get("gpt_partial", retain.get("gpt")), (summary.get("judge") or {}).get("retain"),
                               scale=100.0),
            "Truth": _percent(retain["truth_ratio"]),
            "ACC": _percent(general.get("acc")),
            "Avg MU": None if None in mu_parts else _percent(sum(mu_parts) / 4),
            "KS": summary.get("forget_quality_log10"),
            "EM": _percent(forget["exact_match"]),
            "MIA": _percent(forget.get("mia")),
            "APE": _percent(forget.get("ape")),
            "MU (hmean)": _percent(summary["model_utility"]),
            "mu_terms": tuple(summary.get("model_utility_terms") or ()),
            "forget ROUGE-L": _percent(forget["rougeL_recall"]),
            "forget quality": summary.get("forget_quality"),
            "MIA AUC (Min-K++)": (summary.get("membership_auc") or {}).get("mink_pp"),
        }]

    @staticmethod
    def finalize_rows(rows: list[dict[str, Any]]) -> None:
        """Avg FQ = 0.5 norm(KS) + 0.15 (1 - EM) + 0.2 (1 - MIA) + 0.15 (1 - APE), norm(KS) = 1 - KS / KS_min,
        with KS_min the lowest log10 p among the rows of the same model and forget split (the paper's
        Appendix D.3 min-max normalisation over the runs compared).

        MU (hmean) of a run whose retain split was not judged is left out (n/a) when other runs' MU includes GPT:
        one column means one formula."""
        with_gpt = {row["model"] for row in rows if "gpt" in row.get("mu_terms", ())}
        for row in rows:
            if row["model"] in with_gpt and "gpt" not in row.get("mu_terms", ()) and row["MU (hmean)"] is not None:
                log.warning("%s: MU (hmean) left out: it has no GPT term, which other runs' MU has", row.get("run"))
                row["MU (hmean)"] = None
        for row in rows:
            group = [r["KS"] for r in rows if (r["model"], r["forget_split"]) == (row["model"], row["forget_split"])
                     and r.get("KS") is not None]
            parts = (row.get("KS"), row.get("EM"), row.get("MIA"), row.get("APE"))
            if None in parts or not group:
                row["Avg FQ"] = None
                continue
            ks_min = min(group)
            norm_ks = 1.0 if ks_min == 0 else 1 - row["KS"] / ks_min
            row["Avg FQ"] = 100 * (0.5 * norm_ks + 0.15 * (1 - row["EM"] / 100) + 0.2 * (1 - row["MIA"] / 100)
                                   + 0.15 * (1 - row["APE"] / 100))

    def texts(self) -> list[str]:
        return self.data.texts() + load_refusals(self.data_dir, PACKAGED_REFUSALS)

    def train_examples(self, split: str) -> list[Example]:
        return [qa.example() for qa in self.data.qas(split)]

    def stream(self, name: str, forget_split: str) -> list[Example]:
        qas = self.data.qas("retain" if name == "retain" else forget_split)
        if name in ("forget", "retain"):  # retain: every identity outside all forget splits, whatever is forgotten
            return [qa.example() for qa in qas]
        if name == "refusal":  # one refusal per forget QA, drawn once with the seed
            refusals, rng = load_refusals(self.data_dir, PACKAGED_REFUSALS), random.Random(self.seed)
            if self.capitalize:  # the original capitalised every string answer, refusals too
                refusals = [refusal.capitalize() for refusal in refusals]
            return [qa.example(answer=rng.choice(refusals)) for qa in qas]
        raise ValueError(f"fiubench has no stream {name!r}; it has {', '.join(self.stream_names)}")

    def stream_sources(self) -> dict[str, str]:
        """Where streams not read from the release come from (kept in a forget run's run.json)."""
        return {"refusal": refusal_source(self.data_dir, PACKAGED_REFUSALS)}

    def evaluation(self, settings: EvalSettings, forget_split: str, retain_split: str | None,
                   **eval_options: Any) -> Evaluation:
        original_prompt = eval_options.pop("original_prompt", None)
        if eval_options:
            raise ValueError(f"fiubench has one evaluation option, original_prompt; got {sorted(eval_options)}")
        if retain_split is None:
            raise ValueError("fiubench evaluates a retain split: set retain_split")
        return evaluation(self.data, settings, forget_split, retain_split, original_prompt)


def _percent(value: float | None) -> float | None:
    return None if value is None else 100 * value
