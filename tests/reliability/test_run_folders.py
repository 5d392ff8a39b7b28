"""Issue 22: run folders owned by one process at a time, models that are not models, adapters on another base,
missing step checkpoints, another split than the one forgotten, and evaluations that recompute nothing.

Faults are injected into copies of one small trained world (``tests/reliability/test_faults.py``'s), or run as real
processes through the launchers where the point is two processes.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, SMALL_MODEL
from tests.reliability.test_faults import FORGET, World, config, eval_config, snapshot
from unlearning.data.examples import DataError
from unlearning.recipes.evaluate import EvaluationFailed, evaluate
from unlearning.recipes.forget import forget
from unlearning.runs.folders import find_runs
from unlearning.runs.io import read_json
from unlearning.runs.locks import Busy, lock_for

HOLDER = """
import sys, time
from unlearning.runs.locks import lock_for
lock_for(sys.argv[1], "a test folder").acquire()
print("held", flush=True)
time.sleep(600)
"""


def environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "ACCELERATE_CONFIG"}
    env.update(PYTHON=sys.executable, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    return env


def test_a_live_holder_is_named_and_a_dead_ones_lock_is_stale(tmp_path: Path):
    folder = tmp_path / "runs" / "a_run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=REPO, env=environment(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match=rf"{folder} is being written by another process \(pid {holder.pid} on .*"
                                       r"-c"):
            lock_for(folder).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with lock_for(folder) as lock:  # the killed process's lock is gone with it
        assert lock.held
    assert not lock.held


def test_two_identical_forget_commands_never_share_an_attempt(world: World):
    """The second command stops, naming the first, while the first trains; the first's attempt keeps its files."""
    command = ["bash", "scripts/forget_lora.bash", f"run_root={world.root}", f"data_dir={world.data}",
               f"model.path={world.model}", "method=ga", "epochs=100000", "batch_size=2"]
    first = subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        attempts = world.runs / ".attempts"
        deadline = time.time() + 300
        while not (attempts.is_dir() and any((a / "train_log.jsonl").is_file() for a in attempts.iterdir())):
            assert first.poll() is None, first.stderr.read()[-3000:]
            assert time.time() < deadline, "the first command never started training"
            time.sleep(0.5)
        (attempt,) = attempts.iterdir()
        before = sorted(p.name for p in attempt.iterdir())
        second = subprocess.run(command, cwd=REPO, env=environment(), capture_output=True, text=True, timeout=600)
        assert second.returncode != 0
        assert f"is being written by another process (pid {first.pid}" in second.stderr or (
            "is being written by another process (pid" in second.stderr), second.stderr[-3000:]
        assert {"identity.json", "config.yaml", "train_log.jsonl"} <= set(before) <= {
            p.name for p in attempt.iterdir()}  # nothing of the first's attempt was cleared
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


def test_a_run_another_command_is_evaluating_is_listed_and_the_others_evaluated(world: World):
    ga = world.run("ga_forget10_")
    before = snapshot(ga)
    with lock_for(ga), pytest.raises(EvaluationFailed, match=rf"(?s)1 of 3 models .*{ga}: .*being written by another"):
        evaluate(eval_config(world, "eval.overwrite=true"))
    assert snapshot(ga) == before


@pytest.mark.parametrize("what", ["data", "empty"])
def test_model_path_that_is_not_a_model_is_refused_before_any_folder(world: World, what: str):
    folder = world.data if what == "data" else world.base / "empty"
    folder.mkdir(exist_ok=True)
    runs_before = sorted(p.name for p in world.runs.iterdir())
    with pytest.raises(RuntimeError, match=rf"model_path {folder} is not a model folder: no config.json"):
        evaluate(eval_config(world, f"model_path={folder}"))
    assert sorted(p.name for p in world.runs.iterdir()) == runs_before


