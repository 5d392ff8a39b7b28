"""GQA: testdev_balanced_questions.json and images/, bad records, LLaVA's exact match."""

import json
from pathlib import Path

import pytest

from eval.gqa import QUESTIONS, GQAItem, gqa_match, load_gqa, score_gqa, write_gqa
from unlearning.data.examples import DataError


def test_release_layout(tmp_path: Path):
    write_gqa(tmp_path, n_images=2, image_size=32)
    items = load_gqa(tmp_path)
    assert len(items) == 6 and items[0].image == tmp_path / "images" / "n000000.jpg"
    assert {i.structural for i in items} == {"query", "verify"}


def test_bad_input(tmp_path: Path):
    write_gqa(tmp_path, n_images=2, image_size=32)
    records = json.loads((tmp_path / QUESTIONS).read_text())
    del records["000001"]["answer"]
    (tmp_path / QUESTIONS).write_text(json.dumps(records))
    with pytest.raises(DataError, match=f"{QUESTIONS}: question '000001': missing field 'answer'"):
        load_gqa(tmp_path)
    records["000001"]["answer"] = 3
    (tmp_path / QUESTIONS).write_text(json.dumps(records))
    with pytest.raises(DataError, match="question '000001': field 'answer' must be str, got 3"):
        load_gqa(tmp_path)
    with pytest.raises(DataError, match="GQA questions file .*missing.json not found"):
        load_gqa(tmp_path, questions_file="missing.json")


def test_match_and_score():
    assert gqa_match("Yes.", "yes") and gqa_match(" Left ", "left") and gqa_match("red..", "red")
    assert not gqa_match("the red one", "red") and not gqa_match("red, blue", "red blue")  # no VQA cleaning
    items = [GQAItem("1", Path("a"), "q", "yes", "verify"), GQAItem("2", Path("a"), "q", "red", "query"),
             GQAItem("3", Path("a"), "q", "circle", "query")]
    result = score_gqa(items, ["Yes.", "It is red.", "circle"])
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["structural"] == {"query": {"accuracy": 0.5, "n": 2}, "verify": {"accuracy": 1.0, "n": 1}}
