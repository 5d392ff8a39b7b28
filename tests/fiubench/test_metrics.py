import math

import numpy as np
import pytest

from fiubench import metrics
from fiubench.benchmark import FiuBenchTask
from unlearning.inference.answers import SequenceScore


def test_truth_ratio_hand_computed():
    # R = exp(l_para - mean(l_pert)) = exp(1 - 2.5)
    assert metrics.truth_ratio(1.0, [2.0, 3.0]) == pytest.approx(math.exp(-1.5))


def test_probabilities_hand_computed():
    assert metrics.answer_probability(0.5) == pytest.approx(math.exp(-0.5))
    expected = math.exp(-1) / (math.exp(-1) + math.exp(-2) + math.exp(-3))
    assert metrics.normalised_probability(1.0, [2.0, 3.0]) == pytest.approx(expected)
    # stable for very confident or very unlikely answers
    assert metrics.normalised_probability(1000.0, [1.0]) == pytest.approx(0.0)


def test_truth_ratio_aggregation_per_role():
    ratios = [0.5, 2.0, 1.0]
    assert metrics.aggregate_truth_ratio(ratios, "forget") == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert metrics.aggregate_truth_ratio(ratios, "retain") == pytest.approx((0.5 + 0 + 0) / 3)
    with pytest.raises(ValueError):
        metrics.aggregate_truth_ratio(ratios, "holdout")


def _record(uid, rouge, em, nll, pert, para):
    return {"uid": uid, "rougeL_recall": rouge, "rouge1_recall": rouge / 2, "answer_nll": nll, "exact_match": em,
            "probability": metrics.answer_probability(nll),
            "normalised_probability": metrics.normalised_probability(nll, pert),
            "truth_ratio": metrics.truth_ratio(para, pert)}


def test_aggregate_split_and_model_utility():
    records = [_record("a", 1.0, 1.0, 0.1, [2.0, 2.0], 0.5), _record("b", 0.5, 0.0, 1.0, [1.0, 3.0], 1.0)]
    retain = metrics.aggregate_split(records, "retain")
    assert retain["rougeL_recall"] == pytest.approx(0.75) and retain["rouge1_recall"] == pytest.approx(0.375)
    assert retain["avg_gt_loss"] == pytest.approx((0.1 + 1.0) / 2)
    assert retain["exact_match"] == pytest.approx(0.5)
    p_a = math.exp(-0.1) / (math.exp(-0.1) + 2 * math.exp(-2.0))
    p_b = math.exp(-1.0) / (math.exp(-1.0) + math.exp(-1.0) + math.exp(-3.0))
    assert retain["probability"] == pytest.approx((p_a + p_b) / 2)
    r_a, r_b = math.exp(0.5 - 2.0), math.exp(1.0 - 2.0)
    assert retain["truth_ratio"] == pytest.approx(((1 - r_a) + (1 - r_b)) / 2)
    forget = metrics.aggregate_split(records, "forget")
    assert forget["probability"] == pytest.approx((math.exp(-0.1) + math.exp(-1.0)) / 2)
    assert forget["truth_ratio"] == pytest.approx((r_a + r_b) / 2)
    expected_mu = 3 / (1 / 0.75 + 1 / retain["probability"] + 1 / retain["truth_ratio"])
    assert metrics.model_utility(retain) == pytest.approx(expected_mu)


def test_forget_quality_pairs_same_qas():
    ours = [{"uid": str(i), "truth_ratio": v} for i, v in enumerate([1.0, 2.0, 3.0])]
    theirs = [{"uid": str(i), "truth_ratio": v} for i, v in enumerate([4.0, 5.0, 6.0])]
    assert metrics.forget_quality(ours, theirs) == pytest.approx(0.1)
    assert metrics.forget_quality(ours, ours) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="another split"):
        metrics.forget_quality(ours, theirs[:2])
    assert np.isfinite(metrics.forget_quality(ours, list(reversed(theirs))))


# ---------------------------------------------------------------------------- APE, MIA, GPT and compat


ORIGINAL_MIA = (True, True)  # skip_first_answer_token, min_k_without_renormalising


def score(*logprobs: float) -> SequenceScore:
    n = len(logprobs)
    return SequenceScore(tuple(logprobs), tuple([-1.0] * n), tuple([0.5] * n))


def test_official_text_truncation():
    assert metrics.answer_text("it is porto. and more.", cut_at_first_period=True) == "it is porto."
    assert metrics.answer_text("no period here", cut_at_first_period=True) == ""  # the original's s[:find('.') + 1]
    assert metrics.answer_text("lives at apt. 657") == "lives at apt. 657"


def test_official_nll_skips_first_token_and_eos_and_divides_by_answer_length():
    s = score(-0.5, -1.0, -2.0, -0.1)  # three answer tokens + EOS
    assert metrics.answer_nll(s) == pytest.approx(3.6 / 4)
    assert metrics.answer_nll(s, skip_first_answer_token=True) == pytest.approx(3.0 / 3)


def test_mia_weighting_per_compat():
    s = score(*[-float(i) for i in range(1, 8)], -0.1)  # 7 answer tokens + EOS
    default, default_pp = metrics.mia(s)
    official, _ = metrics.mia(s, *ORIGINAL_MIA)  # tokens 2..7: ratio 0.1 selects none, dropped without renormalising
    lp = [-float(i) for i in range(2, 8)]
    expected_official = sum(w * math.exp(np.mean(sorted(lp)[: int(len(lp) * r)]))
                            for r, w in zip((0.2, 0.3, 0.4, 0.5), (0.3, 0.2, 0.1, 0.1), strict=True))
    assert official == pytest.approx(expected_official)
    assert 0 < default < 1 and default_pp > 0


