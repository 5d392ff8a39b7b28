import pytest

from unlearning.evaluation.metrics.text import keyword_match, rouge_1_recall, rouge_l, rouge_l_recall


def test_rouge_l_recall_hand_computed():
    # reference 6 tokens; LCS with the prediction is "the cat on mat" = 4 tokens -> recall 4/6, precision 4/5
    score = rouge_l("the cat sat on the mat", "the cat on a mat")
    assert score.recall == pytest.approx(4 / 6)
    assert score.precision == pytest.approx(4 / 5)
    assert rouge_l_recall("the cat sat on the mat", "the cat on a mat") == pytest.approx(4 / 6)


def test_rouge_1_recall_hand_computed():
    # reference unigrams the(2) cat sat on mat; the prediction has the(1) cat on mat: 4 of 6 counted (clipped)
    assert rouge_1_recall("the cat sat on the mat", "the cat on a mat") == pytest.approx(4 / 6)
    # order does not matter for unigrams, unlike the LCS
    assert rouge_1_recall("a b c", "c b a") == pytest.approx(1.0) and rouge_l_recall("a b c", "c b a") < 1.0


def test_rouge_l_recall_stems_and_ignores_case():
    assert rouge_l_recall("Juno works in Lisbon", "juno working in lisbon") == pytest.approx(1.0)
    assert rouge_l_recall("juno works in lisbon", "") == 0.0


def test_keyword_match_fraction_case_insensitive():
    found = keyword_match("Juno Fairbanks lives in Lisbon", ["juno fairbanks", "lisbon", "porto"])
    assert found == pytest.approx(2 / 3)
    assert keyword_match("nothing here", ["lisbon"]) == 0.0
    assert keyword_match("lisbon", ["lisbon", "lisbon"]) == 1.0


def test_keyword_match_needs_keywords():
    with pytest.raises(ValueError):
        keyword_match("text", [])
