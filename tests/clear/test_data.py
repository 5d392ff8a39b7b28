"""CLEAR's release layout: crafted folders as HF writes them (oddities included), the built-in data read back,
and bad input whose error names the file, the row and the field."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from clear.data import Clear
from clear.prompts import CAPTION_QUESTIONS, NAME_QUESTION
from unlearning.data.examples import DataError

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
TEXTS = pa.list_(pa.string())


def png(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def write(folder: Path, rows: list[dict], schema: pa.Schema, name: str = "train-00000-of-00001.parquet") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def perturbed_row(name: str, caption: str) -> dict:
    return {"image": {"bytes": png(), "path": None}, "caption": caption, "name": name,
            "perturbed_captions": [f"{caption} not", f"not {caption}"], "paraphrased_caption": f"so: {caption}",
            "perturbed_names": ["Ana Lima", "Bo Chen"]}


PERTURBED = pa.schema([("image", IMAGE), ("caption", pa.string()), ("name", pa.string()),
                       ("perturbed_captions", TEXTS), ("paraphrased_caption", pa.string()),
                       ("perturbed_names", TEXTS)])


@pytest.fixture()
def release(tmp_path: Path) -> Path:
    """A crafted release: ``forget10+tofu`` without a ``name`` column, a non-ASCII name, image structs with a null
    path, a second shard."""
    root = tmp_path / "CLEAR"
    write(root / "forget10+tofu", [
        {"image": {"bytes": png(), "path": None}, "caption": "Zoë Ångström reads.", "question": None, "answer": None},
        {"image": None, "caption": None, "question": "Where was Zoë Ångström born?", "answer": "In Malmö."},
        {"image": None, "caption": None, "question": "What is her pen name?", "answer": "None that we know."},
    ], pa.schema([("image", IMAGE), ("caption", pa.string()), ("question", pa.string()), ("answer", pa.string())]))
    write(root / "retain90", [{"image": {"bytes": png(), "path": "a.png"}, "caption": "Bo Chen swims.",
                               "name": "Bo Chen"}],
          pa.schema([("image", IMAGE), ("caption", pa.string()), ("name", pa.string())]))
    write(root / "forget10_perturbed", [perturbed_row("Zoë Ångström", "Zoë Ångström reads.")], PERTURBED)
    write(root / "forget10_perturbed", [perturbed_row("Zoë Ångström", "Zoë Ångström sings.")], PERTURBED,
          "train-00001-of-00002.parquet")
    write(root / "retain_perturbed", [perturbed_row("Bo Chen", "Bo Chen swims.")], PERTURBED)
    write(root / "real_faces", [{"image": {"bytes": png(), "path": None}, "answer": "Ada Lovelace",
                                 "options": ["Marie Curie", "Alan Turing"]}],
          pa.schema([("image", IMAGE), ("answer", pa.string()), ("options", TEXTS)]))
    write(root / "real_world", [{"question": "What is red?", "answer": "a square", "options": ["a cat", "a sky"],
                                 "image": {"bytes": png(), "path": None}}],
          pa.schema([("question", pa.string()), ("answer", pa.string()), ("options", TEXTS), ("image", IMAGE)]))
    return root


def test_training_rows_are_captions_and_text_qas(release: Path):
    examples = Clear(release).train_examples("forget10+tofu")
    caption, qa, other = examples
    assert caption.answer == "Zoë Ångström reads." and caption.question in CAPTION_QUESTIONS
    assert isinstance(caption.image, bytes) and caption.uid == "forget10+tofu#0/0"  # no name column: its own unit
    assert qa.image is None and qa.answer == "In Malmö." and other.image is None
    assert Clear(release).train_examples("retain90")[0].uid == "Bo Chen/0"


def test_text_qas_join_the_person_they_name(tmp_path: Path):
    root = tmp_path / "CLEAR"
    write(root / "forget01+tofu", [
        {"image": {"bytes": png(), "path": None}, "caption": "Zoë Ångström reads.", "name": "Zoë Ångström",
         "question": None, "answer": None},
        {"image": None, "caption": None, "name": None, "question": "Where was ZOË ÅNGSTRÖM born?",
         "answer": "In Malmö."},
        {"image": None, "caption": None, "name": None, "question": "Who wrote it?", "answer": "Nobody."},
    ], pa.schema([("image", IMAGE), ("caption", pa.string()), ("name", pa.string()), ("question", pa.string()),
                  ("answer", pa.string())]))
    units = [ex.uid.rpartition("/")[0] for ex in Clear(root).train_examples("forget01+tofu")]
    assert units == ["Zoë Ångström", "Zoë Ångström", "forget01+tofu#2"]


def test_evaluation_tasks_read_the_authors_keys(release: Path):
    data = Clear(release)
    forget = data.items("forget", "forget10")
    assert [i.answer for i in forget] == ["Zoë Ångström reads.", "Zoë Ångström sings."]  # both shards, in order
    assert forget[0].base_answer == "so: Zoë Ångström reads." and forget[0].unit == "Zoë Ångström"
    assert forget[1].uid == "forget10_perturbed/1"
    (name,) = data.items("retain_facerec", "forget10")
    assert (name.question, name.answer, name.base_answer, name.perturbed) == (
        NAME_QUESTION, "Bo Chen", "Bo Chen", ("Ana Lima", "Bo Chen"))
    (face,) = data.items("real_faces", "forget10")
    assert face.unit == "Ada Lovelace" and face.perturbed == ("Marie Curie", "Alan Turing")
    (world,) = data.items("real_world", "forget10")
    assert world.question == "What is red?" and world.unit == "real_world/0"
    assert len(Clear(release, max_rows=1).items("forget", "forget10")) == 1


def test_the_same_caption_gets_the_same_question_everywhere(release: Path):
    data = Clear(release, seed=3)
    assert data.train_examples("forget10+tofu")[0].question == data.items("forget", "forget10")[0].question


@pytest.mark.parametrize(("row", "column", "value", "message"), [
    (1, "paraphrased_caption", None, "field 'paraphrased_caption' must be a non-empty string, got null"),
    (0, "perturbed_names", [], "field 'perturbed_names' must be a non-empty list of strings"),
    (0, "perturbed_captions", ["fine", " "], r"field 'perturbed_captions'\[1\] must be a non-empty string"),
    (1, "image", {"bytes": b"not an image", "path": None}, "field 'image' is not a readable image"),
    (0, "image", None, "field 'image' has no image bytes"),
])
def test_bad_values_name_file_row_and_field(tmp_path: Path, row, column, value, message):
    rows = [perturbed_row("Bo Chen", "Bo Chen swims."), perturbed_row("Ana Lima", "Ana Lima runs.")]
    rows[row][column] = value
    path = write(tmp_path / "retain_perturbed", rows, PERTURBED)
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: row {row}: {message}"):
        for task in ("retain", "retain_facerec"):
            Clear(tmp_path).items(task, "forget10")


def test_a_number_where_text_belongs_is_not_coerced(tmp_path: Path):
    path = write(tmp_path / "real_faces", [{"image": {"bytes": png(), "path": None}, "answer": 7, "options": ["a"]}],
                 pa.schema([("image", IMAGE), ("answer", pa.int64()), ("options", TEXTS)]))
    message = "row 0: field 'answer' must be a non-empty string, got int"
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: {message}"):
        Clear(tmp_path).items("real_faces", "forget10")


def test_missing_column_unknown_split_and_corrupt_file(release: Path):
    rows = [{"image": {"bytes": png(), "path": None}, "caption": "x", "name": "Bo Chen"}]
    path = write(release / "retain_perturbed", rows, pa.schema([("image", IMAGE), ("caption", pa.string()),
                                                                 ("name", pa.string())]))
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: row 0: missing field 'paraphrased_caption'"):
        Clear(release).items("retain", "forget10")
    with pytest.raises(DataError, match=r"unknown CLEAR split 'retain95\+tofu'.*present: forget10\+tofu"):
        Clear(release).train_examples("retain95+tofu")
    with pytest.raises(DataError, match="unknown CLEAR forget split 'forget20'"):
        Clear(release).items("forget", "forget20")
    bad = release / "real_world" / "train-00000-of-00001.parquet"
    bad.write_bytes(b"PAR1 truncated")
    with pytest.raises(DataError, match=rf"{re.escape(str(bad))}: cannot be read as parquet"):
        Clear(release).items("real_world", "forget10")


def test_a_row_with_neither_image_nor_question(tmp_path: Path):
    path = write(tmp_path / "full+tofu", [{"image": None, "caption": None, "question": None, "answer": None}],
                 pa.schema([("image", IMAGE), ("caption", pa.string()), ("question", pa.string()),
                            ("answer", pa.string())]))
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: row 0: field 'image' is null"):
        Clear(tmp_path).train_examples("full+tofu")


def test_builtin_is_written_in_the_release_layout(tmp_path: Path):
    from clear.synthetic import write_clear

    root = write_clear(tmp_path / "clear", n_persons=10, images_per_person=2, qa_per_person=3, n_retain_eval=3,
                       n_real_faces=2, n_real_world=2, image_size=28)
    assert sorted(p.name for p in root.iterdir()) == sorted([
        "full", "full+tofu", "forget01", "forget01+tofu", "forget05", "forget05+tofu", "forget10", "forget10+tofu",
        "retain99", "retain99+tofu", "retain95", "retain95+tofu", "retain90", "retain90+tofu", "forget01_perturbed",
        "forget05_perturbed", "forget10_perturbed", "retain_perturbed", "real_faces", "real_world"])
    schema = pq.read_schema(root / "forget10_perturbed" / "train-00000-of-00001.parquet")
    assert schema.names == ["image", "caption", "name", "perturbed_captions", "paraphrased_caption",
                            "perturbed_names"]
    assert schema.field("image").type == IMAGE and schema.field("perturbed_names").type == TEXTS
    assert b'"_type": "Image"' in schema.metadata[b"huggingface"]  # what datasets.load_dataset reads back
    assert pq.read_schema(root / "real_world" / "train-00000-of-00001.parquet").names == [
        "question", "answer", "options", "image"]
    data = Clear(root)
    full, forget, retain = (data.train_examples(c) for c in ("full+tofu", "forget10+tofu", "retain90+tofu"))
    assert len(full) == len(forget) + len(retain) == 10 * (2 + 3)
    persons = {ex.uid.rpartition("/")[0] for ex in forget}
    assert persons == {i.unit for i in data.items("forget", "forget10")}  # text QAs join their person's unit
    assert not persons & {i.unit for i in data.items("retain", "forget10")}