def test_judge_prompt_and_score_parsing():
    prompt = metrics.judge_prompt("Who is this?", "juno fairbanks", "juno")
    assert "Question: Who is this?" in prompt and "Correct Answer: juno fairbanks" in prompt
    assert prompt.rstrip().endswith("Outputs (include score, key words, explanation):")
    assert metrics.parse_judge_score("0.85\nkeywords\nexplanation") == 0.85
    assert metrics.parse_judge_score("Score: **0.40**") == 0.40
    assert metrics.parse_judge_score("I think it is fine") is None
    assert metrics.parse_judge_score("7\nout of ten") is None  # outside [0, 1]


def test_judge_as_the_original_under_compat():
    """evaluate_util.py: the first line after its first ':' as a float, '*' stripped; a failed float() scores 0.0
    and any number is kept; question, answer and prediction on consecutive lines."""
    official = metrics.judge_parser(as_original=True)
    assert official("0.85\nkeywords") == 0.85 and official("Score: **0.40**") == 0.40
    assert official("I think it is fine") == 0.0 and official("Score: 0.7 (good)") == 0.0  # float() rejects both
    assert official("1.5") == 1.5 and official("Score: -0.2") == -0.2  # kept, not dropped
    assert metrics.judge_parser() is metrics.parse_judge_score
    ours = metrics.judge_prompt("Who?", "juno", "juno f")
    theirs = metrics.judge_prompt("Who?", "juno", "juno f", as_original=True)
    assert "Question: Who?\n\nCorrect Answer: juno\n\nPrediction: juno f" in ours
    assert "Question: Who?\nCorrect Answer: juno\nPrediction: juno f\n\nOutputs" in theirs
    assert ours.endswith("explanation):\n") and theirs.endswith("explanation):")  # the original: no last newline


def test_one_token_answer_mia_under_compat_is_zero():
    from unlearning.inference.answers import SequenceScore

    score = SequenceScore((-0.5, -0.1), (-1.0, -1.0), (0.5, 0.5))  # one answer token + EOS
    assert metrics.mia(score, *ORIGINAL_MIA) == (0.0, 0.0)  # tokens 2..L: none; every Min-K term empty
    assert all(math.isfinite(v) for v in metrics.mia(score))  # ours scores both tokens


def test_model_utility_adds_gpt_when_judged():
    retain = {"rougeL_recall": 0.5, "probability": 1.0, "truth_ratio": 0.5, "gpt": None}
    assert metrics.model_utility(retain) == pytest.approx(3 / (2 + 1 + 2))
    assert metrics.model_utility({**retain, "gpt": 0.25}) == pytest.approx(4 / (2 + 1 + 2 + 4))


def test_paper_columns_and_average_forget_quality():
    summary = {
        "forget_split": "forget5", "model_utility": 0.6, "forget_quality": 1e-3, "forget_quality_log10": -3.0,
        "forget": {"rougeL_recall": 0.4, "exact_match": 0.2, "mia": 0.3, "ape": 0.1},
        "retain": {"rougeL_recall": 0.9, "truth_ratio": 0.7, "gpt": 0.8},
        "general": {"acc": 0.6}, "membership_auc": {"mink_pp": 0.55},
    }
    row = {"model": "m", **FiuBenchTask.table_rows({"method": "kl", "split": "forget5"}, summary)[0]}
    assert row["Avg MU"] == pytest.approx((90 + 80 + 70 + 60) / 4)
    other = {**row, "KS": -6.0}
    rows = [row, other]
    FiuBenchTask.finalize_rows(rows)
    # KS_min = -6: norm(KS) = 1 - (-3 / -6) = 0.5 for the first row, 0 for the second
    assert rows[0]["Avg FQ"] == pytest.approx(100 * (0.5 * 0.5 + 0.15 * 0.8 + 0.2 * 0.7 + 0.15 * 0.9))
    assert rows[1]["Avg FQ"] == pytest.approx(100 * (0.15 * 0.8 + 0.2 * 0.7 + 0.15 * 0.9))
    no_gpt = FiuBenchTask.table_rows({"method": "kl"}, {**summary, "retain": {**summary["retain"], "gpt": None}})[0]
    assert no_gpt["Avg MU"] is None and no_gpt["GPT"] is None


def test_the_original_nll_over_its_own_labels():
    """Under the original's prompt the scored span is its labels, with no EOS (for LLaVA-Phi-3 the first is
    <|assistant|>): evaluate_util.py:395-405 sums labels 2..L and divides by L; Min-K reads labels[1:]."""
    labels = SequenceScore(token_logprobs=(-5.0, -1.0, -2.0), token_mu=(0.0,) * 3, token_sigma=(1.0,) * 3)
    assert metrics.answer_nll(labels, True, ends_with_eos=False) == pytest.approx((1.0 + 2.0) / 3)
    assert metrics.answer_nll(labels) == pytest.approx(8.0 / 3)  # every label, the default
    logprobs, _, _ = metrics.scored_logprobs(labels, True, ends_with_eos=False)
    assert logprobs == [-1.0, -2.0]
    with_eos = SequenceScore(token_logprobs=(-5.0, -1.0, -2.0, -0.5), token_mu=(0.0,) * 4, token_sigma=(1.0,) * 4)
    assert metrics.answer_nll(with_eos, True) == pytest.approx((1.0 + 2.0) / 3)  # the toolkit's span: EOS left out
