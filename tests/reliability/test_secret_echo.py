"""A key pasted on the command line never reaches stdout or stderr: neither the toolkit's messages nor Hydra's
("Error executing job with overrides: [...]", its own config errors), nor accelerate's, while the error stays
readable. The entry points run as a user runs them (the launchers, subprocesses)."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from unlearning.runs.console import RedactingStream, command_line_secrets, redact_console

KEY = "sk-proj-Zq8Xw7Vv6Uu5Tt4Ss3Rr2Qq1"
OTHER_SHAPE = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"  # a key of no known provider's shape
ENTRY_POINTS = ["unlearning.recipes.evaluate", "unlearning.recipes.forget", "unlearning.recipes.finetune",
                "safeeraser.score_answers", "efuf.score_captions", "efuf.curation", "results_collect"]


def launch(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("ACCELERATE_CONFIG", "HYDRA_FULL_ERROR", "OPENAI_API_KEY")}
    environment.update(PYTHON=sys.executable, HF_HUB_OFFLINE="1", **(env or {}))
    result = subprocess.run(["bash", script, *args], cwd=REPO, env=environment, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode != 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


@pytest.mark.parametrize("full_error", [False, True])
def test_a_key_pasted_as_the_variable_name_is_not_echoed_by_hydra(tmp_path: Path, full_error: bool):
    """The settings refuse the key; Hydra's "Error executing job with overrides" (and, with HYDRA_FULL_ERROR, the
    full traceback) shows *** in its place."""
    env = {"HYDRA_FULL_ERROR": "1"} if full_error else {}
    result = launch("scripts/eval_everything.bash", f"eval.judge.api_key_env={KEY}", f"run_root={tmp_path}/runs",
                    "eval.general=null", env=env)
    output = result.stdout + result.stderr
    assert KEY not in output and "Zq8Xw7Vv6Uu5Tt4" not in output
    assert "eval.judge.api_key_env must be the *name* of an environment variable" in result.stderr
    assert "Error executing job with overrides: ['eval.judge.api_key_env=***', " in result.stderr
    assert f"'run_root={tmp_path}/runs'" in result.stderr  # the other overrides are shown as given


def test_hydra_config_errors_do_not_echo_keys(tmp_path: Path):
    """Hydra fails before the toolkit runs (an unknown config group value, here the key itself; a key of another
    shape given to a secret-named setting; the environment's key): the error still says what is wrong."""
    result = launch("scripts/eval_everything.bash", f"eval.judge.api_key_env={KEY}", f"benchmark={KEY}",
                    f"+judge.api_key={OTHER_SHAPE}", f"run_root={tmp_path}/runs",
                    env={"OPENAI_API_KEY": "sk-env-Key0123456789ABCDEFGH"})
    output = result.stdout + result.stderr
    assert KEY not in output and OTHER_SHAPE not in output and "sk-env-Key0123456789" not in output
    assert "Could not find 'benchmark/***'" in result.stderr
    assert "Available options in 'benchmark'" in result.stderr and "fiubench" in result.stderr


def test_accelerate_launch_does_not_echo_the_command_line(tmp_path: Path):
    """A one-process ``accelerate launch`` (the launchers' default on a GPU machine) quotes the failed command;
    the launchers run it redacted."""
    config = tmp_path / "one_process.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nnum_processes: 1\n"
                      "num_machines: 1\nmachine_rank: 0\nmixed_precision: 'no'\nuse_cpu: true\n")
    result = launch("scripts/eval_everything.bash", f"eval.judge.api_key_env={KEY}", f"run_root={tmp_path}/runs",
                    env={"ACCELERATE_CONFIG": str(config)})
    output = result.stdout + result.stderr
    assert KEY not in output
    assert "returned non-zero exit status 1" in result.stderr and "'eval.judge.api_key_env=***'" in result.stderr


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_every_entry_point_redacts_its_console(module: str):
    """Every entry point is declared with ``hydra_app``, which redacts the console before Hydra reads its command
    line."""
    assert getattr(importlib.import_module(module).main, "redacts_console", False), module


def test_the_streams_redact_what_may_be_a_key_and_nothing_else(monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setenv("HF_TOKEN", "hf-like-but-not-shaped-token-value")
    argv = [f"eval.judge.api_key_env={OTHER_SHAPE}", "eval.judge.api_key_env=MY_JUDGE_KEY", "+x.api_key=short",
            "model.path=/models/hf_Llava-Phi3-Mini-Instruct", "run_name=plain"]
    before = list(argv)
    redact_console(argv)
    redact_console(argv)  # idempotent: wrapped once
    assert isinstance(sys.stdout, RedactingStream) and isinstance(sys.stdout.stream, io.StringIO)
    print(f"overrides: {argv} KEY={KEY} env hf-like-but-not-shaped-token-value", flush=True)
    sys.stderr.writelines([f"{OTHER_SHAPE}\n", "MY_JUDGE_KEY short plain\n"])
    assert argv == before  # what Hydra parses is left alone
    assert out.getvalue() == ("overrides: ['eval.judge.api_key_env=***', 'eval.judge.api_key_env=MY_JUDGE_KEY', "
                              "'+x.api_key=short', 'model.path=/models/***', 'run_name=plain'] KEY=*** env ***\n")
    assert err.getvalue() == "***\nMY_JUDGE_KEY short plain\n"


def test_which_override_values_may_be_keys():
    assert command_line_secrets([f"eval.judge.api_key_env={OTHER_SHAPE}", f"+judge.api_key='{OTHER_SHAPE}x'",
                                 f"~hf_token={OTHER_SHAPE}y", "eval.judge.api_key_env=OPENAI_API_KEY",
                                 "hf_token_env=HF_TOKEN", "x.password=short", "lr=0.0001", "notanoverride"]) == [
        OTHER_SHAPE, f"{OTHER_SHAPE}x", f"{OTHER_SHAPE}y"]
