"""Faults a careless or hostile user injects, each answered by a clear error or the correct number, never by a
silently wrong number or a lost result.

One small world (the built-in FIUBench on the small model: Stage I on full and retain, a GA forget run, all
evaluated) is trained once per module; each test works on its own copy, breaks one thing, and checks the
error (file and record named) and that no earlier result file changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file, save_file

from results_collect import collect, collect_rows
from unlearning.data.examples import DataError
from unlearning.data.records import read_records
from unlearning.recipes.common import CONFIG_DIR
from unlearning.recipes.evaluate import EvaluationFailed, evaluate
from unlearning.recipes.finetune import finetune
from unlearning.recipes.forget import forget
from unlearning.runs.folders import find_runs, read_run
from unlearning.runs.io import CorruptFile, read_json

FORGET = ("method=ga", "max_steps=1", "batch_size=2")


def config(name: str, root: Path, data: Path, model: Path, *overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose(name, overrides=[f"run_root={root}", f"data_dir={data}", f"model.path={model}", *overrides])


def eval_config(world: World, *overrides: str):
    return config("eval", world.root, world.data, world.model, "eval.batch_size=8", "eval.max_new_tokens=6",
                  "eval.general=null", f"eval.judge.cache_dir={world.base}/judge_cache", *overrides)


@dataclass
class World:
    base: Path
    data: Path
    model: Path

    @property
    def root(self) -> Path:
        return self.base / "runs"

    @property
    def runs(self) -> Path:
        return self.root / "fiubench" / "tiny"

    def run(self, prefix: str) -> Path:
        (match,) = [p for p in self.runs.iterdir() if p.name.startswith(prefix)]
        return match


def records(data: Path) -> list[dict]:
    return read_records(data / "full.json")


def write_records(data: Path, rows: list[dict]) -> None:
    (data / "full.json").write_text("".join(json.dumps(row) + "\n" for row in rows))


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by content: what "no earlier result changed" compares."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fiu_dir: Path, tiny_dir: Path, monkeypatch_module) -> Path:
    monkeypatch_module.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch_module.delenv("OPENAI_BASE_URL", raising=False)
    base = tmp_path_factory.mktemp("world")
    world = World(base, base / "data", base / "model")
    shutil.copytree(fiu_dir, world.data)
    shutil.copytree(tiny_dir, world.model)
    for split in ("full", "retain"):
        finetune(config("finetune", world.root, world.data, world.model, f"split={split}", "max_steps=2"))
    forget(config("forget", world.root, world.data, world.model, *FORGET))
    evaluate(eval_config(world))
    return base


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture()
def world(trained: Path, tmp_path: Path, monkeypatch) -> World:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    shutil.copytree(trained, tmp_path / "w", symlinks=True)
    return World(tmp_path / "w", tmp_path / "w" / "data", tmp_path / "w" / "model")


# ------------------------------------------------------------------ 1. stale evaluations


def test_changed_split_is_evaluated_again_not_reused(world: World, caplog):
    caplog.set_level(logging.INFO)
    split_file = world.data / "split.json"
    splits = json.loads(split_file.read_text())
    others = [i for i in records(world.data) if i["unique_id"] not in  # nor a retain split's (that is refused)
              {*splits["forget1"], *splits["forget5"], *splits["forget10"], *splits.get("holdout", []),
               *splits["retain5"], *splits["retain15"]}]
    splits["forget10"] = [record["unique_id"] for record in others[:2]]
    split_file.write_text(json.dumps(splits))
    ga = world.run("ga_forget10_")
    evaluate(eval_config(world, f"run_dirs=[{ga}]"))
    samples = read_json(ga / "eval" / "forget10.json")["samples"]
    assert {s["unique_id"] for s in samples} == set(splits["forget10"])
    assert "forget10.json was computed from other data" in caplog.text


def test_changed_weights_are_evaluated_again(world: World, caplog):
    caplog.set_level(logging.INFO)
    ga = world.run("ga_forget10_")
    adapter = ga / "checkpoint" / "adapter_model.safetensors"
    tensors = load_file(adapter)
    key = next(k for k in tensors if "lora_B" in k)
    tensors[key] = tensors[key] + 0.5
    save_file(tensors, adapter, metadata={"format": "pt"})
    before = read_json(ga / "eval" / "forget10.json")["samples"]
    evaluate(eval_config(world, f"run_dirs=[{ga}]"))
    assert "forget10.json was computed from other model" in caplog.text
    after = read_json(ga / "eval" / "forget10.json")["samples"]
    assert [s["answer_nll"] for s in after] != [s["answer_nll"] for s in before]


def test_mllmu_changed_question_is_evaluated_again(tmp_path: Path, mllmu_dir: Path, tiny_dir: Path, caplog):
    caplog.set_level(logging.INFO)
    data = tmp_path / "mllmu"
    shutil.copytree(mllmu_dir, data)
    root = tmp_path / "runs"
    common = ("benchmark=mllmu", "forget_split=forget_15", "eval.batch_size=8", "eval.max_new_tokens=4",
              "eval.judge.enabled=false")
    run = finetune(config("finetune", root, data, tiny_dir, "benchmark=mllmu", "max_steps=1"))
    evaluate(config("eval", root, data, tiny_dir, *common))
    shard = next((data / "forget_15").glob("*.parquet"))
    table = pq.read_table(shard).to_pylist()
    generation = json.loads(table[0]["Generation_Task"]) if isinstance(table[0]["Generation_Task"], str) else None
    if generation is None:
        table[0]["Generation_Task"][0]["Question"] = "What is this person's favourite colour, in the new release?"
    else:
        generation[0]["Question"] = "What is this person's favourite colour, in the new release?"
        table[0]["Generation_Task"] = json.dumps(generation)
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(table, schema=pq.read_schema(shard)), shard)
    evaluate(config("eval", root, data, tiny_dir, *common))
    assert "forget_15.json was computed from other data" in caplog.text
    questions = {s["question"] for s in read_json(run / "eval" / "forget_15.json")["samples"]}
    assert "What is this person's favourite colour, in the new release?" in questions


# ------------------------------------------------------------------ 2. half-loaded checkpoints


def test_full_checkpoint_with_a_missing_and_an_extra_tensor_is_refused(world: World):
    full = world.run("finetune_full_")
    weights = full / "checkpoint" / "model.safetensors"
    tensors = load_file(weights)
    dropped = next(key for key in sorted(tensors) if "layers.0.mlp.up_proj" in key)
    del tensors[dropped]
    tensors["stray.weight"] = torch.zeros(2)
    save_file(tensors, weights, metadata={"format": "pt"})
    ga, retain = world.run("ga_forget10_"), world.run("finetune_retain_")
    before = {run: snapshot(run / "eval") for run in (full, ga)}
    with pytest.raises(EvaluationFailed) as failure:
        evaluate(eval_config(world, "eval.overwrite=true"))
    message = str(failure.value)
    assert "2 of 3 models could not be evaluated" in message and str(full) in message and str(ga) in message
    assert "model.safetensors" in message and "missing keys" in message and "stray.weight" in message
    assert dropped.split(".")[-2] in message
    assert {run: snapshot(run / "eval") for run in (full, ga)} == before  # their old results stand
    assert read_json(retain / "eval" / "summary.json")["forget_quality"] == 1.0  # the healthy run was evaluated


def test_adapter_with_nan_weights_is_refused(world: World):
    ga = world.run("ga_forget10_")
    adapter = ga / "checkpoint" / "adapter_model.safetensors"
    tensors = load_file(adapter)
    key = next(k for k in tensors if "lora_A" in k)
    tensors[key][0, 0] = float("nan")
    save_file(tensors, adapter, metadata={"format": "pt"})
    before = snapshot(ga / "eval")
    with pytest.raises(EvaluationFailed, match=re.escape(str(adapter)) + ": 1 tensors hold NaN or Inf"):
        evaluate(eval_config(world, f"run_dirs=[{ga}]"))
    assert snapshot(ga / "eval") == before


def test_adapter_config_edited_by_hand_is_refused(world: World):
    ga = world.run("ga_forget10_")
    config_file = ga / "checkpoint" / "adapter_config.json"
    adapter_config = read_json(config_file)
    adapter_config["lora_alpha"] = adapter_config["lora_alpha"] * 2
    config_file.write_text(json.dumps(adapter_config))
    with pytest.raises(EvaluationFailed, match=re.escape(str(config_file)) + r" differs from the run's settings: "
                                               r"lora_alpha \d+ \(the run trained with \d+\)"):
        evaluate(eval_config(world, f"run_dirs=[{ga}]"))


# ------------------------------------------------------------------ 3. judge failures


def test_judge_failures_are_incomplete_counted_and_asked_again(world: World, caplog, monkeypatch):
    from tests.fake_openai import FakeOpenAI, fake_openai_server

    caplog.set_level(logging.INFO)
    ga = world.run("ga_forget10_")
    secret = "sk-live-AbCdEfGh0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    judged = (f"run_dirs=[{ga}]", "eval.judge.max_retries=0", "benchmark.reference_split=null")
    with fake_openai_server() as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        FakeOpenAI.failing = (4, 5)  # 4 of every 5 requests: HTTP 500
        (summary,) = evaluate(eval_config(world, *judged))
        asked = len(FakeOpenAI.requests)
        assert summary["judge"]["status"] == (f"incomplete: {asked * 4 // 5} of {asked} requests failed "
                                              f"(HTTP 500 InternalServerError: {asked * 4 // 5})")
        assert summary["retain"]["gpt"] is None and summary["model_utility"] is None
        counts = summary["judge"]["retain"]
        assert counts["complete"] is False and counts["failures"] == {"HTTP 500 InternalServerError":
                                                                      counts["n_failed"]}
        row = next(r for r in collect_rows(world.root)["fiubench"] if r["run"] == ga.name)
        if counts["n_scored"]:
            assert row["GPT"] == f"{100 * summary['retain']['gpt_partial']:.1f} ({counts['n_scored']}/{counts['n']})"
        assert row["MU (hmean)"] is None and row["Avg MU"] is None
        assert "HTTP 500 InternalServerError" in caplog.text and secret not in caplog.text

        FakeOpenAI.requests, FakeOpenAI.failing = [], (0, 1)  # the server is healthy again
        (again,) = evaluate(eval_config(world, *judged))
        assert len(FakeOpenAI.requests) == asked * 4 // 5  # only the failed prompts are asked again
        assert again["judge"]["status"] == "scored" and again["judge"]["retain"]["complete"] is True
        assert again["retain"]["gpt"] is not None and again["model_utility"] is not None
    assert secret not in "".join(p.read_text(errors="replace") for p in world.base.rglob("*") if p.is_file())


def test_a_judge_failing_every_request_is_reported_as_failed(world: World, monkeypatch):
    from tests.fake_openai import FakeOpenAI, fake_openai_server

    ga = world.run("ga_forget10_")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with fake_openai_server() as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        FakeOpenAI.failing = (1, 1)
        _, summary = evaluate(eval_config(world, f"run_dirs=[{ga}]", "eval.judge.max_retries=0"))
    assert summary["judge"]["status"].startswith("failed: all")
    assert summary["retain"]["gpt"] is None and summary["model_utility"] is None


def test_mixed_judged_and_unjudged_runs_leave_mu_out_rather_than_change_its_meaning(world: World, monkeypatch):
    from tests.fake_openai import fake_openai_server

    ga = world.run("ga_forget10_")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with fake_openai_server() as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        evaluate(eval_config(world, f"run_dirs=[{ga}]"))
    rows = {row["run"]: row for row in collect(world.root, world.base / "results")["fiubench"]}
    assert rows[ga.name]["MU (hmean)"] is not None and rows[ga.name]["GPT"] is not None
    full = world.run("finetune_full_").name  # evaluated without a judge: its MU would be another formula
    assert rows[full]["GPT"] is None and rows[full]["MU (hmean)"] is None


# ------------------------------------------------------------------ 4. failed re-runs


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_truncated_image_stops_a_rerun_before_it_touches_the_finished_run(world: World):
    ga = world.run("ga_forget10_")
    forgotten = json.loads((world.data / "split.json").read_text())["forget10"][0]
    record = next(r for r in records(world.data) if r["unique_id"] == forgotten)
    image = (world.data / record["image_path"].removeprefix("./dataset/")).resolve()
    truncate(image)
    before = snapshot(world.runs)
    for overrides in ((), ("overwrite=true",)):
        with pytest.raises(DataError, match=rf"(?i){re.escape(str(image))} cannot be read .*truncated"):
            forget(config("forget", world.root, world.data, world.model, *FORGET, *overrides))
    assert snapshot(world.runs) == before and (ga / "eval" / "summary.json").is_file()
    assert not (world.runs / ".attempts").exists()


def test_a_failed_training_attempt_leaves_the_finished_run_alone(world: World, monkeypatch):
    import unlearning.recipes.forget as recipe

    ga = world.run("ga_forget10_")
    before = snapshot(ga)

    def crash(*args, **kwargs):
        raise RuntimeError("the machine went away")

    monkeypatch.setattr(recipe, "train", crash)
    with pytest.raises(RuntimeError, match="went away"):
        forget(config("forget", world.root, world.data, world.model, *FORGET, "overwrite=true"))
    assert snapshot(ga) == before  # run.json, train_log.jsonl, checkpoint and eval/ untouched
    monkeypatch.undo()
    assert forget(config("forget", world.root, world.data, world.model, *FORGET)) == ga  # finished: nothing to do
    assert snapshot(ga) == before
    replaced = forget(config("forget", world.root, world.data, world.model, *FORGET, "overwrite=true"))
    assert replaced == ga and not (ga / "eval").exists() and (ga / "run.json").is_file()  # asked for: replaced
    assert not (world.runs / ".attempts").exists()


def test_mllmu_truncated_jpeg_names_file_row_and_field(tmp_path: Path, mllmu_dir: Path):
    import pyarrow as pa

    from mllmu.data import MllmuBench

    data = tmp_path / "mllmu"
    shutil.copytree(mllmu_dir, data)
    shard = next((data / "Full_Set").glob("*.parquet"))
    rows = pq.read_table(shard).to_pylist()
    rows[1]["image"]["bytes"] = rows[1]["image"]["bytes"][: len(rows[1]["image"]["bytes"]) // 2]
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(shard)), shard)
    with pytest.raises(DataError, match=rf"{re.escape(str(shard))}: row 1 \(ID {rows[1]['ID']}\): field 'image' is "
                                        r"not a readable image \(.*(?i:truncated)"):
        MllmuBench(data).profiles("Full_Set")


# ------------------------------------------------------------------ 5. wrong types and secrets


@pytest.mark.parametrize(("field", "value", "shown"), [("answer", None, "null"), ("question", 42, "int '42'"),
                                                       ("paraphrased_answer", ["a"], "list")])
def test_a_field_of_the_wrong_type_names_file_record_and_field(world: World, field: str, value, shown: str):
    from fiubench.data import FiuBench

    rows = records(world.data)
    rows[2]["qa_list"][1][field] = value
    write_records(world.data, rows)
    with pytest.raises(DataError, match=rf"full.json: record 2 \(unique_id {rows[2]['unique_id']}\) qa_list\[1\]: "
                                        rf"field '{field}' must be a non-empty string, got {re.escape(shown)}"):
        FiuBench(world.data)


def test_numeric_unique_id_is_not_coerced(world: World):
    from fiubench.data import FiuBench

    rows = records(world.data)
    rows[0]["unique_id"] = 83018
    write_records(world.data, rows)
    with pytest.raises(DataError, match=r"record 0: field 'unique_id' must be a non-empty string, got int '83018'"):
        FiuBench(world.data)


def test_a_key_pasted_as_the_variable_name_is_refused_without_echo(world: World):
    key = "sk-proj-Zq8Xw7Vv6Uu5Tt4Ss3Rr2Qq1"
    with pytest.raises(ValueError, match="api_key_env must be the \\*name\\*") as failure:
        evaluate(eval_config(world, f"eval.judge.api_key_env={key}"))
    assert key not in str(failure.value)


def test_no_file_a_run_writes_holds_the_key(tmp_path: Path, fiu_dir: Path, tiny_dir: Path, monkeypatch):
    from tests.fake_openai import fake_openai_server

    secret = "sk-test-Qm9vYmFyYmF6cXV4MTIzNDU2"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    root = tmp_path / "runs"
    finetune(config("finetune", root, fiu_dir, tiny_dir, "max_steps=1", f"+judge.api_key={secret}"))
    forget(config("forget", root, fiu_dir, tiny_dir, *FORGET, f"+extra.token={secret}"))
    with fake_openai_server() as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        evaluate(config("eval", root, fiu_dir, tiny_dir, "eval.general=null", "eval.max_new_tokens=4",
                        f"eval.judge.cache_dir={tmp_path}/judge_cache"))
    collect(root, tmp_path / "results")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 20
    for path in written:
        content = path.read_bytes()
        assert secret.encode() not in content and b"sk-test-" not in content, path


# ------------------------------------------------------------------ 6. smaller ones


def test_corrupt_json_names_the_file(tmp_path: Path):
    path = tmp_path / "summary.json"
    path.write_text('{"forget": {"n": 3')
    with pytest.raises(CorruptFile, match=re.escape(str(path))):
        read_json(path)


def test_collect_lists_and_skips_a_run_with_a_corrupt_summary(world: World, caplog):
    ga = world.run("ga_forget10_")
    (ga / "eval" / "summary.json").write_text("{not json")
    rows = collect(world.root, world.base / "results")["fiubench"]
    assert {row["run"] for row in rows} == {p.name for p in find_runs(world.root)} - {ga.name}
    assert "left out of the tables (1)" in caplog.text and str(ga / "eval" / "summary.json") in caplog.text


def test_a_deleted_stage_one_stops_its_forget_run_only(world: World):
    full, ga = world.run("finetune_full_"), world.run("ga_forget10_")
    shutil.rmtree(full)
    with pytest.raises(EvaluationFailed, match=rf"(?s)1 of 2 models could not be evaluated .*{re.escape(str(ga))}: "
                                               r"its base model .* is missing \(deleted or moved\?\)"):
        evaluate(eval_config(world, "eval.overwrite=true"))
    assert read_json(world.run("finetune_retain_") / "eval" / "summary.json")["forget_quality"] == 1.0


@pytest.mark.parametrize(("override", "message"), [("max_steps=0", "max_steps must be at least 1"),
                                                   ("epochs=0", "epochs must be at least 1"),
                                                   ("lr=abc", "lr must be a number, got 'abc'"),
                                                   ("batch_size=2.5", "batch_size must be a whole number")])
def test_settings_that_would_train_something_else_are_refused_before_any_file(tmp_path: Path, fiu_dir: Path,
                                                                              tiny_dir: Path, override: str,
                                                                              message: str):
    root = tmp_path / "runs"
    for recipe, name in ((finetune, "finetune"), (forget, "forget")):
        with pytest.raises(ValueError, match=message):
            recipe(config(name, root, fiu_dir, tiny_dir, override))
    assert not root.exists()


@pytest.mark.parametrize("value", ["maybe", "yes", "1"])
def test_judge_enabled_is_true_false_or_auto(world: World, value: str):
    with pytest.raises(ValueError, match="eval.judge.enabled must be true, false or auto"):
        evaluate(eval_config(world, f"eval.judge.enabled={value}"))


def test_an_empty_forget_split_names_split_and_data_folder(world: World):
    splits = json.loads((world.data / "split.json").read_text())
    splits["forget10"] = []
    (world.data / "split.json").write_text(json.dumps(splits))
    with pytest.raises(DataError, match=rf"forget split 'forget10' of {re.escape(str(world.data))} has no examples"):
        forget(config("forget", world.root, world.data, world.model, *FORGET))


def test_checkpoint_folders_follow_the_umask(world: World):
    mask = os.umask(0o022)
    os.umask(mask)
    for run in find_runs(world.root):
        info = read_run(run)
        assert (run / info["checkpoint"]).stat().st_mode & 0o777 == 0o777 & ~mask, run
        assert run.stat().st_mode & 0o777 == 0o777 & ~mask, run
