"""Inputs of the wrong shape or size, each answered by a clear error naming the file and record, or by the correct
number: summaries of the wrong shape left out of the tables (the others written), a decompression-bomb-sized
image, answers outside the Latin script under ROUGE, prompts longer than the model's context.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from rouge_score import rouge_scorer

from fiubench.benchmark import FiuBenchTask
from mllmu.benchmark import MODALITY_TITLES, MllmuTask
from mllmu.evaluate import SETS
from mllmu.metrics import rouge_f
from results_collect import collect
from unlearning.data.examples import DataError, Example
from unlearning.data.images import MAX_PIXELS_VARIABLE, decode_image, load_image
from unlearning.data.records import read_records
from unlearning.evaluation.metrics.text import non_latin, rouge_1_recall, rouge_l, rouge_l_recall
from unlearning.evaluation.schema import SCHEMA_VERSION, Field, SchemaError, table_metrics, validate_summary
from unlearning.inference.answers import warn_beyond_context

PROVENANCE = {"git": None, "date": "2026-01-01", "versions": {}, "lock_differences": {}, "numerics": {},
              "compat": "default", "compat_switches": [], "data": {}, "weights": None}


def _summary(task: type, run: dict, own: dict) -> dict:
    rows = task.table_rows(run, own)
    return {"schema_version": SCHEMA_VERSION, "benchmark": task.name, "compat": "default", "compat_switches": [],
            **own, "metrics": table_metrics(task.report, rows, own), "provenance": PROVENANCE}


FIU_RUN = {"kind": "forget", "benchmark": "fiubench", "model": "tiny", "method": "ga", "split": "forget10"}
MLLMU_RUN = {"kind": "forget", "benchmark": "mllmu", "model": "tiny", "method": "ga", "forget_modality": "multimodal"}


def fiu_summary() -> dict:
    return _summary(FiuBenchTask, FIU_RUN, {
        "forget_split": "forget10", "judge": {"status": "skipped"},
        "forget": {"n": 4, "rougeL_recall": 0.5, "exact_match": 0.25, "mia": 0.1, "ape": 0.2},
        "retain": {"n": 6, "rougeL_recall": 0.8, "truth_ratio": 0.6},
        "model_utility": 0.7, "forget_quality": 0.3, "forget_quality_log10": -0.5})


def mllmu_summary() -> dict:
    values = {"classification_acc": 0.5, "rouge1_f": 0.4, "rouge2_f": 0.3, "rougeL_f": 0.35, "cloze_acc": 0.25,
              "n_classification": 4, "n_generation": 4, "n_cloze": 4}
    return _summary(MllmuTask, MLLMU_RUN, {
        "forget_split": "forget10", "judge": {"status": "skipped"},
        "sets": {s: {m: dict(values) for m in MODALITY_TITLES} for s in SETS}})


def write_run(root: Path, name: str, run: dict, summary) -> Path:
    run_dir = root / run["benchmark"] / run["model"] / name
    (run_dir / "eval").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(run))
    (run_dir / "eval" / "summary.json").write_text(json.dumps(summary))
    return run_dir


def _without(key: str):
    def change(summary: dict) -> dict:
        summary.pop(key)
        return summary
    return change


def _set(dotted: str, value):
    def change(summary: dict) -> dict:
        *parents, last = dotted.split(".")
        node = summary
        for key in parents:
            node = node[key]
        node[last] = value
        return summary
    return change


# (which summary, how it is broken, what the listing must say)
BROKEN = [
    ("fiu", lambda s: [], "field '(top level)' must be an object"),
    ("fiu", lambda s: 3, "field '(top level)' must be an object"),
    ("fiu", _without("retain"), "field 'retain' is missing"),
    ("fiu", _set("forget", 5), "field 'forget' must be an object, got int 5"),
    ("fiu", _set("retain.truth_ratio", "high"), "field 'retain.truth_ratio' must be a number or null, got str 'high'"),
    ("fiu", _set("general", [1]), "field 'general' must be an object or null, got list [1]"),
    ("fiu", _set("membership_auc", 0.5), "field 'membership_auc' must be an object or null, got float 0.5"),
    ("mllmu", _set("sets.forget", 7), "field 'sets.forget' must be an object, got int 7"),
    ("mllmu", lambda s: (s["sets"]["test"].pop("text"), s)[1], "field 'sets.test.text' is missing"),
]


def test_summaries_of_the_wrong_shape_are_each_listed_and_skipped_and_every_other_table_written(
        tmp_path: Path, caplog):
    root, out = tmp_path / "runs", tmp_path / "results"
    write_run(root, "good_fiu", FIU_RUN, fiu_summary())
    write_run(root, "good_mllmu", MLLMU_RUN, mllmu_summary())
    broken = []
    for index, (kind, change, message) in enumerate(BROKEN):
        run, summary = (FIU_RUN, fiu_summary()) if kind == "fiu" else (MLLMU_RUN, mllmu_summary())
        broken.append((write_run(root, f"broken_{index}", run, change(copy.deepcopy(summary))), message))
    bad_run = write_run(root, "bad_run_json", FIU_RUN, fiu_summary())
    (bad_run / "run.json").write_text("[]")
    with caplog.at_level(logging.WARNING):
        rows = collect(root, out)
    assert {row["run"] for row in rows["fiubench"]} == {"good_fiu"}
    assert {row["run"] for row in rows["mllmu"]} == {"good_mllmu"}
    assert f"left out of the tables ({len(BROKEN) + 1})" in caplog.text
    for run_dir, message in broken:
        assert f"{run_dir / 'eval' / 'summary.json'}: {message}" in caplog.text, message
    assert f"{bad_run / 'run.json'}: must be an object, got list" in caplog.text
    for benchmark in ("fiubench", "mllmu"):
        for suffix in (".json", ".csv", ".md"):
            assert (out / f"{benchmark}{suffix}").is_file()
        assert [row["model"] for row in json.loads((out / f"{benchmark}.json").read_text())["rows"]] == \
            ["tiny"] * len(rows[benchmark])


def test_a_summary_the_schema_lets_through_but_the_table_cannot_read_is_listed(tmp_path: Path, caplog, monkeypatch):
    """A field no declaration covers (here: the declarations switched off) stops only its own run, named."""
    monkeypatch.setattr(FiuBenchTask, "summary_fields", ())
    root = tmp_path / "runs"
    write_run(root, "good_fiu", FIU_RUN, fiu_summary())
    bad = write_run(root, "bad_fiu", FIU_RUN, _without("retain")(fiu_summary()))
    with caplog.at_level(logging.WARNING):
        rows = collect(root, tmp_path / "results")
    assert [row["run"] for row in rows["fiubench"]] == ["good_fiu"]
    assert f"{bad / 'eval' / 'summary.json'}: its table row cannot be made" in caplog.text and "KeyError" in caplog.text


@pytest.mark.parametrize("task", [FiuBenchTask, MllmuTask])
def test_the_declared_fields_accept_a_well_formed_summary(task: type):
    summary = fiu_summary() if task is FiuBenchTask else mllmu_summary()
    assert validate_summary(summary, Path("s.json"), task.summary_fields) == summary


def test_a_field_declaration_is_checked():
    with pytest.raises(ValueError, match="kind must be one of"):
        Field("x", "mapping")
    nested = (Field("a", "object", True, True), Field("a.b", "number"))
    validate_summary({**fiu_summary(), "a": None}, Path("s.json"), nested)  # a absent or null: a.b is not asked for
    with pytest.raises(SchemaError, match=r"s.json: field 'a.b' is missing"):
        validate_summary({**fiu_summary(), "a": {}}, Path("s.json"), nested)


# ------------------------------------------------------------------ a decompression-bomb-sized image


def bomb_png() -> bytes:
    """A 14000x14000 1-bit PNG: 196 million pixels (past PIL's refusal at about 179 million), 24 KB on disk."""
    buffer = io.BytesIO()
    Image.new("1", (14000, 14000)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture()
def pixel_limit(monkeypatch):
    """PIL's limit restored after the test (the environment variable sets it when an image is opened)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    monkeypatch.delenv(MAX_PIXELS_VARIABLE, raising=False)
    return monkeypatch


def test_a_huge_image_names_file_record_and_the_setting_that_allows_it(tmp_path: Path, fiu_dir: Path, pixel_limit):
    from fiubench.data import FiuBench

    data = tmp_path / "fiubench"
    shutil.copytree(fiu_dir, data)
    rows = read_records(data / "full.json")
    image = data / rows[3]["image_path"].removeprefix("./dataset/")
    image.write_bytes(bomb_png())
    with pytest.raises(DataError, match=rf"full.json: record 3 \(unique_id {rows[3]['unique_id']}\): image "
                                        rf"{re.escape(str(image.resolve()))} is too large to open \(.*196000000 pixels"
                                        rf".*\); if the image is genuine, allow it by setting the environment variable "
                                        rf"{MAX_PIXELS_VARIABLE}=196000000 \(or more\)"):
        FiuBench(data)
    pixel_limit.setenv(MAX_PIXELS_VARIABLE, "200000000")
    FiuBench(data)  # allowed: the data loads
    pixel_limit.setenv(MAX_PIXELS_VARIABLE, "lots")
    with pytest.raises(DataError, match=f"{MAX_PIXELS_VARIABLE} must be a whole number of pixels, got 'lots'"):
        FiuBench(data)


def test_mllmu_huge_image_names_shard_row_and_field(tmp_path: Path, mllmu_dir: Path, pixel_limit):
    from mllmu.data import MllmuBench

    data = tmp_path / "mllmu"
    shutil.copytree(mllmu_dir, data)
    shard = next((data / "Full_Set").glob("*.parquet"))
    rows = pq.read_table(shard).to_pylist()
    rows[1]["image"]["bytes"] = bomb_png()
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(shard)), shard)
    with pytest.raises(DataError, match=rf"{re.escape(str(shard))}: row 1 \(ID {rows[1]['ID']}\): field 'image': the "
                                        rf"image is too large to open .*{MAX_PIXELS_VARIABLE}="):
        MllmuBench(data).profiles("Full_Set")


def test_images_opened_for_a_batch_name_the_file_when_too_large(tmp_path: Path, pixel_limit):
    path = tmp_path / "face.png"
    Image.new("RGB", (60, 60)).save(path)
    pixel_limit.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 3600 pixels: past twice the limit
    with pytest.raises(DataError, match=rf"image {re.escape(str(path))} is too large to open .*"
                                        rf"{MAX_PIXELS_VARIABLE}=3600 \(or more\)"):
        load_image(path)
    with pytest.raises(DataError, match=rf"image bytes are too large to open .*{MAX_PIXELS_VARIABLE}="):
        decode_image(path.read_bytes())
    pixel_limit.setenv(MAX_PIXELS_VARIABLE, "4000")
    assert load_image(path).size == (60, 60)


# ------------------------------------------------------------------ ROUGE outside the Latin script

IDENTICAL = ["北京是中华人民共和国的首都。", "東京は日本の首都です", "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
             "Москва — столица России, 1147 год.", "नमस्ते, मेरा नाम जूनो है", "서울은 한국의 수도입니다",
             "القاهرة عاصمة مصر", "กรุงเทพมหานครเป็นเมืองหลวง"]


@pytest.mark.parametrize("text", IDENTICAL)
def test_rouge_of_an_identical_answer_in_another_script_is_one(text: str):
    assert non_latin(text)
    assert rouge_l_recall(text, text) == 1.0 and rouge_1_recall(text, text) == 1.0
    assert rouge_l(text, text).fmeasure == 1.0
    assert rouge_f(text, text) == {"rouge1_f": 1.0, "rouge2_f": 1.0, "rougeL_f": 1.0}


def test_rouge_in_another_script_counts_what_is_shared():
    assert rouge_l_recall("北京是中国的首都", "北京是首都") == pytest.approx(5 / 8)  # per character
    assert rouge_l_recall("Москва столица России", "Москва не столица") == pytest.approx(2 / 3)  # per word
    assert rouge_l_recall("北京是中国的首都", "Paris") == 0.0
    assert rouge_l_recall("Juno works in 北京", "juno working in 北京") == 1.0  # Latin words still stemmed


ASCII_PAIRS = [("the cat sat on the mat", "the cat on a mat"), ("Juno works in Lisbon", "juno working in lisbon"),
               ("Apt. 657, 12 Rue de la Paix", "apartment 657 rue de la paix"), ("a b c", "c b a"), ("", "x"),
               ("José García lives in Zürich", "José Garcia lived in Zurich"), ("naïve café", "naive cafe")]


@pytest.mark.parametrize(("reference", "prediction"), ASCII_PAIRS)
def test_latin_text_scores_exactly_as_rouge_score(reference: str, prediction: str):
    original = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True).score(reference, prediction)
    assert not non_latin(reference, prediction)
    assert rouge_l(reference, prediction) == original["rougeL"]
    assert rouge_1_recall(reference, prediction) == original["rouge1"].recall
    assert rouge_f(reference, prediction) == {"rouge1_f": original["rouge1"].fmeasure,
                                              "rouge2_f": original["rouge2"].fmeasure,
                                              "rougeL_f": original["rougeL"].fmeasure}


# ------------------------------------------------------------------ prompts longer than the model's context


def test_prompts_longer_than_the_context_are_warned_about_with_example_and_length(collator, caplog):
    model = SimpleNamespace(config=SimpleNamespace(text_config=SimpleNamespace(max_position_embeddings=40)))
    short = Example("Who?", "Juno.", None, uid="short")
    long = Example("Who is " + "the person " * 30 + "here?", "Juno.", None, uid="long")
    with caplog.at_level(logging.WARNING):
        over = warn_beyond_context(model, collator, [short, long], "generate forget")
    assert [uid for uid, _ in over] == ["long"] and over[0][1] > 40
    assert re.search(r"generate forget: 1 of 2 prompts are longer than the model's context of 40 tokens .* not "
                     rf"truncated.*example 'long': {over[0][1]} tokens", caplog.text)
    assert warn_beyond_context(SimpleNamespace(config=SimpleNamespace()), collator, [long], "x") == []
