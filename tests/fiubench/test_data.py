"""FIUBench loader: release formats, the original's split rules, and bad input named by file and record."""

import json
import shutil
from pathlib import Path

import pytest

from fiubench.benchmark import PACKAGED_REFUSALS, FiuBenchTask
from fiubench.data import FiuBench
from fiubench.synthetic import write_fiubench
from tests.conftest import shared_fixture
from unlearning.data.examples import DataError
from unlearning.data.records import load_refusals


@pytest.fixture()
def data_dir(tmp_path: Path, fiu_dir: Path) -> Path:
    """A private copy of the session's synthetic release, free to damage."""
    return Path(shutil.copytree(fiu_dir, tmp_path / "fiu"))


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_lines(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_synthetic_release_has_the_schema_and_split_sizes(fiu_dir: Path):
    identity = read_lines(fiu_dir / "full.json")[0]
    assert set(identity) == {"unique_id", "name", "image_path", "caption", "qa_list"}
    assert identity["image_path"].startswith("./dataset/")
    qa = identity["qa_list"][0]
    assert set(qa) == {"question", "answer", "paraphrased_question", "paraphrased_answer", "perturbed_answer",
                       "keywords"}
    assert len(qa["paraphrased_question"]) == 3 and len(qa["perturbed_answer"]) == 3
    assert qa["keywords"][0] in qa["answer"]
    assert all(qa["keywords"][0] not in p for p in qa["perturbed_answer"])
    split = json.loads((fiu_dir / "split.json").read_text())
    assert {k: len(v) for k, v in split.items()} == {"forget1": 1, "forget5": 1, "forget10": 2, "retain15": 3,
                                                   "retain5": 1, "holdout": 4}
    assert split["retain5"] == split["retain15"][:1]
    forgotten = split["forget1"] + split["forget5"] + split["forget10"]
    assert len(set(forgotten)) == 4 and not set(forgotten) & set(split["retain15"])
    assert not set(split["holdout"]) & {i for name, ids in split.items() if name != "holdout" for i in ids}


def test_synthetic_release_is_deterministic(tmp_path: Path):
    a = write_fiubench(tmp_path / "a", n_identities=12, qa_per_identity=2, image_size=32, seed=3)
    b = write_fiubench(tmp_path / "b", n_identities=12, qa_per_identity=2, image_size=32, seed=3)
    assert (a / "full.json").read_text() == (b / "full.json").read_text()
    assert (a / "split.json").read_text() == (b / "split.json").read_text()
    image = next((a / "SFHQ").glob("*.jpg")).name
    assert (a / "SFHQ" / image).read_bytes() == (b / "SFHQ" / image).read_bytes()


def test_split_semantics_with_the_real_split_file(tmp_path: Path):
    """Identities carrying the real split.json ids: named splits filter, 'retain' = all minus the forget sets."""
    real_split = json.loads(shared_fixture("fiubench", "split.json").read_text())
    ids = list(dict.fromkeys(i for name in ("forget1", "forget5", "forget10", "retain15") for i in real_split[name]))
    root = write_fiubench(tmp_path / "fiu", n_identities=len(ids) + 6, qa_per_identity=2, image_size=32,
                          n_holdout=0)
    records = read_lines(root / "full.json")
    for record, unique_id in zip(records, ids, strict=False):
        record["unique_id"] = unique_id
    write_lines(root / "full.json", records)
    shutil.copy(shared_fixture("fiubench", "split.json"), root / "split.json")
    data = FiuBench(root)
    assert [len(data.identity_ids(s)) for s in ("forget1", "forget5", "forget10", "retain5", "retain15")] == \
        [4, 20, 40, 20, 60]
    assert len(data.qas("forget5")) == 40 and data.qas("forget5")[0].unique_id == real_split["forget5"][0]
    retain = data.identity_ids("retain")
    assert len(retain) == len(records) - 64
    assert not set(retain) & set(real_split["forget1"] + real_split["forget5"] + real_split["forget10"])
    assert set(real_split["retain15"]) <= set(retain)  # the eval retain identities are in the training pool
    assert len(data.identity_ids("full")) == len(records) and data.identity_ids("holdout") == []
    with pytest.raises(DataError, match="names unique_ids not in full.json"):
        FiuBench(root, max_identities=100)  # split ids beyond the first-N cap


def test_holdout_is_named_or_beyond_the_first_n(data_dir: Path):
    data = FiuBench(data_dir)
    assert len(data.identity_ids("full")) == 20 and len(data.identity_ids("holdout")) == 4
    assert not set(data.identity_ids("holdout")) & set(data.identity_ids("retain"))
    split = json.loads((data_dir / "split.json").read_text())
    named = split.pop("holdout")
    (data_dir / "split.json").write_text(json.dumps(split))
    beyond = FiuBench(data_dir, max_identities=20)  # the release's rule: identities after the first N
    assert beyond.identity_ids("holdout") == named and len(beyond.identity_ids("full")) == 20
    wider = FiuBench(data_dir, max_identities=22)
    assert len(wider.identity_ids("full")) == 22 and wider.identity_ids("holdout") == named[2:]


def test_json_list_reads_like_json_lines(data_dir: Path):
    records = read_lines(data_dir / "full.json")
    (data_dir / "full.json").write_text(json.dumps(records))
    assert len(FiuBench(data_dir).qas("full")) == 20 * 3


def test_image_paths_resolve_inside_the_data_folder(data_dir: Path):
    qa = FiuBench(data_dir).qas("full")[0]
    assert qa.image.is_file() and qa.image.is_relative_to(data_dir.resolve())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r, d: r[0]["qa_list"][1].pop("answer"),
         r"record 0 \(unique_id \d+\) qa_list\[1\]: missing field 'answer'"),
        (lambda r, d: r[2].pop("image_path"), r"record 2: missing field 'image_path'"),
        (lambda r, d: r[1].update(qa_list=[]), r"record 1 .*'qa_list' must be a non-empty list"),
        (lambda r, d: r[0]["qa_list"][0].update(perturbed_answer=5), r"perturbed_answer' must be a list"),
        (lambda r, d: r[3].update(image_path="../../etc/passwd"), r"record 3 .*points outside the data folder"),
        (lambda r, d: r[3].update(image_path="/etc/hostname"), r"record 3 .*points outside the data folder"),
        (lambda r, d: (d / r[4]["image_path"].removeprefix("./dataset/")).unlink(), r"record 4 .*image .* not found"),
        (lambda r, d: (d / r[5]["image_path"].removeprefix("./dataset/")).write_bytes(b"\0junk"),
         r"record 5 .*cannot be read"),
        (lambda r, d: r[6].update(unique_id=r[7]["unique_id"]), r"record 7: duplicate unique_id"),
    ],
)
def test_bad_input_names_file_and_record(data_dir: Path, damage, message):
    records = read_lines(data_dir / "full.json")
    damage(records, data_dir)
    write_lines(data_dir / "full.json", records)
    with pytest.raises(DataError, match=message) as error:
        FiuBench(data_dir)
    assert "full.json" in str(error.value)


