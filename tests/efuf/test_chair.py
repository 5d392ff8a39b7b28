"""CHAIR and BLEU on hand-counted captions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from efuf.chair import ObjectVocabulary, caption_chair, chair_scores, ground_truth, read_synonyms
from efuf.metrics import caption_bleu, caption_length, words
from tests.conftest import shared_fixture

VOCABULARY = ObjectVocabulary.from_file()


@pytest.mark.parametrize(("caption", "objects"), [
    ("A man riding a horse next to two dogs and a dog.", ["man", "horse", "dog"]),  # plural read, counted once
    ("A toilet with the seat up next to a sink.", ["toilet", "sink"]),  # "seat" dropped beside a toilet
    ("A toilet seat and a hot dog on a dining table.", ["toilet", "hot dog", "dining table"]),
    ("Two buses and a bus stop.", ["bus"]),  # "bus" is not singularised to "bu"
    ("A baby elephant near a train track.", ["elephant"]),  # "train track" is not a train
    ("A catch by the catcher.", ["catcher"]),  # whole words: no "cat" in "catch"
    ("People on a passenger train with their knives.", ["people", "train", "knife"]),  # irregular plural
    ("A chair by the window.", ["chair"]),
])
def test_object_words(caption: str, objects: list[str]):
    assert VOCABULARY.object_words(caption) == objects


def test_chair_by_hand():
    first = caption_chair(VOCABULARY, "A man riding a horse next to two dogs and a dog.", {"person", "horse"})
    assert first.mentioned == (("man", "person"), ("horse", "horse"), ("dog", "dog"))
    assert first.hallucinated == (("dog", "dog"),)
    second = caption_chair(VOCABULARY, "A toilet with the seat up next to a sink.", {"toilet", "sink"})
    assert second.hallucinated == ()
    # one of two captions hallucinates; one of five mentioned object words is hallucinated
    assert chair_scores([first, second]) == {"chair_s": 0.5, "chair_i": 0.2, "n_captions": 2, "n_mentioned": 5,
                                             "n_hallucinated": 1}
    assert chair_scores([]) == {"chair_s": 0.0, "chair_i": 0.0, "n_captions": 0, "n_mentioned": 0,
                                "n_hallucinated": 0}


def test_ground_truth_joins_instances_and_reference_captions():
    truth = ground_truth(VOCABULARY, ["person", "Dining Table"], ["a boy eats a donut", "a child at a table"])
    assert truth == {"person", "dining table", "donut"}


def test_synonym_lists(tmp_path: Path):
    from efuf.chair import DEFAULT_SYNONYMS

    ours = read_synonyms(DEFAULT_SYNONYMS)
    assert len(set(ours.values())) == 80 and ours["puppy"] == "dog" and ours["hot dog"] == "hot dog"
    clash = tmp_path / "synonyms.txt"
    clash.write_text("dog, puppy\ncat, puppy\n")
    with pytest.raises(ValueError, match="line 2: 'puppy' is already a synonym of 'dog'"):
        read_synonyms(clash)


def test_the_toolkit_list_holds_every_word_of_the_released_list():
    released = read_synonyms(shared_fixture("efuf", "synonyms.txt"))
    assert {word: category for word, category in released.items() if VOCABULARY.synonyms.get(word) != category} == {}
    assert VOCABULARY.synonyms["notebook"] == "laptop"


def test_possessives_and_plural_two_word_names():
    """The plural of every two-word category name is found, as the original's WordNet lemmas find it."""
    names = sorted(category for category in set(VOCABULARY.synonyms.values()) if " " in category)
    assert len(names) == 15
    plurals = {"hair drier": "hair driers", "wine glass": "wine glasses"}
    for name in names:
        plural = plurals.get(name, name + "s")
        assert VOCABULARY.object_words(f"two {plural} here") == [name], name
    assert VOCABULARY.object_words("the dog's bone and the dogs' toys") == ["dog"]


def test_the_categories_are_the_released_lists():
    released = read_synonyms(shared_fixture("efuf", "synonyms.txt"))
    assert set(released.values()) == set(VOCABULARY.synonyms.values())
    assert ObjectVocabulary(released).categories("two dogs, a cat and a dining table") == {"dog", "cat",
                                                                                            "dining table"}


def test_bleu_on_words_against_every_reference():
    references = ["A dog runs on the grass.", "a brown dog running across a field"]
    caption = "A dog is running on the grass."
    hypothesis = ["a", "dog", "is", "running", "on", "the", "grass", "."]
    refs = [["a", "dog", "runs", "on", "the", "grass", "."], ["a", "brown", "dog", "running", "across", "a", "field"]]
    scores = caption_bleu(references, caption)
    epsilon = SmoothingFunction().method1
    assert scores["bleu1"] == pytest.approx(sentence_bleu(refs, hypothesis, weights=(1.0,), smoothing_function=epsilon))
    assert scores["bleu4"] == pytest.approx(sentence_bleu(refs, hypothesis, smoothing_function=epsilon))
    # by hand: every word of "a dog ." is in a reference (precision 1); 3 words against the closest reference
    # length 4: brevity penalty exp(1 - 4/3)
    assert caption_bleu(["A dog runs."], "A dog.")["bleu1"] == pytest.approx(math.exp(1 - 4 / 3))
    assert caption_bleu(["A dog runs."], "A dog runs.")["bleu4"] == pytest.approx(1.0)  # never above 1
    assert caption_bleu(["A dog runs."], "A dog runs.", as_original=True)["bleu1"] > 1.0  # the original's overshoot


def test_the_originals_bleu_by_hand():
    """eval_auto.py's BLEU on reference "a b" and caption "a b", worked by hand: the hypothesis is " a b" (the
    space after ``###``), characters; precisions p1 3/4 (the second space is clipped), p2 2/3, p3 1/2, p4 0/1 (method
    4: ln(4)/10), p5 0; method 5 with m0 = p1 + 1: p1' = (7/4 + 3/4 + 2/3)/3 = 19/18, p2' = (19/18 + 2/3 + 1/2)/3 =
    20/27, p3' = (20/27 + 1/2 + ln(4)/10)/3, p4' = (p3' + ln(4)/10 + 0)/3; brevity penalty 1 (4 > 3 characters)."""
    p4 = math.log(4) / 10
    p1, p2 = 19 / 18, 20 / 27
    p3 = (p2 + 1 / 2 + p4) / 3
    expected = {"bleu1": p1, "bleu2": math.sqrt(p1 * p2), "bleu4": (p1 * p2 * p3 * ((p3 + p4) / 3)) ** 0.25}
    assert caption_bleu(["x y", "a b"], "a b", as_original=True) == pytest.approx(expected, rel=1e-12)
    # a weight vector of one element (not the original's four) would give BLEU-1 (7/4 + 3/4 + p5 = 0)/3 = 5/6
    assert caption_bleu(["a b"], "a b", as_original=True)["bleu1"] != pytest.approx(5 / 6)
    # newlines became spaces when the captions file was written
    assert caption_bleu(["a b"], "a\nb", as_original=True) == caption_bleu(["a b"], "a b", as_original=True)
    assert caption_bleu(["a b"], "", as_original=True) == {"bleu1": 0.0, "bleu2": 0.0, "bleu4": 0.0}


def test_words_and_length():
    assert caption_bleu(["A dog."], "") == {"bleu1": 0.0, "bleu2": 0.0, "bleu4": 0.0}
    assert words("A dog's bone.") == ["a", "dog's", "bone", "."] and caption_length("A dog's bone.") == 3
