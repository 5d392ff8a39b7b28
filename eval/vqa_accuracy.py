"""VQA accuracy (Antol et al. 2015; Goyal et al. 2017), as the official VQA evaluation computes it, for VQAv2 and
VizWiz.

An answer is right in proportion to how many of the ten annotators gave it: min(#matching / 3, 1), averaged over
the ten ways of leaving one annotator out. Before matching, the model's answer is cleaned the official way:
newlines and tabs become spaces; punctuation marks are dropped (when one touches a space, or the text holds a
digit-comma-digit group such as "1,000") or become spaces (otherwise); a period is dropped unless a digit follows
it ("3.5" keeps its point); the words are lower-cased, the number words zero..ten (and "none") become digits,
the articles a/an/the go, and apostrophe-less contractions get their apostrophe back ("dont" -> "don’t").
The annotators' answers are only cleaned of punctuation, and only when they disagree: that is the official
script's behaviour (GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py), kept here as it is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

PUNCTUATION = ";:/'[]\"()=+\\_><@`,?"
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
           "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})

# The contractions the official map restores, as it writes them (most with the typographic apostrophe, a few with
# the ASCII one). A one-apostrophe form is looked up without its apostrophe; a form with several apostrophes is
# looked up with any one of them missing. Forms whose lookup keys cannot occur after cleaning (capital "I", an
# ASCII apostrophe: cleaning removes those) are left out, as are the map's identity entries.
_ONE = ("ain't aren't can't could've couldn't we've where's who've didn’t doesn’t don’t hadn’t hasn’t haven’t "
        "he’d he’s how’d how’ll how’s isn’t it’d it’ll ma’am mightn’t might’ve mustn’t must’ve needn’t not’ve "
        "o’clock oughtn’t shan’t should’ve shouldn’t somebody’ll somebody’s someone’d someone’ll someone’s "
        "something’d something’ll that’s there’d there’re there’s they’d they’ll they’re they’ve ’twas wasn’t "
        "weren’t what’ll what’re what’s what’ve when’s where’d where’ve who’d who’ll who’s why’ll why’re why’s "
        "won’t would’ve wouldn’t y’all you’d you’ll you’re you’ve")
_SEVERAL = ("couldn’t’ve hadn’t’ve he’d’ve it’d’ve mightn’t’ve she’d’ve shouldn’t’ve somebody’d’ve someone’d’ve "
            "something’d’ve there’d’ve they’d’ve we’d’ve who’d’ve wouldn’t’ve y’all’ll y’all’d’ve you’d’ve "
            "’ow’s’at")


def _contractions() -> dict[str, str]:
    table = {form.replace("'", "").replace("’", ""): form for form in _ONE.split()}
    for form in _SEVERAL.split():
        marks = [i for i, char in enumerate(form) if char == "’"]
        for i in marks:
            table[form[:i] + form[i + 1:]] = form
    for key in ("couldn’tve", "hadn’tve"):  # the official map spells these with an ASCII apostrophe: unreachable
        del table[key]
    table["somebody’d"] = "somebodyd"  # the official map has this one backwards; kept for identical scores
    return table


CONTRACTIONS = _contractions()


def clean_punctuation(text: str) -> str:
    """The official punctuation step (processPunctuation): see the module's docstring."""
    drop = bool(_DIGIT_COMMA_DIGIT.search(text))
    out = text
    for mark in PUNCTUATION:
        touching = f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if touching or drop else " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out)


def clean_words(text: str) -> str:
    """The official word step (processDigitArticle): lower case, number words to digits, no articles,
    contractions restored."""
    words = [NUMBERS.get(word, word) for word in text.lower().split()]
    return " ".join(CONTRACTIONS.get(word, word) for word in words if word not in ARTICLES)


def normalize_answer(answer: str) -> str:
    """A model's answer as the official evaluation compares it."""
    return clean_words(clean_punctuation(answer.replace("\n", " ").replace("\t", " ").strip()))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """min(#annotators who gave the (cleaned) prediction / 3, 1), averaged over the leave-one-out subsets of the
    annotators' answers (ten answers: the ten subsets of nine)."""
    if not answers:
        raise ValueError("VQA accuracy needs at least one annotator answer")
    predicted = normalize_answer(prediction)
    truths = [clean_punctuation(a) for a in answers] if len(set(answers)) > 1 else list(answers)
    matches = sum(truth == predicted for truth in truths)
    # leaving out a matching answer leaves matches - 1 of them; leaving out another leaves all of them
    total = sum(min(1.0, (matches - (truth == predicted)) / 3) for truth in truths)
    return total / len(truths)
