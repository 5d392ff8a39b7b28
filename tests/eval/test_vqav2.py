"""VQAv2: the val2014 release files, bad input naming file, record and field, the score per answer type, subsets."""

import json
from pathlib import Path

import pytest

from eval.vqav2 import (
    ANNOTATIONS,
    QUESTIONS,
    VQAItem,
    VQAv2Settings,
    load_vqav2,
    score_vqa,
    vqav2_questions,
    write_vqav2,
)
from unlearning.data.examples import DataError


def test_release_layout(tmp_path: Path):
    write_vqav2(tmp_path, n_images=2, image_size=32)
    items = load_vqav2(tmp_path)
    assert len(items) == 6 and items[0].image.name == "COCO_val2014_000000000100.jpg"
    assert len(items[0].answers) == 10 and {i.answer_type for i in items} == {"other", "number", "yes/no"}


def test_bad_input(tmp_path: Path):
    write_vqav2(tmp_path, n_images=2, image_size=32)
    annotations = json.loads((tmp_path / ANNOTATIONS).read_text())
    del annotations["annotations"][1]["answer_type"]
    (tmp_path / ANNOTATIONS).write_text(json.dumps(annotations))
    with pytest.raises(DataError, match=f"{ANNOTATIONS}: annotation 1: missing field 'answer_type'"):
        load_vqav2(tmp_path)
    del annotations["annotations"][1]
    (tmp_path / ANNOTATIONS).write_text(json.dumps(annotations))
    with pytest.raises(DataError, match=f"{QUESTIONS}: question 1: question_id 100001 has no annotation"):
        load_vqav2(tmp_path)
    (tmp_path / "val2014" / "COCO_val2014_000000000100.jpg").unlink()
    with pytest.raises(DataError, match="question 0: image .*COCO_val2014_000000000100.jpg not found"):
        load_vqav2(tmp_path)
    (tmp_path / QUESTIONS).write_text("{broken")
    with pytest.raises(DataError, match=f"{QUESTIONS}: not JSON"):
        load_vqav2(tmp_path)


def test_score_hand_computed():
    items = [VQAItem(1, Path("a"), "q", ("2",) * 3 + ("3",) * 7, "number"),
             VQAItem(2, Path("a"), "q", ("yes",) * 10, "yes/no")]
    result = score_vqa(items, ["Two.", "no"])
    assert result["accuracy"] == pytest.approx(0.9 / 2) and result["subset"] is None
    assert result["answer_types"] == {"number": {"accuracy": pytest.approx(0.9), "n": 1},
                                      "yes/no": {"accuracy": 0.0, "n": 1}}


def test_seeded_subset(tmp_path: Path):
    write_vqav2(tmp_path, n_images=4, image_size=32)
    settings = VQAv2Settings(data_dir=str(tmp_path), max_samples=5, seed=3)
    items, prompts = vqav2_questions(settings)
    again, _ = vqav2_questions(settings)
    assert [i.question_id for i in items] == [i.question_id for i in again] and len(prompts) == 5
    assert score_vqa(items, [p.answer for p in prompts])["subset"] == {"n": 5, "of": 12, "seed": 3}
    assert prompts[0].question.endswith("Answer the question using a single word or phrase.")
    with pytest.raises(ValueError, match="max_samples"):
        VQAv2Settings(data_dir=".", max_samples=0)
