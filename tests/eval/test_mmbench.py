"""MMBench: the dev TSV (base64 pictures, empty option cells, pictures shared by index, pre-rotated rows),
MMBench's option prefetch, circular evaluation with one rotation wrong."""

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from eval.choices import mmbench_letter
from eval.mmbench import (
    TSV,
    MMBenchItem,
    MMBenchQuestion,
    load_mmbench,
    mmbench_rotations,
    score_mmbench,
    write_mmbench,
)
from unlearning.data.examples import DataError

HEADER = "index\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\timage\tl2-category\tsplit"


def _picture() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_release_layout(tmp_path: Path):
    write_mmbench(tmp_path, n_images=2, image_size=32)
    items = load_mmbench(tmp_path)
    assert [len(i.options) for i in items] == [4, 3, 4, 3]  # the empty D cell of the shape questions
    assert items[1].image == items[0].image  # shared by index
    assert Image.open(io.BytesIO(items[0].image)).size == (32, 32)
    assert items[0].hint == "Look at the shapes." and items[2].hint == ""  # "nan" is no hint


def test_pre_rotated_rows_skipped_and_odd_cells(tmp_path: Path):
    rows = [HEADER, f"1\tWhat is it?\tnan\tcat\tdog\t\t\tB\tobject\t{_picture()}\tperception\tdev",
            "1000001\tWhat is it?\tnan\tdog\tcat\t\t\tA\tobject\t1\tperception\tdev",
            "2\tWhich café?\t\tÉclair\tCrêpe\tnan\t\tA\tobject\t1\tperception\tdev"]
    (tmp_path / TSV).write_text("\n".join(rows) + "\n", encoding="utf-8")
    items = load_mmbench(tmp_path)
    assert [i.index for i in items] == [1, 2] and items[1].options == ("Éclair", "Crêpe")


@pytest.mark.parametrize(("row", "message"), [
    ("3\tq\tnan\tcat\tdog\t\t\tC\tobject\t{pic}\tp\tdev", "line 2: field 'answer' 'C' is not one of"),
    ("x\tq\tnan\tcat\tdog\t\t\tA\tobject\t{pic}\tp\tdev", "line 2: field 'index' is not a number"),
    ("3\tq\tnan\tcat\tdog\t\t\tA\tobject\t9\tp\tdev", "line 2: field 'image' is index 9 of no earlier row"),
    ("3\tq\tnan\tcat\tdog\t\t\tA\tobject\t@@notbase64@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@"
     "\tp\tdev", "line 2: field 'image' is not base64"),
])
def test_bad_rows(tmp_path: Path, row: str, message: str):
    (tmp_path / TSV).write_text(f"{HEADER}\n{row.format(pic=_picture())}\n")
    with pytest.raises(DataError, match=message):
        load_mmbench(tmp_path)


def test_missing_column(tmp_path: Path):
    (tmp_path / TSV).write_text("index\tquestion\tA\tB\timage\n")
    with pytest.raises(DataError, match=r"header lacks the column\(s\) \['answer'\]"):
        load_mmbench(tmp_path)


@pytest.mark.parametrize(("answer", "letter"), [
    ("B", "B"), ("B. dog", "B"), ("The answer is (C).", "C"), ("Answer: A", "A"),
    ("A cat sits on the mat", "A"),  # "A" among many words is not trusted; "cat" is one option's text
    ("A dog and a cat", None),  # two options' texts: not inferable
    ("B or C", None), ("bird", "C"),
])
def test_prefetch(answer: str, letter: str | None):
    assert mmbench_letter(answer, {"A": "cat", "B": "dog", "C": "bird"}) == letter


def test_circular_evaluation_one_rotation_wrong():
    item = MMBenchItem(7, b"", "Which animal?", "", ("cat", "dog", "bird"), 1, "animals")
    rotations = mmbench_rotations([item])
    # rotation 0: A cat, B dog, C bird -> B; rotation 1: A dog, B bird, C cat -> A; rotation 2: bird, cat, dog -> C
    assert [q.answer for q in rotations] == ["B", "A", "C"] and rotations[1].options == ("dog", "bird", "cat")
    assert "\nA. dog\nB. bird\nC. cat" in rotations[1].prompt("")
    other = MMBenchItem(8, b"", "Which colour?", "", ("red", "blue"), 0, "colours")
    questions = [*rotations, *mmbench_rotations([other])]  # other: A red / A blue, B red -> A, B
    result = score_mmbench(questions, ["B", "A", "A", "A", "B. red"])  # item 7's third rotation wrong
    assert result["accuracy"] == 0.5 and result["n"] == 2 and result["n_questions"] == 5
    assert result["single_pass_accuracy"] == 1.0  # both unrotated questions right
    assert result["categories"] == {"animals": {"accuracy": 0.0, "n": 1}, "colours": {"accuracy": 1.0, "n": 1}}
    assert score_mmbench(questions, ["B", "A", "C", "A", "hmm"])["n_unparsed"] == 1
    assert isinstance(rotations[0], MMBenchQuestion)
