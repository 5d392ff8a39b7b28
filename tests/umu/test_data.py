"""UMU-Bench's release layout: the built-in writer, the loader on crafted release folders (with the release's
oddities), the streams, and the errors on bad input (each naming file, row and field)."""

from __future__ import annotations

import ast
import io
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from umu.benchmark import UmuTask
from umu.data import FULL_SPLIT, UmuBench, literal_dict
from unlearning.data.examples import DataError

PARQUET = "train-00000-of-00001.parquet"
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SPLITS = ("forget_5", "forget_10", "forget_15", "retain_95", "retain_90", "retain_85", FULL_SPLIT, "Real_Person_Set")


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def row(profile_id: Any = "001", name: str = "José Müller", **changes: Any) -> dict[str, Any]:
    """One release row as the HF parquet holds it: stringified Python dicts, 'muitimodal' spelt as released."""
    def side(question: str, answer: str, options: bool = False) -> dict[str, Any]:
        entry: dict[str, Any] = {"question": question, "answer": answer}
        if options:
            entry["options"] = {"A": "Zürich", "B": "北京", "C": "Lyon", "D": "Porto"}
        return entry

    out = {
        "ID": profile_id, "image": {"bytes": png(), "path": f"image_{profile_id}.jpg"},
        "Biography": f"{name} was born in 北京.",
        "MM_QA": str({"question": {"1": "Where was this person born?"}, "answer": {"1": f"{name} was born in 北京."}}),
        "UM_QA": str({"question": {"1": f"Where was {name} born?"}, "answer": {"1": f"{name} was born in 北京."}}),
        "Classify": str({"unimodal": {"1": side(f"Where was {name} born?", "B. 北京", True)},
                         "muitimodal": {"1": side("Where was this person born?", "B", True)}}),
        "Cloze": str({"unimodal": {"1": side(f"{name} was born in __.", "北京.")},
                      "muitimodal": {"1": side("This person was born in __.", "北京")}}),
        "Generation": str({"unimodal": {"1": side(f"Where was {name} born?", f"{name} was born in 北京.")},
                           "muitimodal": {"1": side("Where was this person born?", f"{name} was born in 北京.")}}),
    }
    out.update(changes)
    return {key: value for key, value in out.items() if value is not None or key == "image"}


