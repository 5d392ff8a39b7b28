"""Metric logging reaches the trackers researchers use: a two-step forget run and its evaluation write to wandb
(offline) and TensorBoard, and the values read back are the ones in train_log.jsonl and summary.json."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from unlearning.recipes.common import CONFIG_DIR
from unlearning.recipes.evaluate import evaluate
from unlearning.recipes.forget import forget
from unlearning.runs.trackers import MetricLog, flat_numbers, tracker_names

BLOCK = 32768


def config(name: str, root: Path, fiu_dir: Path, tiny_dir: Path, *overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose(name, overrides=[f"run_root={root}", f"data_dir={fiu_dir}", f"model.path={tiny_dir}",
                                        *overrides])


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = folder.glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def wandb_history(folder: Path) -> list[dict]:
    """The logged rows of an offline wandb run, read from its ``run-*.wandb`` file: a LevelDB-style log (32 KiB
    blocks of records with a 7-byte header: crc, length, kind) of wandb's protobuf records."""
    from wandb.proto import wandb_internal_pb2

    (path,) = folder.glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    rows, position, chunks = [], 7, []
    while position + 7 <= len(data):
        left = BLOCK - position % BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        payload, position = data[position + 7:position + 7 + length], position + 7 + length
        chunks = [payload] if kind in (1, 2) else [*chunks, payload]
        if kind in (1, 4):  # a whole record, or its last piece
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return rows


def test_a_two_step_forget_run_and_its_evaluation_reach_wandb_and_tensorboard(tmp_path: Path, fiu_dir: Path,
                                                                               tiny_dir: Path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run = forget(config("forget", tmp_path, fiu_dir, tiny_dir, "benchmark.starts_from=vanilla", "method=gd",
                        "max_steps=2", "batch_size=2", "report_to=[wandb,tensorboard]"))
    steps = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2]
    for key in ("loss", "forget_nll", "retain_nll", "lr", "grad_norm", "tokens_per_second", "step_seconds"):
        assert all(key in s for s in steps), key
    scalars = tensorboard_scalars(run / "tensorboard")
    for key in ("loss", "forget_nll", "lr", "grad_norm", "tokens_per_second"):
        assert [(step, pytest.approx(value, rel=1e-6)) for step, value in scalars[key]] == [
            (s["step"], s[key]) for s in steps], key
    history = wandb_history(run)
    assert [row["_step"] for row in history] == [1, 2]
    for row, step in zip(history, steps, strict=True):
        for key in ("loss", "retain_nll", "lr", "grad_norm", "tokens_per_second"):
            assert row[key] == pytest.approx(step[key], rel=1e-6), key

    general = [f"eval.general.{n}.{k}={tmp_path}/{n}" for n in ("mme", "pope") for k in ("data_dir", "builtin_dir")]
    evaluate(config("eval", tmp_path, fiu_dir, tiny_dir, f"run_dirs=[{run}]", "reference_run=null", *general,
                    "eval.max_new_tokens=4", "eval.judge.enabled=false", "report_to=[wandb,tensorboard]"))
    summary_file = json.loads((run / "eval" / "summary.json").read_text())
    logged = tensorboard_scalars(run / "eval" / "tensorboard")
    expected = flat_numbers({"eval": {"forget": summary_file["forget"], "retain": summary_file["retain"]}})
    for key, value in expected.items():
        assert logged[key] == [(2, pytest.approx(value, rel=1e-6, abs=1e-9))], key  # at the run's trained step
    (row,) = wandb_history(run / "eval")
    assert row["_step"] == 2 and row["eval/forget/rougeL_recall"] == pytest.approx(
        summary_file["forget"]["rougeL_recall"], rel=1e-6)


def test_report_to_is_checked():
    assert tracker_names("none") == () and tracker_names(["wandb", "tensorboard"]) == ("wandb", "tensorboard")
    with pytest.raises(ValueError, match="report_to must be none or among"):
        tracker_names("comet")


def test_secrets_never_reach_a_tracker(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricLog(tmp_path, "t", ["tensorboard"], {"eval": {"judge": {"api_key": "sk-abcdefghijklmnop"}}}) as log:
        log.log({"loss": 1.0}, 1)
    (events,) = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert b"sk-abcdefghijklmnop" not in events.read_bytes()
    assert accumulator.Scalars("loss")[0].value == 1.0
