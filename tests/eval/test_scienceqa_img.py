"""ScienceQA-IMG: problems.json + pid_splits.json + images/, only the test problems with an image, LLaVA's letter
reading, bad input."""

import json
from pathlib import Path

import pytest

from eval.choices import scienceqa_letter
from eval.scienceqa_img import SQAItem, load_scienceqa, score_scienceqa, write_scienceqa
from unlearning.data.examples import DataError


def test_release_layout_keeps_test_problems_with_images(tmp_path: Path):
    write_scienceqa(tmp_path, n_images=3, image_size=32)
    items = load_scienceqa(tmp_path)
    assert [i.pid for i in items] == ["1000", "1001", "1002"]  # "1" (no image) and "2" (train) left out
    assert items[0].image == tmp_path / "images" / "test" / "1000" / "image.png"
    assert len(items[0].choices) == 4 and len(items[1].choices) == 3
    prompt = items[0].prompt("\nAnswer with the option's letter from the given choices directly.")
    assert prompt.startswith("Context: Look at the picture.\nWhat color") and "\nA. " in prompt and "\nD. " in prompt


def test_bad_input(tmp_path: Path):
    write_scienceqa(tmp_path, n_images=2, image_size=32)
    problems = json.loads((tmp_path / "problems.json").read_text())
    problems["1001"]["answer"] = 7
    (tmp_path / "problems.json").write_text(json.dumps(problems))
    with pytest.raises(DataError, match="problems.json: problem '1001': field 'answer' 7 is not an index"):
        load_scienceqa(tmp_path)
    del problems["1001"]
    (tmp_path / "problems.json").write_text(json.dumps(problems))
    with pytest.raises(DataError, match="pid_splits.json: test lists problem '1001'"):
        load_scienceqa(tmp_path)
    with pytest.raises(DataError, match="pid_splits.json: missing field 'nosuch'"):
        load_scienceqa(tmp_path, split="nosuch")


@pytest.mark.parametrize(("answer", "letter"), [
    ("B", "B"), ("B. red", "B"), ("The answer is C.", "C"), ("b", None), ("B.red", None),
    ("The answer is A. The answer is B.", None), ("E", None),  # E beyond the four options
    ("I think B", None),
])
def test_llava_letter_reading(answer: str, letter: str | None):
    assert scienceqa_letter(answer, 4) == letter


def test_score_hand_computed():
    items = [SQAItem(str(i), Path("a"), "q", "", ("x", "y", "z"), "B", s)
             for i, s in enumerate(["natural science", "natural science", "social science"])]
    result = score_scienceqa(items, ["B", "maybe", "B. y"])
    assert result["accuracy"] == pytest.approx(2 / 3) and result["n_unparsed"] == 1
    assert result["subjects"]["natural science"] == {"accuracy": 0.5, "n": 2}
