"""The original's CHAIR reader (compat switch ``chair_as_original``) on captions that exercise each of its rules.

The expected objects and rates were computed by running eval_auto.py's own CHAIR class (starreeze/efuf e0798b6,
with its file reading fed these captions and annotations) on WordNet 3.0 and the release's synonyms.txt; nltk's
trained Punkt model was not installed there either, so both sides split sentences with the untrained Punkt.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from efuf.chair import ObjectVocabulary, caption_chair, chair_scores, ground_truth
from efuf.chair_original import WordNetMissing, wordnet_source
from tests.conftest import shared_fixture

# caption, instance categories, reference captions; then the objects eval_auto.py found in the caption
CAPTIONS = [
    ("Two men and a dog's bowl. The women sit near vases.", ["person", "dog"], ["A man with a dog."],
     {"bowl", "dog", "woman"}),
    ("Traffic lights and stop signs on a street with parking meters.", ["traffic light", "car"],
     ["Cars at a light."], {"parking meter", "stop sign", "traffic light"}),
    ("A baby elephant near a passenger jet, a man in a bow tie.", ["elephant", "person"], ["An elephant walks."],
     {"elephant", "jet", "man", "tie"}),
    ("A toilet seat and a toilet in a bathroom with wine glasses.", ["toilet"], ["A toilet."],
     {"toilet", "wine glass"}),
    ("Children play with kites; hair driers and potted plants indoors.", ["person", "kite"], ["Kids fly a kite."],
     {"child", "hair drier", "kite", "potted plant"}),
    ("A cat on a notebook next to a laptop. The cats sleep.", ["cat", "laptop"], ["A kitty on a computer."],
     {"cat", "laptop", "notebook"}),
    ("Mice and a teddy bear by the baseball bats and baseball gloves.", ["teddy bear"], ["A teddy bear."],
     {"baseball bat", "baseball glove", "mouse", "teddy bear"}),
    ("A bus, buses and a truck near the skis.", ["bus"], ["A bus."], {"bus", "ski", "truck"}),
]


@pytest.fixture(scope="module")
def released_synonyms() -> Path:
    return shared_fixture("efuf", "synonyms.txt")


@pytest.fixture(scope="module")
def original(released_synonyms: Path):
    try:
        wordnet_source()
    except WordNetMissing as error:
        pytest.skip(str(error))
    from efuf.chair_original import OriginalChair

    return OriginalChair(released_synonyms)


def test_the_originals_objects_and_rates(original):
    results = []
    for caption, instances, references, expected in CAPTIONS:
        result = original.caption_chair(caption, original.ground_truth(instances, references))
        assert {word for word, _ in result.mentioned} == expected, caption
        results.append(result)
    assert chair_scores(results) == {"chair_s": 0.875, "chair_i": 0.5, "n_captions": 8, "n_mentioned": 26,
                                     "n_hallucinated": 13}


def test_each_rule_of_the_original_reader(original):
    objects = original.caption_objects
    assert objects("two men and a dog's bowl.")[0] == ["dog", "bowl"]  # "men" is no lemma of "man"; "dog" + "'s"
    assert objects("vases on a shelf")[0] == []  # WordNet's shortest lemma of "vases" is "vas"
    assert objects("a baby elephant and a passenger train") == (["elephant", "train"], ["elephant", "train"])
    assert objects("the toilet seat, a seat and a toilet")[0] == ["toilet", "toilet"]  # "seat" dropped with toilet
    assert objects("a man in a bow tie") == (["man", "tie"], ["person", "tie"])
    assert objects("a notebook")[1] == ["laptop"]  # the release's list
    assert original.ground_truth(["dining table"], ["A kitten on a couch."]) == {"dining table", "cat", "couch"}


def test_the_toolkits_reader_differs_where_it_reads_better(released_synonyms: Path, original):
    """The default reader finds "men" (as "man": person) and "vases" (vase), which the original's misses."""
    vocabulary = ObjectVocabulary.from_file(released_synonyms)
    caption, instances, references, _ = CAPTIONS[0]
    ours = caption_chair(vocabulary, caption, ground_truth(vocabulary, instances, references))
    assert {word for word, _ in ours.mentioned} == {"man", "dog", "bowl", "woman", "vase"}


def test_no_wordnet_says_how_to_install_it(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WORDNET_DIR", str(tmp_path))
    with pytest.raises(WordNetMissing, match="apt-get install wordnet-base wordnet-sense-index"):
        wordnet_source()