def test_a_broken_external_run_is_listed_and_the_real_runs_evaluated(world: World, tmp_path: Path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(world.model, copy)
    evaluate(eval_config(world, f"model_path={copy}"))
    for child in copy.iterdir():  # the folder now holds something else than a model
        if child.name != "README.md":
            child.unlink() if child.is_file() else shutil.rmtree(child)
    (copy / "notes.txt").write_text("not a model")
    with pytest.raises(EvaluationFailed, match=r"(?s)1 of 4 models could not be evaluated .*external_copy-.*is not "
                                               r"a model folder"):
        evaluate(eval_config(world))
    assert all((run / "eval" / "summary.json").is_file() for run in find_runs(world.root))


def test_an_adapter_trained_on_another_base_is_refused(world: World):
    from fiubench.benchmark import FiuBenchTask
    from unlearning.models.tiny import build_tiny_model

    other = build_tiny_model("llava", world.base / "other", FiuBenchTask(world.data).texts()[:200],
                             **{**SMALL_MODEL, "vocab_size": 400})
    ga = world.run("ga_forget10_")
    with pytest.raises(RuntimeError, match=r"was trained on .*which differs from .*vocab_size"):
        evaluate(eval_config(world, f"model_path={other}", f"adapter_path={ga / 'checkpoint'}"))


def test_a_requested_step_that_is_missing_is_an_error_and_all_says_none_are_kept(world: World, caplog):
    ga = world.run("ga_forget10_")
    with pytest.raises(FileNotFoundError, match=rf"{ga}: no checkpoint for steps \[2\] \(kept: none\)"):
        evaluate(eval_config(world, f"run_dirs=[{ga}]", "steps=[2]"))
    caplog.set_level(logging.WARNING)
    evaluate(eval_config(world, f"run_dirs=[{ga}]", "steps=all"))
    assert f"steps=all: {ga} keeps no intermediate checkpoint" in caplog.text


def test_another_split_than_the_one_forgotten_keeps_the_runs_summary(world: World, caplog):
    ga = world.run("ga_forget10_")
    summary = (ga / "eval" / "summary.json").read_bytes()
    caplog.set_level(logging.WARNING)
    evaluate(eval_config(world, f"run_dirs=[{ga}]", "forget_split=forget5"))
    assert (ga / "eval" / "summary.json").read_bytes() == summary
    assert read_json(ga / "eval" / "summary.forget5.json")["forget_split"] == "forget5"
    assert "forgot forget10 but is evaluated on forget5" in caplog.text


def test_overlapping_forget_and_retain_splits_are_refused(world: World):
    splits = json.loads((world.data / "split.json").read_text())
    splits["retain15"] = splits["retain15"][:-1] + splits["forget10"][:1]
    (world.data / "split.json").write_text(json.dumps(splits))
    with pytest.raises(DataError, match=r"forget split 'forget10' and the retain split 'retain15' share 1 identities"):
        evaluate(eval_config(world))


def test_an_evaluation_run_twice_computes_nothing_the_second_time(world: World, caplog):
    ga = world.run("ga_forget10_")
    general = [f"eval.general.{name}.{key}={world.base}/{name}" for name in ("mme", "pope")
               for key in ("data_dir", "builtin_dir")]
    cfg = config("eval", world.root, world.data, world.model, "eval.batch_size=8", "eval.max_new_tokens=6",
                 f"eval.judge.cache_dir={world.base}/judge_cache", f"run_dirs=[{ga}]", *general)
    evaluate(cfg)
    caplog.clear()
    caplog.set_level(logging.INFO)
    summaries = evaluate(cfg)
    assert "computed from other" not in caplog.text and f"reusing {ga / 'eval' / 'general.json'}" in caplog.text
    assert [summary["cost"]["model_loaded"] for summary in summaries] == [False, False]


def test_a_typo_hydra_suggests_adding_is_refused_with_the_near_names(world: World):
    result = subprocess.run(["bash", "scripts/forget_lora.bash", "+methd=npo", f"run_root={world.root}",
                             f"data_dir={world.data}", f"model.path={world.model}"], cwd=REPO, env=environment(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "unknown setting 'methd' (did you mean 'method'" in result.stderr, result.stderr[-2000:]
    assert not (world.runs / ".attempts").exists()


def test_a_failed_attempt_lets_go_of_the_lock(world: World, monkeypatch):
    """In one process (a notebook, a sweep): an attempt that fails leaves the run folder free for the next."""
    import unlearning.recipes.forget as recipe

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(recipe, "train", boom)
    with pytest.raises(RuntimeError, match="boom"):
        forget(config("forget", world.root, world.data, world.model, *FORGET, "seed=7"))
    monkeypatch.undo()
    run = forget(config("forget", world.root, world.data, world.model, *FORGET, "seed=7"))
    assert (run / "run.json").is_file()
