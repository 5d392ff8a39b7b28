"""VQA accuracy against the official evaluation's documented behaviour (vqaEval.py): the cleaning steps one by one,
and min(#humans / 3, 1) averaged over the ten leave-one-out subsets, computed by hand."""

import pytest

from eval.vqa_accuracy import CONTRACTIONS, clean_punctuation, normalize_answer, vqa_accuracy


@pytest.mark.parametrize(("text", "cleaned"), [
    ("yes.", "yes"),  # a period not followed by a digit goes
    ("3.5", "3.5"),  # a decimal point stays
    ("1,000 people", "1000 people"),  # a digit-comma-digit group: every mark is dropped, not spaced
    ("red, blue", "red blue"),  # a comma touching a space is dropped
    ("(left)", " left "),  # marks touching no space become spaces
    ("don't", "don t"),  # so does an ASCII apostrophe
    ("hot-dog!", "hot-dog!"),  # '-' and '!' are not in the official list
])
def test_punctuation(text: str, cleaned: str):
    assert clean_punctuation(text) == cleaned


@pytest.mark.parametrize(("answer", "normalized"), [
    ("Two dogs.", "2 dogs"),  # number words become digits, lower case
    ("The red one", "red 1"),  # articles go
    ("An apple\n", "apple"),
    ("None", "0"),
    ("ten", "10"),
    ("eleven", "eleven"),  # only zero..ten
    ("dont know", "don’t know"),  # contractions get their (typographic) apostrophe back
    ("cant", "can't"),  # a few with the ASCII one, as the official map writes them
    ("Im", "im"),  # the official keys for I'm are capitalised: never reached after lower-casing
    ("lets go", "lets go"),  # let's is an identity entry in the official map
])
def test_normalized_answers(answer: str, normalized: str):
    assert normalize_answer(answer) == normalized


def test_contraction_table_keys():
    assert CONTRACTIONS["hed’ve"] == CONTRACTIONS["he’dve"] == "he’d’ve"  # one apostrophe missing, either one
    assert "hedve" not in CONTRACTIONS and "couldn’tve" not in CONTRACTIONS
    assert CONTRACTIONS["somebody’d"] == "somebodyd"  # the official map's backwards entry


@pytest.mark.parametrize(("matches", "accuracy"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_ten_annotators_leave_one_out(matches: int, accuracy: float):
    # k matching answers: leaving one of them out leaves k - 1, leaving another out leaves k;
    # 3 -> (3 * 2/3 + 7 * 1) / 10 = 0.9, 1 -> (0 + 9 * 1/3) / 10 = 0.3, 2 -> (2 * 1/3 + 8 * 2/3) / 10 = 0.6
    answers = ["2"] * matches + ["3"] * (10 - matches)
    assert vqa_accuracy("two", answers) == pytest.approx(accuracy)


def test_annotator_answers_cleaned_only_when_they_disagree():
    assert vqa_accuracy("Yes", ["yes."] * 2 + ["no"] * 8) == pytest.approx(0.6)  # cleaned: "yes" twice
    assert vqa_accuracy("yes.", ["yes."] * 10) == 0.0  # unanimous: left as written, the official quirk
    assert vqa_accuracy("the 2 dogs", ["2 dogs"] * 10) == 1.0


def test_unanswerable_is_an_answer():
    answers = ["unanswerable"] * 8 + ["blue"] * 2
    assert vqa_accuracy("Unanswerable.", answers) == 1.0
    assert vqa_accuracy("blue", answers) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="at least one"):
        vqa_accuracy("blue", [])
