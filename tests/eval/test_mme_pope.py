"""MME and POPE: the release layouts, yes/no parsing, and the official scores against hand counts."""

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from eval.mme import MMEItem, load_mme, score_mme, write_mme
from eval.pope import PopeItem, load_pope, score_pope, write_pope
from eval.yesno import parse_yes_no
from unlearning.data.examples import DataError


def test_yes_no_parsing():
    assert parse_yes_no("Yes, there is.") == "yes"
    assert parse_yes_no("no") == "no"
    assert parse_yes_no("I see no dog") == "no"
    assert parse_yes_no("Yesterday it rained") is None  # word match, not prefix
    assert parse_yes_no("a red square") is None


def test_mme_both_release_layouts(tmp_path: Path):
    write_mme(tmp_path / "mme", n_images=3, image_size=32)
    items = load_mme(tmp_path / "mme")
    assert {i.subtask for i in items} == {"existence", "count", "color", "position", "scene", "numerical_calculation"}
    scene = [i for i in items if i.subtask == "scene"]
    assert len(scene) == 6 and scene[0].image.parent.name == "images"  # images/ + questions_answers_YN/
    assert items[0].question.endswith("Please answer yes or no.") and {i.answer for i in items} == {"yes", "no"}
    assert len(load_mme(tmp_path / "mme", ["count"])) == 6


def test_mme_bad_input_names_the_file(tmp_path: Path):
    write_mme(tmp_path / "mme", n_images=2, image_size=32)
    broken = tmp_path / "mme" / "count" / "count_000.txt"
    broken.write_text("Are there shapes?\tMaybe\n")
    with pytest.raises(DataError, match="count_000.txt: line 1"):
        load_mme(tmp_path / "mme")
    (tmp_path / "mme" / "count" / "count_001.png").unlink()
    broken.unlink()
    with pytest.raises(DataError, match="count_001.txt: no image count_001"):
        load_mme(tmp_path / "mme")
    with pytest.raises(DataError, match="unknown or missing MME subtask 'celebrity'"):
        load_mme(tmp_path / "mme", ["celebrity"])


def test_mme_scores_hand_computed():
    a, b = Path("a.png"), Path("b.png")
    items = [MMEItem("existence", a, "q", "yes"), MMEItem("existence", a, "q", "no"),
             MMEItem("existence", b, "q", "yes"), MMEItem("existence", b, "q", "no"),
             MMEItem("code_reasoning", a, "q", "yes"), MMEItem("code_reasoning", a, "q", "no")]
    result = score_mme(items, ["Yes", "No", "Yes", "Yes", "no", "hmm"])
    existence = result["subtasks"]["existence"]
    assert (existence["acc"], existence["acc_plus"], existence["score"]) == (75.0, 50.0, 125.0)
    assert result["subtasks"]["code_reasoning"]["score"] == 0.0
    assert (result["perception"], result["cognition"]) == (125.0, 0.0)
    assert result["accuracy"] == pytest.approx(3 / 6) and result["n_unparsed"] == 1


def test_pope_official_files(tmp_path: Path):
    write_pope(tmp_path / "pope", n_images=4, image_size=32)
    items = load_pope(tmp_path / "pope")
    assert [sum(i.split == s for i in items) for s in ("random", "popular", "adversarial")] == [8, 8, 8]
    assert load_pope(tmp_path / "pope", splits=["popular"])[0].split == "popular"
    with pytest.raises(DataError, match="unknown POPE splits"):
        load_pope(tmp_path / "pope", splits=["hard"])
    line = json.loads((tmp_path / "pope" / "coco_pope_random.json").read_text().splitlines()[0])
    (tmp_path / "pope" / "images" / line["image"]).unlink()
    with pytest.raises(DataError, match="coco_pope_random.json: line 1: image .* not found"):
        load_pope(tmp_path / "pope")


def test_pope_lmms_lab_parquet(tmp_path: Path):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    rows = [{"question": "Is there a dog?", "answer": "no", "category": c, "image": {"bytes": buffer.getvalue()}}
            for c in ("random", "popular", "adversarial")]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "test-00000.parquet")
    items = load_pope(tmp_path)
    assert len(items) == 3 and isinstance(items[0].image, Image.Image) and items[0].label == "no"


def test_pope_scores_hand_computed():
    labels = ["yes", "yes", "no", "no", "yes"]
    items = [PopeItem("random", None, "q", label) for label in labels]
    result = score_pope(items, ["yes", "no", "yes", "no", "dunno"])["splits"]["random"]
    # TP 1, said yes 2, labelled yes 3: precision 1/2, recall 1/3
    assert result["accuracy"] == pytest.approx(2 / 5)
    assert (result["precision"], result["recall"]) == (pytest.approx(0.5), pytest.approx(1 / 3))
    assert result["f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert result["yes_ratio"] == pytest.approx(2 / 5) and result["n_unparsed"] == 1
