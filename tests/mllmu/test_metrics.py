"""MLLMU-Bench's metrics against hand-computed values, default and compat=official."""

import math

import pytest

from mllmu import metrics
from unlearning.compat import Compat

OPTIONS = (("A", "lisbon"), ("B", "a pastry chef"), ("C", "ghent"), ("D", "porto"))


@pytest.mark.parametrize("response, expected", [
    ("B", "B"), ("B.", "B"), ("(C)", "C"), ("D: porto", "D"), ("A) lisbon", "A"),
    ("The answer is B", "B"), ("the correct answer is (C).", "C"), ("Answer: D", "D"),
    ("a pastry chef", "B"), ("She was born in Ghent.", "C"),
    ("A person from lisbon", "A"),  # no leading letter, but exactly one option's text
    ("lisbon or porto", None), ("I do not know", None), ("", None), ("E", None),
])
def test_parse_choice_accepts_the_usual_answer_shapes(response, expected):
    assert metrics.parse_choice(response, OPTIONS) == expected


@pytest.mark.parametrize("response, expected", [
    ("B", "B"), ("b) a pastry chef", "B"), ("The answer is B", None), (" B", None), ("", None), ("Answer: D", "A"),
])
def test_official_parse_reads_the_first_character_only(response, expected):
    assert metrics.parse_choice(response, OPTIONS, first_character=True) == expected


def test_choice_by_likelihood_takes_the_largest_and_the_first_on_a_tie():
    assert metrics.choice_by_likelihood({"A": -3.0, "B": -0.5, "C": -1.0, "D": -9.0}) == "B"
    assert metrics.choice_by_likelihood({"A": -1.0, "B": -1.0}) == "A"


def test_cloze_is_a_case_insensitive_substring_match():
    assert metrics.cloze_correct("Lisbon", "she was born in lisbon.")
    assert not metrics.cloze_correct("lisbon", "she was born in porto.")
    assert not metrics.cloze_correct(" ", "anything")


