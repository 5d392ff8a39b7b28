"""EFUF's files and the curation step that writes them, on crafted files with every bad-input case."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from efuf.chair import ObjectVocabulary
from efuf.curate import clause_spans, coco_label_score, curate
from efuf.data import Caption, ClauseScore, CocoAnnotations, read_captions, read_pos_neg, read_sentences
from unlearning.data.examples import DataError

VOCABULARY = ObjectVocabulary.from_file()
CAPTION = "The image shows a train on the tracks, with cars parked on the platform. A man catches a dog."


def test_clauses_and_the_original_example():
    assert [CAPTION[s:e] for s, e in clause_spans(CAPTION)] == [
        "The image shows a train on the tracks", " with cars parked on the platform", " A man catches a dog"]
    scores = {"train": 35.0, "car": 21.4, "man": 33.0, "dog": 20.0}
    clauses, sentences = curate([Caption("COCO_1.jpg", CAPTION)], VOCABULARY,
                                lambda caption, mention: scores[mention.word])
    # the audit's example: context "...on the tracks," and target " with cars parked on the platform"
    assert clauses[1] == ClauseScore("COCO_1.jpg", CAPTION[:CAPTION.index(".")], 38, 21.4)
    assert clauses[1].context == "The image shows a train on the tracks," and clauses[1].clause.startswith(" with")
    assert clauses[2].score == 20.0  # "man" (33) and "dog" (20) share the clause: its lowest score
    assert [c.position for c in clauses] == [0, 38, 72] and len(clauses) == 3
    (sentence,) = sentences
    assert (sentence.mean, sentence.min) == (pytest.approx((35 + 21.4 + 33 + 20) / 4), 20.0)


def test_whole_words_only():
    clauses, _ = curate([Caption("a.jpg", "A boy tries to catch the ball.")], VOCABULARY, lambda c, m: 30.0)
    assert [(c.clause, c.score) for c in clauses] == [("A boy tries to catch the ball", 30.0)]
    assert not curate([Caption("b.jpg", "Nothing to catch here.")], VOCABULARY, lambda c, m: 30.0)[0]


def test_coco_labels_instead_of_clip():
    score = coco_label_score({"a.jpg": ["person", "train"]}, VOCABULARY, present=40.0, absent=10.0)
    clauses, _ = curate([Caption("a.jpg", "A man near a train, and a cat.")], VOCABULARY, score)
    assert [c.score for c in clauses] == [40.0, 10.0]


def test_captions_file(tmp_path: Path):
    path = tmp_path / "captions.txt"
    path.write_text("COCO_1.jpg ### A dog.\nCOCO_2.jpg* ### Two cats.\n\n")
    assert read_captions(path) == [Caption("COCO_1.jpg", "A dog."), Caption("COCO_2.jpg", "Two cats.")]
    path.write_text("COCO_1.jpg ### A dog.\nCOCO_2.jpg: two cats\n")
    with pytest.raises(DataError, match="captions.txt: line 2 has no '###'"):
        read_captions(path)


@pytest.mark.parametrize(("record", "message"), [
    ({"image": "a.jpg", "sentence": "A dog", "position": 9, "score": 20.0}, r"record 1: field 'position' must be"),
    ({"image": "a.jpg", "sentence": "A dog", "position": "0", "score": 20.0}, r"record 1: field 'position' must be"),
    ({"image": "a.jpg", "sentence": "A dog", "position": 0, "score": None},
     r"record 1: field 'score' must be a number"),
    ({"image": "a.jpg", "position": 0, "score": 2.0}, r"record 1: missing field 'sentence'"),
    ({"image": 7, "sentence": "A dog", "position": 0, "score": 2.0}, r"record 1: field 'image' must be a non-empty"),
])
def test_bad_pos_neg_records(tmp_path: Path, record: dict, message: str):
    path = tmp_path / "pos_neg.json"
    path.write_text(json.dumps([{"image": "a.jpg", "sentence": "A cat, a dog", "position": 6, "score": 31.0},
                                record]))
    with pytest.raises(DataError, match=re.escape(str(path)) + ": " + message):
        read_pos_neg(path)


def test_pos_neg_and_sentences_round_trip(tmp_path: Path):
    (tmp_path / "pos_neg.json").write_text(json.dumps([{"image": "a.jpg", "sentence": "A cat, a dog",
                                                        "position": 6, "score": 31.0}]))
    (entry,) = read_pos_neg(tmp_path / "pos_neg.json")
    assert (entry.context, entry.clause) == ("A cat,", " a dog")
    (tmp_path / "sentences.json").write_text(json.dumps([{"image": "a.jpg", "sentence": "A cat.", "mean": 30,
                                                          "min": 28.5}]))
    assert read_sentences(tmp_path / "sentences.json")[0].mean == 30.0
    (tmp_path / "sentences.json").write_text(json.dumps([{"image": "a.jpg", "sentence": "A cat.", "mean": 30}]))
    with pytest.raises(DataError, match="record 0: field 'min' must be a number, got null"):
        read_sentences(tmp_path / "sentences.json")


def test_coco_annotations(tmp_path: Path):
    images = [{"id": 1, "file_name": "COCO_1.jpg"}, {"id": 2, "file_name": "COCO_2.jpg"}]
    (tmp_path / "instances.json").write_text(json.dumps({
        "images": images, "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
        "annotations": [{"image_id": 1, "category_id": 18}, {"image_id": 1, "category_id": 1},
                        {"image_id": 1, "category_id": 18}]}))
    (tmp_path / "captions.json").write_text(json.dumps({
        "images": images, "annotations": [{"image_id": 1, "caption": "A man and his dog."},
                                          {"image_id": 2, "caption": "An empty street."}]}))
    coco = CocoAnnotations.read(tmp_path / "instances.json", tmp_path / "captions.json")
    assert coco.categories == {"COCO_1.jpg": ("dog", "person"), "COCO_2.jpg": ()}
    assert coco.captions["COCO_2.jpg"] == ("An empty street.",) and coco.images() == ["COCO_1.jpg", "COCO_2.jpg"]
    (tmp_path / "captions.json").write_text(json.dumps({"images": images,
                                                        "annotations": [{"image_id": 3, "caption": "x"}]}))
    with pytest.raises(DataError, match=r"captions.json: annotations\[0\]: image_id 3 is not in 'images'"):
        CocoAnnotations.read(tmp_path / "instances.json", tmp_path / "captions.json")
    (tmp_path / "captions.json").write_text("{}")
    with pytest.raises(DataError, match="captions.json: missing list 'images'"):
        CocoAnnotations.read(tmp_path / "instances.json", tmp_path / "captions.json")
