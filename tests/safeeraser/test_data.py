"""SafeEraser's loader on the built-in release and on crafted release folders with every bad-input case."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest

from safeeraser.benchmark import SafeEraserTask
from safeeraser.data import CATEGORIES, SafeEraserData
from unlearning.data.examples import DataError
from unlearning.data.streams import StreamSet, StreamUse


def test_streams_of_the_built_in_release(safe_dir: Path):
    task = SafeEraserTask(safe_dir)
    forget, decoupled = task.stream("forget", "train"), task.stream("decoupled", "train")
    retain, refusal = task.stream("retain", "train"), task.stream("refusal", "train")
    assert len(forget) == len(decoupled) == len(refusal) == 6 * 2 and len(retain) == 6 * 4
    records = task.data.records("train")
    assert {r.category for r in records} == set(CATEGORIES)
    assert all(r.image.parent.name == r.category for r in records)
    assert [e.uid for e in forget] == [e.uid for e in decoupled] == [e.uid for e in refusal]
    for f, d in zip(forget, decoupled, strict=True):  # the same question, with the harmless twin image
        assert f.question == d.question and f.image != d.image and d.image.name.endswith("_sd.jpg")
    assert all(e.answer in task.data.refusals() for e in refusal)
    assert len(task.train_examples("full")) == (6 + 3) * (2 + 2 + 4)
    assert len(task.stream("forget", "val")) == 3 * 2


def test_prompt_decouple_pairs_each_forget_example_with_its_own_twin(safe_dir: Path):
    """The original took the PD example at the retain example's random index; here each belongs to its forget
    example, however the retain examples are drawn."""
    task = SafeEraserTask(safe_dir)
    streams = {name: task.stream(name, "train") for name in ("forget", "retain", "decoupled")}
    uses = (StreamUse("forget"), StreamUse("retain", "random"), StreamUse("decoupled"))
    twin = {e.uid: e for e in streams["decoupled"]}
    for seed in (0, 1):
        items = list(StreamSet(streams, uses, seed=seed))
        assert all(decoupled is twin[forget.uid] for forget, _, decoupled in items)
        assert len({retain.uid for _, retain, _ in items}) > 1  # retain partners are drawn at random


def test_refusals_come_from_the_release_prompt_file_when_present(tmp_path: Path, safe_dir: Path, caplog):
    caplog.set_level(logging.INFO)
    data = tmp_path / "data"
    shutil.copytree(safe_dir, data)
    assert len(SafeEraserData(data).refusals()) == 10 and "packaged list" in caplog.text
    (data / "prompt.json").write_text(json.dumps({"idk": ["No.", "I will not."]}))
    assert SafeEraserData(data).refusals() == ["No.", "I will not."] and "the release's prompt.json" in caplog.text


def corrupt(data: Path, change) -> Path:
    path = data / "all_train.json"
    records = json.loads(path.read_text())
    change(records, data)
    path.write_text(json.dumps(records))
    return path


BAD_RECORDS = [
    (lambda r, d: r[2].update(image_path="dataset/images/Knives/x.jpg"),
     r"record 2: image_path 'dataset/images/Knives/x.jpg' lies in folder 'Knives', not a category folder"),
    (lambda r, d: (d / r[1]["image_path"].removeprefix("dataset/")).unlink(),
     r"record 1: image 'dataset/images/\w+/\w+\.jpg' not found"),
    (lambda r, d: (d / r[1]["SDImage_path"].removeprefix("dataset/")).unlink(),
     r"record 1 SDImage_path: image 'dataset/sd_images/\w+_sd\.jpg' not found"),
    (lambda r, d: r[3]["unsafe_pairs"][1].pop("question"), r"record 3 unsafe_pairs\[1\]: missing field 'question'"),
    (lambda r, d: r[3]["unsafe_pairs"][0].update(model_response=None),
     r"record 3 unsafe_pairs\[0\]: field 'model_response' must be a string, got null"),
    (lambda r, d: r[0].update(unsafe_pairs="what?"), r"record 0: field 'unsafe_pairs' must be a list, got str"),
    (lambda r, d: r[4].update(UnharmPair_text1=["q", "a"]),
     r"record 4: field 'UnharmPair_text1' must be an object, got list"),
    (lambda r, d: r[4]["UnharmPair_image2"].update(Prediction=7),
     r"record 4 UnharmPair_image2: field 'Prediction' must be a string, got int '7'"),
    (lambda r, d: r[5].pop("SDImage_path"), r"record 5: missing field 'SDImage_path'"),
    (lambda r, d: r[0].update(image_path="../../etc/Weapon/passwd"), r"record 0: image path .* points outside"),
]


@pytest.mark.parametrize(("change", "message"), BAD_RECORDS)
def test_bad_records_name_file_record_and_field(tmp_path: Path, safe_dir: Path, change, message: str):
    data = tmp_path / "data"
    shutil.copytree(safe_dir, data)
    path = corrupt(data, change)
    with pytest.raises(DataError, match=re.escape(str(path)) + ": " + message):
        SafeEraserData(data).records("train")


def test_a_truncated_image_is_named(tmp_path: Path, safe_dir: Path):
    data = tmp_path / "data"
    shutil.copytree(safe_dir, data)
    record = json.loads((data / "all_val.json").read_text())[1]
    image = data / record["image_path"].removeprefix("dataset/")
    image.write_bytes(image.read_bytes()[:300])
    with pytest.raises(DataError, match=rf"all_val.json: record 1: image {re.escape(str(image))} cannot be read"):
        SafeEraserData(data).records("val")


def test_unknown_split_and_missing_folder(tmp_path: Path, safe_dir: Path):
    with pytest.raises(DataError, match="unknown SafeEraser split 'test'; known: train, val"):
        SafeEraserData(safe_dir).records("test")
    with pytest.raises(DataError, match="does not exist"):
        SafeEraserData(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="all_train.json: file not found"):
        SafeEraserData(empty).records("train")


def test_capitalized_training_text_as_the_original(safe_dir: Path):
    """data_module.py:157-167: question and answer str.capitalize()d, refusals stripped then capitalized."""
    plain, capital = SafeEraserTask(safe_dir), SafeEraserTask(safe_dir, capitalize=True)
    for stream in ("forget", "retain", "decoupled"):
        for before, after in zip(plain.stream(stream, "train"), capital.stream(stream, "train"), strict=True):
            assert (after.question, after.answer) == (before.question.capitalize(), before.answer.capitalize())
    refusals = {example.answer for example in capital.stream("refusal", "train")}
    assert refusals and all(answer == answer.strip(" ").capitalize() for answer in refusals)
