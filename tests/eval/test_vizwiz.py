"""VizWiz: Annotations/val.json and val/, bad records, VQA accuracy with 'unanswerable'."""

import json
from pathlib import Path

import pytest

from eval.vizwiz import VizWizItem, load_vizwiz, score_vizwiz, write_vizwiz
from unlearning.data.examples import DataError


def test_release_layout(tmp_path: Path):
    write_vizwiz(tmp_path, n_images=3, image_size=32)
    items = load_vizwiz(tmp_path)
    assert [i.answerable for i in items] == [True, True, False]
    assert items[0].image == tmp_path / "val" / "VizWiz_val_00000000.jpg" and len(items[0].answers) == 10
    # val.json at the top of the folder is read too
    (tmp_path / "Annotations" / "val.json").rename(tmp_path / "val.json")
    assert len(load_vizwiz(tmp_path)) == 3


def test_bad_input(tmp_path: Path):
    write_vizwiz(tmp_path, n_images=3, image_size=32)
    path = tmp_path / "Annotations" / "val.json"
    records = json.loads(path.read_text())
    records[2]["answers"] = []  # as in test.json
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match="val.json: record 2: field 'answers' is empty"):
        load_vizwiz(tmp_path)
    records[2]["answers"] = [{"answer_confidence": "yes"}]
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match="val.json: record 2, answer 0: missing field 'answer'"):
        load_vizwiz(tmp_path)
    records[1]["answerable"] = "yes"
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match="record 1: field 'answerable' must be int"):
        load_vizwiz(tmp_path)
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(DataError, match="expected a list"):
        load_vizwiz(tmp_path)


def test_score_hand_computed():
    crowd = ("unanswerable",) * 8 + ("blue",) * 2
    items = [VizWizItem(Path("a"), "q", crowd, "unanswerable", False),
             VizWizItem(Path("b"), "q", ("red",) * 10, "other", True),
             VizWizItem(Path("c"), "q", ("red",) * 10, "other", True)]
    result = score_vizwiz(items, ["Unanswerable.", "unanswerable", "Red"])
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["answer_types"]["unanswerable"]["accuracy"] == 1.0
    assert result["answer_types"]["other"]["accuracy"] == 0.5
    assert result["said_unanswerable"] == {"answerable": 0.5, "unanswerable": 1.0}
    assert score_vizwiz(items[:1], ["blue"])["accuracy"] == pytest.approx(0.6)
