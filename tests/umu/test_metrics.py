"""UMU-Bench's metrics, each against a value computed by hand, and the table row they make."""

from __future__ import annotations

import numpy as np
import pytest

from umu import metrics
from umu.benchmark import UmuTask
from umu.evaluate import resample_sets
from unlearning.evaluation.intervals import PointResampler


def rec(profile: str, task: str, modality: str, index: int, **values) -> dict:
    return {"profile": profile, "task": task, "modality": modality, "index": index, **values}


# Three classification pairs (multimodal, unimodal): (right, right), (right, wrong), (wrong, wrong).
CLASSIFICATION = [rec("a", "classification", "image_text", 0, correct=True), rec("a", "classification", "text", 0,
                                                                                  correct=True),
                  rec("a", "classification", "image_text", 1, correct=True), rec("a", "classification", "text", 1,
                                                                                  correct=False),
                  rec("b", "classification", "image_text", 0, correct=False), rec("b", "classification", "text", 0,
                                                                                   correct=False)]
# Two generation pairs with ROUGE-L F (0.5, 1.0) and (0, 0).
GENERATION = [rec("a", "generation", "image_text", 0, rouge1_f=0.5, rouge2_f=0.0, rougeL_f=0.5, bleu=0.1),
              rec("a", "generation", "text", 0, rouge1_f=1.0, rouge2_f=1.0, rougeL_f=1.0, bleu=1.0),
              rec("b", "generation", "image_text", 0, rouge1_f=0.0, rouge2_f=0.0, rougeL_f=0.0, bleu=0.0),
              rec("b", "generation", "text", 0, rouge1_f=0.0, rouge2_f=0.0, rougeL_f=0.0, bleu=0.0)]
CLOZE = [rec("a", "cloze", "image_text", 0, correct=True), rec("a", "cloze", "text", 0, correct=False)]


def test_pair_rouge_l_by_hand():
    assert metrics.pair_rouge_l(0.5, 1.0, contraharmonic=True) == pytest.approx((0.25 + 1) / 1.5)  # 0.8333
    assert metrics.pair_rouge_l(0.5, 1.0, contraharmonic=False) == pytest.approx(2 * 0.5 / 1.5)  # 0.6667
    assert metrics.pair_rouge_l(0.0, 0.0, contraharmonic=True) == 0.0  # eval.py:666: 0 when a + b = 0


def test_aggregate_by_hand():
    forget = metrics.aggregate(CLASSIFICATION + GENERATION + CLOZE, contraharmonic=True)
    cls = forget["classification"]
    assert cls["image_text"] == pytest.approx(2 / 3) and cls["text"] == pytest.approx(1 / 3)
    assert cls["all_correct"] == pytest.approx(1 / 3) and cls["all_wrong"] == pytest.approx(1 / 3)
    assert cls["n_pairs"] == 3
    assert forget["cloze"] == {"image_text": 1.0, "text": 0.0, "all_correct": 0.0, "all_wrong": 0.0, "n_pairs": 1}
    gen = forget["generation"]
    assert gen["rougeL_f_image_text"] == 0.25 and gen["rougeL_f_text"] == 0.5 and gen["bleu_text"] == 0.5
    assert gen["all_modal_rougeL"] == pytest.approx((0.25 + 1) / 1.5 / 2)  # mean of 0.8333 and 0
    retain = metrics.aggregate(GENERATION, contraharmonic=False)["generation"]
    assert retain["all_modal_rougeL"] == pytest.approx(2 * 0.5 / 1.5 / 2) and retain["all_modal_mean"] == "harmonic"


def test_question_scores_by_hand():
    # ROUGE-L F of "the cat" against "the cat sat": LCS 2, precision 1, recall 2/3, F 0.8.
    assert metrics.rouge_f("the cat sat", "the cat")["rougeL_f"] == pytest.approx(0.8)
    assert metrics.cloze_correct("Lyon", "born in lyon, france") and not metrics.cloze_correct("Lyon", "Paris")
    assert metrics.cloze_truth(" Lyon. ") == "Lyon" and metrics.cloze_truth("St. Louis") == "St. Louis"
    assert metrics.cloze_truth("St. Louis", first_period=True) == "St"  # eval.py:352
    # difflib ratio: "Lyon!" vs "Lyon" = 2*4/9; vs "Lille" = 2*1/10: Lyon wins; a tie goes to the first option.
    assert metrics.nearest_option("Lyon!", ["Lille", "Lyon"]) == "Lyon"
    assert metrics.nearest_option("", ["Lille", "Lyon"]) == "Lille"
    assert metrics.choice_by_likelihood({"Lille": -3.0, "Lyon": -1.0}) == "Lyon"


def summary_of(records_by_set: dict[str, list[dict]]) -> dict:
    contra = {"forget": True, "retain": False, "real": False}
    return {"forget_split": "forget_10",
            "sets": {name: metrics.aggregate(records, contra[name]) for name, records in records_by_set.items()}}


def test_table_row_reads_accf_accr_rlf_rlr():
    records = CLASSIFICATION + GENERATION + CLOZE
    summary = summary_of({"forget": records, "retain": records, "real": records})
    (row,) = UmuTask.table_rows({"kind": "forget", "method": "ga"}, summary)
    assert row["AccF"] == pytest.approx(100 * (1 - 1 / 3))  # 100 - "All Modal Question Error"
    assert row["AccR"] == pytest.approx(100 / 3) and row["Real Class. All"] == pytest.approx(100 / 3)
    assert row["Forget Class. MM"] == pytest.approx(200 / 3) and row["Forget Class. UM"] == pytest.approx(100 / 3)
    assert row["RLF"] == pytest.approx(0.8333 / 2, abs=1e-4) and row["RLR"] == pytest.approx(0.6667 / 2, abs=1e-4)
    assert row["Forget Cloze All"] == 100.0 and row["Retain Cloze All"] == 0.0
    directions = {c.name: c.better for c in UmuTask.report.columns}
    assert directions["AccF"] == "lower" and directions["RLR"] == "higher" and directions["Real Cloze UM"] == "higher"


def test_resampled_fields_reproduce_the_point_values():
    """Every replicated field equals its point value when every profile is drawn once (PointResampler)."""
    records = CLASSIFICATION + GENERATION + CLOZE
    results = {name: {"samples": records, "aggregate": metrics.aggregate(records, name == "forget")}
               for name in ("forget", "retain")}
    fields = resample_sets(results, PointResampler())
    assert "sets.forget.classification.all_wrong" in fields and "sets.retain.generation.all_modal_rougeL" in fields
    for path, replicates in fields.items():
        _, name, task, key = path.split(".")
        assert replicates[0] == pytest.approx(results[name]["aggregate"][task][key]), path
        assert np.isfinite(replicates).all()