def test_bleu_hand_computed():
    # p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0/1 -> 0.1/1 (smoothing method 1, epsilon 0.1); brevity penalty 1
    assert metrics.bleu("a b c d", "a b c e") == pytest.approx((0.75 * (2 / 3) * 0.5 * 0.1) ** 0.25, rel=1e-9)
    assert metrics.bleu("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    # shorter hypothesis: brevity penalty exp(1 - 4/3); p1..p3 = 1, p4 = 0.1/0 -> nltk gives 0 counts weight
    assert metrics.bleu("a b c d", "") == 0.0


def test_rouge_l_f_hand_computed():
    # LCS("a b c d", "a c d e") = "a c d": P = R = 3/4, F = 3/4
    assert metrics.rouge_l_f("a b c d", "a c d e") == pytest.approx(0.75)
    # LCS = 2 of reference 4 and prediction 2: P = 1, R = 1/2, F = 2PR/(P+R) = 2/3
    assert metrics.rouge_l_f("a b c d", "a d") == pytest.approx(2 / 3)


def test_rouge_1_and_2_hand_computed():
    scores = metrics.rouge_f("a b c d", "a c d e")
    # unigrams: a, c, d shared: P = R = 3/4; bigrams: "c d" shared of 3 each: P = R = 1/3
    assert scores["rouge1_f"] == pytest.approx(0.75) and scores["rouge2_f"] == pytest.approx(1 / 3)
    assert scores["rougeL_f"] == pytest.approx(0.75)


@pytest.mark.parametrize("reply, expected", [
    ('{"Factuality Score": 8, "Justification": "ok"}', 8.0),
    ('{\n  "Factuality Score": 7,\n  "Justification": "minor omission"\n}', 7.0),
    ("Factuality Score: 10", 10.0), ("factuality score = 3.5", 3.5),
    ("Factuality Score: 0", None), ("Factuality Score: 11", None), ("I cannot judge this.", None),
])
def test_factuality_parse(reply, expected):
    assert metrics.parse_factuality(reply) == expected


@pytest.mark.parametrize("reply, expected", [
    ('{\n  "Factuality Score": 7,\n  "Justification": "fine"\n}', 7.0),
    ('{"Factuality Score": 8, "Justification": "ok"}', None),  # the last ':' part is not a number
    ("Factuality Score: 1,0\nJustification: fine", 10.0),
    ("Factuality Score: 1,0", None),  # eval_gpt.py:139: no Justification line, the reply is dropped
    ('"Factuality Score": 7', None),
])
def test_official_factuality_parse(reply, expected):
    assert metrics.parse_factuality(reply, as_original=True) == expected


def test_factuality_mean_counts_unparseable_replies_as_the_lowest_score():
    assert metrics.factuality_mean([8.0, None, 6.0], [False, False, False]) == pytest.approx((8 + 1 + 6) / 3)
    assert metrics.factuality_mean([8.0, None], [False, True]) == 8.0  # the answered ones (partial: see aggregate)
    assert metrics.factuality_mean([None], [True]) is None
    assert metrics.factuality_mean([8.0, None, 6.0], [False, False, False], drop_unscored=True) == pytest.approx(7.0)


def test_factuality_with_failed_requests_is_incomplete_unless_allowed():
    scores = {"rouge1_f": 0.6, "rouge2_f": 0.4, "rougeL_f": 0.5, "bleu": 0.2}
    records = [{"modality": "text", "task": "generation", **scores, "factuality": 9.0,
                "judge_reply": "Factuality Score: 9", "judge_failed": False},
               {"modality": "text", "task": "generation", **scores, "factuality": None, "judge_reply": None,
                "judge_failed": True, "judge_error": "HTTP 500 InternalServerError"}]
    text = metrics.aggregate(records)["text"]
    assert text["factuality"] is None and text["factuality_partial"] == 9.0
    assert text["judge"]["complete"] is False and text["judge"]["failures"] == {"HTTP 500 InternalServerError": 1}
    allowed = metrics.aggregate(records, max_failed=0.5)["text"]
    assert allowed["factuality"] == 9.0 and allowed["judge"]["complete"] is True


def test_aggregate_per_modality():
    records = [
        {"modality": "image_text", "task": "classification", "correct": True, "prediction": "A"},
        {"modality": "image_text", "task": "classification", "correct": False, "prediction": None},
        {"modality": "text", "task": "classification", "correct": True, "prediction": "B"},
        {"modality": "image_text", "task": "cloze", "correct": True},
        {"modality": "image_text", "task": "generation", "rouge1_f": 0.6, "rouge2_f": 0.4, "rougeL_f": 0.5,
         "bleu": 0.2, "factuality": 9.0, "judge_reply": "Factuality Score: 9", "judge_failed": False},
        {"modality": "image_text", "task": "generation", "rouge1_f": 1.0, "rouge2_f": 1.0, "rougeL_f": 1.0,
         "bleu": 0.4, "factuality": None, "judge_reply": "no idea", "judge_failed": False},
    ]
    image, text = (metrics.aggregate(records)[m] for m in ("image_text", "text"))
    assert image["classification_acc"] == 0.5 and image["n_unanswered_classification"] == 1
    assert image["cloze_acc"] == 1.0 and image["rougeL_f"] == 0.75 and image["bleu"] == pytest.approx(0.3)
    assert image["rouge1_f"] == pytest.approx(0.8) and image["rouge2_f"] == pytest.approx(0.7)
    assert image["factuality"] == 5.0
    assert image["judge"] == {"n": 2, "n_scored": 1, "n_failed": 0, "n_unparseable": 1, "failures": {},
                              "complete": True}
    assert text["classification_acc"] == 1.0 and text["cloze_acc"] is None and text["rougeL_f"] is None
    original = metrics.aggregate(records, drop_unscored=True, over_both_modalities=True)
    assert math.isclose(original["image_text"]["factuality"], 9.0)


def test_official_factuality_is_one_mean_over_both_modalities():
    """eval_gpt.py averaged each set's file, which held both modalities' generations; ours per modality stays."""
    def generation(modality: str, score: float | None) -> dict:
        return {"modality": modality, "task": "generation", "rouge1_f": 0.5, "rouge2_f": 0.5, "rougeL_f": 0.5,
                "bleu": 0.1, "factuality": score, "judge_reply": "x", "judge_failed": False}

    records = [generation("image_text", 8.0), generation("image_text", 6.0), generation("text", 2.0),
               generation("text", None)]
    ours = metrics.aggregate(records)
    assert ours["image_text"]["factuality"] == 7.0 and ours["text"]["factuality"] == 1.5  # None counts as 1
    official = metrics.aggregate(records, drop_unscored=True, over_both_modalities=True)
    for modality in ("image_text", "text"):  # (8 + 6 + 2) / 3, the unparseable reply dropped
        assert official[modality]["factuality"] == official[modality]["factuality_partial"] == pytest.approx(16 / 3)
    assert official["image_text"]["factuality_modality"] == 7.0 and official["text"]["factuality_modality"] == 2.0


def test_unknown_compat_is_rejected():
    with pytest.raises(ValueError, match="compat must be one of"):
        Compat.of("mllmu", "paper")
    with pytest.raises(ValueError, match="compat.first_char: benchmark 'mllmu' has no such switch"):
        Compat.of("mllmu", first_char=True)
    with pytest.raises(AttributeError, match="did you mean 'first_character_choice'"):
        _ = Compat.of("mllmu").first_character_choise