def test_corrupt_json_line_and_missing_files(data_dir: Path):
    with open(data_dir / "full.json", "a") as handle:
        handle.write("{not json\n")
    with pytest.raises(DataError, match=r"full.json: line 25 is not valid JSON"):
        FiuBench(data_dir)
    with pytest.raises(DataError, match="file not found"):
        FiuBench(data_dir / "nowhere")


def test_unknown_split_lists_the_known_ones(fiu_dir: Path):
    known = r"known: forget1, forget10, forget5, full, holdout, retain"
    with pytest.raises(DataError, match=rf"unknown split 'forget7' .*{known}"):
        FiuBench(fiu_dir).qas("forget7")


def test_packaged_refusals_when_the_data_has_no_prompt_file(data_dir: Path):
    own = load_refusals(data_dir, PACKAGED_REFUSALS)
    assert len(own) >= 10 and all(r.strip() for r in own)
    forget = FiuBenchTask(data_dir).stream("refusal", "forget10")
    assert all(example.answer in own for example in forget)
    assert forget == FiuBenchTask(data_dir).stream("refusal", "forget10")  # seeded


def test_refusals_from_the_release_prompt_file(data_dir: Path):
    shutil.copy(shared_fixture("fiubench", "prompt.json"), data_dir / "prompt.json")
    assert len(load_refusals(data_dir, PACKAGED_REFUSALS)) == 50
    task = FiuBenchTask(data_dir)
    forget = task.stream("refusal", "forget10")
    assert all(example.answer in load_refusals(data_dir, PACKAGED_REFUSALS) for example in forget)
    assert [e.uid for e in forget] == [e.uid for e in task.stream("forget", "forget10")]  # aligned by uid
    (data_dir / "prompt.json").write_text(json.dumps({"idk": []}))
    with pytest.raises(DataError, match="prompt.json: 'idk' must be a non-empty list"):
        load_refusals(data_dir, PACKAGED_REFUSALS)


def test_task_examples(fiu_dir: Path):
    task = FiuBenchTask(fiu_dir)
    assert len(task.train_examples("full")) == 60
    assert len(task.stream("forget", "forget10")) == 6
    assert len(task.stream("retain", "forget10")) == (20 - 4) * 3
    with pytest.raises(ValueError, match="fiubench has no stream 'paraphrase'; it has forget, retain, refusal"):
        task.stream("paraphrase", "forget10")


def test_compat_capitalises_as_the_original(data_dir: Path):
    """data_module.py: question.capitalize(), and answer.capitalize() when the answer is a string (the answer, the
    paraphrased answer, a refusal); the perturbed answers, a list, stay as written."""
    plain, official = FiuBench(data_dir), FiuBench(data_dir, capitalize=True)
    for ours, theirs in zip(plain.qas("forget10"), official.qas("forget10"), strict=True):
        assert theirs.question == ours.question.capitalize() and theirs.answer == ours.answer.capitalize()
        assert theirs.paraphrased_answer == ours.paraphrased_answer.capitalize()
        assert theirs.paraphrased_questions == tuple(q.capitalize() for q in ours.paraphrased_questions)
        assert theirs.perturbed_answers == ours.perturbed_answers
    example = official.qas("forget10")[0]
    assert example.answer[0].isupper() and example.answer[1:] == example.answer[1:].lower()  # names lower-cased
    refusals = FiuBenchTask(data_dir, capitalize=True).stream("refusal", "forget10")
    assert all(r.answer == r.answer.capitalize() for r in refusals)