def write(folder: Path, rows: list[dict[str, Any]], file: str = PARQUET) -> Path:
    """A parquet file with the release's column types (an image struct; every other column a string or int)."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = {key for r in rows for key in r}
    fields = [pa.field(k, IMAGE if k == "image" else pa.int64() if k == "ID" and isinstance(rows[0][k], int)
                       else pa.string()) for k in sorted(columns)]
    table = pa.Table.from_pylist(rows, schema=pa.schema(fields))
    pq.write_table(table, folder / file)
    return folder / file


def release(root: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    """Every split folder of the release, holding the same rows."""
    for split in SPLITS:
        write(root / split, rows or [row("001"), row("002", "Émile Zola")])
    return root


def test_built_in_layout_matches_the_release(umu_dir: Path):
    for split in SPLITS:
        assert (umu_dir / split / PARQUET).is_file(), split
    table = pq.read_table(umu_dir / "forget_10" / PARQUET)
    assert table.column_names == ["ID", "image", "Biography", "MM_QA", "UM_QA", "Classify", "Cloze", "Generation"]
    assert table.schema.field("image").type == IMAGE and b"huggingface" in table.schema.metadata
    assert all(table.schema.field(c).type == pa.string() for c in table.column_names if c != "image")
    first = table.to_pylist()[0]
    classify = ast.literal_eval(first["Classify"])  # a stringified Python dict, as eval.py:122 parses it
    assert set(classify) == {"unimodal", "muitimodal"} and set(classify["unimodal"]) == set(classify["muitimodal"])
    entry = classify["unimodal"]["1"]
    assert set(entry) == {"question", "options", "answer"} and entry["answer"].split(".")[0] in entry["options"]
    qa = ast.literal_eval(first["MM_QA"])
    assert set(qa) == {"question", "answer"} and set(qa["question"]) == set(qa["answer"])


def test_splits_and_streams(umu_dir: Path):
    task = UmuTask(umu_dir)
    forget, full = task.data.profiles("forget_10"), task.data.profiles(FULL_SPLIT)
    retain = task.data.profiles("retain_90")
    assert {p.id for p in forget} | {p.id for p in retain} == {p.id for p in full}
    assert not {p.id for p in forget} & {p.id for p in retain}
    stream = task.stream("forget", "forget_10")
    multimodal = [ex for ex in stream if ex.image is not None]
    assert multimodal and len(stream) > len(multimodal)  # MM_QA with the image, UM_QA as text
    assert all("/mm/" in ex.uid for ex in multimodal) and all("/um/" in ex.uid for ex in stream if ex.image is None)
    refusals = task.stream("refusal", "forget_10")
    assert [ex.uid for ex in refusals] == [ex.uid for ex in stream]
    assert refusals == UmuTask(umu_dir).stream("refusal", "forget_10")  # drawn once with the seed
    assert len(task.train_examples("full")) == sum(len(p.qas) for p in full)
    assert len(UmuTask(umu_dir, train_qa="unimodal").stream("forget", "forget_10")) == len(stream) - len(multimodal)


def test_retain_subsample_is_the_authors(umu_dir: Path):
    """unlearn_dataset.py:66-71: int(n (1 - r) / r) QAs per modality, random.seed(42) then random.sample."""
    import random

    everything = UmuTask(umu_dir).stream("retain", "forget_10")
    sub = UmuTask(umu_dir, retain_pool="subsample").stream("retain", "forget_10")
    mm = [ex for ex in everything if "/mm/" in ex.uid]
    random.seed(42)
    expected = random.sample(mm, int(len(mm) * 0.1 / 0.9))
    assert [ex for ex in sub if "/mm/" in ex.uid] == expected
    assert len(sub) == int(len(mm) * 0.1 / 0.9) + int((len(everything) - len(mm)) * 0.1 / 0.9)


def test_crafted_release_with_its_oddities(tmp_path: Path):
    """Integer IDs, non-ASCII names, a Classify answer as "B. text" or "B", a cloze answer with its period, JSON text
    instead of a Python literal, 'multimodal' spelt right, no Biography column, the real set in eval.py's folder
    name and without training QAs, two shards."""
    root = release(tmp_path / "umu")
    json_row = row(3, "Zoë Ångström", Biography=None,
                   Classify='{"unimodal": {"1": {"question": "q", "options": {"A": "a", "B": "b", "C": "c", '
                            '"D": "d"}, "answer": "C."}}, "multimodal": {"1": {"question": "q2", "options": '
                            '{"A": "a", "B": "b", "C": "c", "D": "d"}, "answer": "A. a"}}}')
    write(root / "forget_10", [json_row], "train-00001-of-00002.parquet")
    shutil.rmtree(root / "Real_Person_Set")
    write(root / "real_person", [row(7, "李雷", MM_QA=None, UM_QA=None)])
    data = UmuBench(root)
    profiles = data.profiles("forget_10")
    assert [p.id for p in profiles] == ["001", "002", "3"]
    cls = profiles[2].items_of("classification", "image_text")[0]
    assert cls.answer == "A" and profiles[2].items_of("classification", "text")[0].answer == "C"
    first = profiles[0]
    assert first.items_of("classification", "text")[0].options[1] == ("B", "北京")
    assert first.items_of("cloze", "text")[0].answer == "北京."
    real = data.profiles("Real_Person_Set")  # read from real_person/
    assert real[0].id == "7" and real[0].items_of("generation", "text")[0].answer.startswith("李雷")
    with pytest.raises(DataError, match=r"real_person/train-00000-of-00001.parquet: row 0 \(ID 7\): missing field "
                                        r"'MM_QA', needed to train"):
        real[0].training_qas("image_text")
    assert any("李雷" in text for text in data.texts())  # the real set's text trains an offline tokenizer too


def literal_error(value: str) -> str:
    with pytest.raises(DataError) as error:
        literal_dict(value, "f.parquet: row 3 (ID 9)", "Classify")
    return str(error.value)


def test_malformed_stringified_dict_names_the_field():
    assert "f.parquet: row 3 (ID 9): field 'Classify' is not a stringified dict" in literal_error("{'unimodal': ")
    assert "field 'Classify' must be a dict, got list" in literal_error("[1, 2]")
    assert "is not a stringified dict (TypeError" in literal_error("{[1]: 2}")  # an unhashable key


@pytest.mark.parametrize(("changes", "message"), [
    ({"Classify": "{'unimodal': {'1': "}, r"row 1 \(ID 002\): field 'Classify' is not a stringified dict"),
    ({"image": {"bytes": b"not an image", "path": "x.jpg"}}, r"row 1 \(ID 002\): field 'image' is not a readable"),
    ({"ID": None}, r"row 1: field 'ID' must be a non-empty string or an integer"),
    ({"Classify": str({"unimodal": {"1": {"question": "q", "options": {"A": "a", "B": "b", "C": "c", "D": "d"},
                                          "answer": "E. e"}},
                       "muitimodal": {"1": {"question": "q", "options": {"A": "a", "B": "b", "C": "c", "D": "d"},
                                            "answer": "A"}}})},
     r"row 1 \(ID 002\) Classify.unimodal\['1'\]: 'answer' 'E. e' does not start with an option letter"),
    ({"Cloze": str({"unimodal": {"1": {"question": "q", "answer": "a"}}, "muitimodal": {}})},
     r"row 1 \(ID 002\) Cloze\['1'\]: no multimodal question with this key"),
    ({"Generation": str({"unimodal": {"1": {"question": "q"}}, "muitimodal": {"1": {"question": "q", "answer": "a"}}})},
     r"row 1 \(ID 002\) Generation.unimodal\['1'\]: missing field 'answer'"),
    ({"MM_QA": str({"question": {"1": "q"}, "answer": {}})},
     r"row 1 \(ID 002\) MM_QA\['1'\]: question without an answer"),
])
def test_bad_rows_name_file_row_and_field(tmp_path: Path, changes: dict[str, Any], message: str):
    root = release(tmp_path / "umu", [row("001"), {**row("002"), **changes}])
    with pytest.raises(DataError, match=rf"forget_10/{PARQUET}: {message}"):
        UmuBench(root).profiles("forget_10")


def test_missing_columns(tmp_path: Path):
    bad = row("002", Generation=None)  # a task column missing: an error when the profile is evaluated
    root = release(tmp_path / "umu", [row("001"), bad])
    profile = UmuBench(root).profiles("forget_10")[1]
    with pytest.raises(DataError, match=rf"forget_10/{PARQUET}: row 1 \(ID 002\): missing field\(s\) 'Generation'"):
        profile.evaluation_items()
    no_image = {k: v for k, v in row("002").items() if k != "image"}
    write(root / "retain_90", [row("001"), no_image])
    with pytest.raises(DataError, match=rf"retain_90/{PARQUET}: row 1 \(ID 002\): missing field 'image'"):
        UmuBench(root).profiles("retain_90")


def test_unknown_split_and_missing_folder(tmp_path: Path):
    root = release(tmp_path / "umu")
    with pytest.raises(DataError, match="unknown UMU-Bench split 'forget_7'; known: forget_5, forget_10"):
        UmuBench(root).profiles("forget_7")
    with pytest.raises(DataError, match="unknown UMU-Bench forget split 'retain_90'"):
        UmuBench.retain_split("retain_90")
    shutil.rmtree(root / "retain_85")
    with pytest.raises(DataError, match=r"split 'retain_85': no folder .*retain_85 \(present: Real_Person_Set"):
        UmuBench(root).profiles("retain_85")
    (root / "retain_85").mkdir()
    with pytest.raises(DataError, match="retain_85: no parquet files"):
        UmuBench(root).profiles("retain_85")
    write(root / "forget_5", [row("001"), row("001")])
    with pytest.raises(DataError, match=r"row 1 \(ID 001\): duplicate ID"):
        UmuBench(root).profiles("forget_5")
