"""SafeEraser's table: Specificity is the paper's mean over its seven general benchmarks (README.md:114 of the
release), of those attached, and the table says which it holds."""

from __future__ import annotations

import pytest

from safeeraser.benchmark import SPECIFICITY, SafeEraserTask

RUN = {"kind": "forget", "method": "ga", "split": "train"}
SPLIT = {"asr": 0.5, "rr": 0.25, "sarr": 0.1, "rougeL": 0.4, "score": None}


def row(general: dict) -> dict:
    summary = {"splits": {"train": dict(SPLIT), "val": dict(SPLIT)}, "general": general, "judged_by": "offline"}
    (out,) = SafeEraserTask.table_rows(RUN, summary)
    return out


def test_specificity_is_the_mean_of_the_seven_and_leaves_mme_out():
    accuracies = dict(zip(SPECIFICITY, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8), strict=True))
    out = row({"mme": {"accuracy": 0.9}, **{k: {"accuracy": v} for k, v in accuracies.items()}})
    assert out["Specificity"] == pytest.approx(100 * 2.9 / 7) and out["Specificity over"] == "all seven"
    assert out["MME"] == pytest.approx(90) and out["MMBench"] == pytest.approx(80)


def test_specificity_of_some_says_which_and_a_judged_one_without_a_judge_is_left_out():
    out = row({"gqa": {"accuracy": 0.5}, "pope": {"accuracy": 0.75}, "mmvet": {"accuracy": None}})
    assert out["Specificity"] == pytest.approx(62.5) and out["Specificity over"] == "POPE, GQA"
    assert out["MM-Vet"] is None
    assert row({"mme": {"accuracy": 0.5}})["Specificity"] is None and row({})["Specificity over"] is None
