"""MLLMU-Bench's release layout: the built-in writer, the loaders, the split rules and the errors on bad input."""

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mllmu.data import FORGET_SPLITS, RETAIN_OF, MllmuBench
from mllmu.synthetic import split_ids
from tests.conftest import shared_fixture
from unlearning.data.examples import DataError


def test_built_in_layout_matches_the_release(mllmu_dir: Path):
    for name in ("Full_Set", "Retain_Set", "ft_Data", *FORGET_SPLITS, *RETAIN_OF.values()):
        assert (mllmu_dir / name / "train-00000-of-00001.parquet").is_file(), name
    assert sorted(p.name for p in (mllmu_dir / "Test_Set").glob("*.parquet")) == [
        "train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    full = pq.read_table(mllmu_dir / "Full_Set" / "train-00000-of-00001.parquet")
    assert {"image", "ID", "Directory", "biography", "Classification_Task", "Generation_Task", "Mask_Task"} <= set(
        full.column_names)
    assert full.schema.field("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert b"huggingface" in full.schema.metadata  # written as an HF Image feature
    forget = pq.read_table(mllmu_dir / "forget_10" / "train-00000-of-00001.parquet")
    assert "metadata" not in forget.column_names and "Directory" not in forget.column_names  # issue #19
    train = pq.read_table(mllmu_dir / "baseline_train_split" / "forget_10" / "train-00000-of-00001.parquet")
    assert train.column_names == ["image", "ID", "metadata"]
    qa = json.loads(train.column("metadata")[0].as_py())[0]
    assert set(qa) == {"ID", "Question", "Answer", "Type"}  # Type: the built-in's text-only QAs (see synthetic.py)


def test_profiles_hold_both_modalities_of_every_task(mllmu_dir: Path):
    data = MllmuBench(mllmu_dir)
    profile = data.profiles("Full_Set")[0]
    counts = {(t, m): len(profile.items_of(t, m)) for t in ("classification", "cloze", "generation")
              for m in ("image_text", "text")}
    assert counts == {("classification", "image_text"): 5, ("classification", "text"): 4,
                      ("cloze", "image_text"): 2, ("cloze", "text"): 2,
                      ("generation", "image_text"): 5, ("generation", "text"): 4}
    mcq = profile.items_of("classification", "text")[0]
    assert [letter for letter, _ in mcq.options] == ["A", "B", "C", "D"] and mcq.answer in "ABCD"
    assert all("__" in item.question for item in profile.items_of("cloze", "text"))
    test = data.profiles("Test_Set")
    assert len(test) == 10 and all(len(p.images) == 2 and p.image is None for p in test)


def test_splits_are_disjoint_complete_and_train_from_their_own_rows(mllmu_dir: Path, tmp_path: Path):
    data = MllmuBench(mllmu_dir)
    all_ids = {p.id for p in data.profiles("Full_Set")}
    for forget, retain in RETAIN_OF.items():
        f, r = set(data.split_ids(forget)), set(data.split_ids(retain))
        assert not f & r and f | r == all_ids
        assert {ex.uid.split("/")[0] for ex in data.train_examples(forget)} == f
    full = data.train_examples("full")
    assert len(full) == 10 * 22
    # QAs typed Pure_Text train without the image; the release's untyped QAs all keep it
    assert sum(ex.image is None for ex in full) == 10 * 10 and all(isinstance(ex.image, bytes) or ex.image is None
                                                                   for ex in full)
    # without baseline_train_split the split's QAs come from ft_Data rows of its profiles: the same examples
    copy = tmp_path / "copy"
    shutil.copytree(mllmu_dir, copy)
    shutil.rmtree(copy / "baseline_train_split")
    assert MllmuBench(copy).train_examples("forget_15") == data.train_examples("forget_15")


def test_split_sizes_follow_the_release_lists():
    """The release's ID lists (shared fixtures): 25/50/75 of 500, disjoint from retain, not nested."""
    root = shared_fixture("mllmu_bench", "Data_split")
    ids = {}
    for forget, retain in RETAIN_OF.items():
        ids[forget] = json.loads((root / forget / "forget_ids.json").read_text())
        ids[retain] = json.loads((root / retain / "retain_ids.json").read_text())
        assert not set(ids[forget]) & set(ids[retain]) and len(ids[forget]) + len(ids[retain]) == 500
    ours = split_ids([f"{i:03d}" for i in range(1, 501)], seed=0)
    for name, release in ids.items():
        assert len(ours[name]) == len(release), name
        assert all(len(i) == 3 and i.isdigit() for i in release)  # zero-padded "001".."500", as we write them
    assert not set(ids["forget_5"]) <= set(ids["forget_10"]) and not set(ours["forget_5"]) <= set(ours["forget_10"])


def _rewrite(folder: Path, change) -> None:
    path = folder / "train-00000-of-00001.parquet"
    rows = pq.read_table(path).to_pylist()
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture()
def broken(mllmu_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "mllmu"
    shutil.copytree(mllmu_dir, copy)
    return copy


def test_missing_field_names_file_and_row(broken: Path):
    def drop(rows):
        del rows[1]["Mask_Task"]

    _rewrite(broken / "forget_15", drop)
    with pytest.raises(DataError, match=r"forget_15/train-00000-of-00001.parquet: row 1 \(ID \d+\): missing field "
                                        r"'Mask_Task'"):
        MllmuBench(broken).profiles("forget_15")


def test_corrupt_image_names_file_and_row(broken: Path):
    def corrupt(rows):
        rows[0]["image"]["bytes"] = b"not an image"

    _rewrite(broken / "Full_Set", corrupt)
    with pytest.raises(DataError, match=r"Full_Set/train-00000-of-00001.parquet: row 0 .*not a readable image"):
        MllmuBench(broken).profiles("Full_Set")


def test_bad_answer_letter_and_bad_metadata(broken: Path):
    def bad_letter(rows):
        rows[0]["Classification_Task"]["Pure_Text_Questions"][1]["Correct_Answer"] = "E"

    _rewrite(broken / "Retain_Set", bad_letter)
    with pytest.raises(DataError, match=r"row 0 .*Pure_Text_Questions\[1\]: 'Correct_Answer' 'E'"):
        MllmuBench(broken).profiles("Retain_Set")

    def bad_type(rows):
        rows[1]["metadata"] = json.dumps([{"ID": rows[1]["ID"], "Question": "q?", "Answer": "a.", "Type": "Audio"}])

    _rewrite(broken / "ft_Data", bad_type)
    with pytest.raises(DataError, match=r"row 1 .*metadata\[0\]: 'Type' 'Audio'"):
        MllmuBench(broken).train_examples("full")

    def bad_json(rows):
        rows[1]["metadata"] = "[{not json"

    _rewrite(broken / "ft_Data", bad_json)
    with pytest.raises(DataError, match=r"ft_Data/train-00000-of-00001.parquet: row 1 .*'metadata' is not valid JSON"):
        MllmuBench(broken).train_examples("full")


def test_unknown_split_and_missing_set_are_named(broken: Path):
    data = MllmuBench(broken)
    with pytest.raises(DataError, match="unknown MLLMU-Bench split 'forget_20'"):
        data.train_examples("forget_20")
    with pytest.raises(DataError, match="unknown MLLMU-Bench forget split 'forget10'"):
        data.retain_split("forget10")
    shutil.rmtree(broken / "Retain_Set")
    with pytest.raises(DataError, match="unknown MLLMU-Bench set 'Retain_Set'"):
        data.profiles("Retain_Set")
