"""The user's launchers, run as a user runs them (bash, Hydra overrides), on the small model for a few steps."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "ACCELERATE_CONFIG"}
    environment.update(PYTHON=sys.executable, HF_HUB_OFFLINE="1", **(env or {}))
    result = subprocess.run(args, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def common(tmp_path_factory, fiu_dir: Path, tiny_dir: Path) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("cli")
    return root, [f"run_root={root}/runs", f"data_dir={fiu_dir}", f"model.path={tiny_dir}"]


def test_finetune_forget_eval_aggregate_through_the_scripts(common):
    root, overrides = common
    run("bash", "scripts/finetune.bash", "split=full", "max_steps=2", *overrides)
    run("bash", "scripts/finetune.bash", "split=retain", "max_steps=2", *overrides)
    run("bash", "scripts/forget_lora.bash", "method=gd", "max_steps=2", "batch_size=2", *overrides)
    general = [f"eval.general.{name}.{key}={root}/{name}" for name in ("mme", "pope") for key in ("data_dir",
                                                                                                  "builtin_dir")]
    run("bash", "scripts/eval_everything.bash", "eval.max_new_tokens=6", *general, *overrides)
    result = run("bash", "scripts/aggregate.bash", f"run_root={root}/runs", f"out_dir={root}/results")
    assert "| tiny | gd_forget10_" in result.stdout
    again = run(sys.executable, "results_collect.py", f"run_root={root}/runs", f"out_dir={root}/results2")
    assert (root / "results2" / "fiubench.csv").read_text() == (root / "results" / "fiubench.csv").read_text()
    assert "| tiny |" in again.stdout
    summary = json.loads(next((root / "runs").glob("fiubench/tiny/gd_*/eval/summary.json")).read_text())
    assert summary["forget_quality"] is not None


def test_unknown_override_is_rejected(common):
    _, overrides = common
    result = subprocess.run(["bash", "scripts/forget_lora.bash", "methd=ga", *overrides], cwd=REPO,
                            capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode != 0 and "methd" in result.stderr


def test_a_value_a_compat_switch_would_change_is_refused(common):
    """compat=official turns file_order on, which sets shuffle=false: an explicit shuffle=true is not overwritten."""
    _, overrides = common
    result = subprocess.run(["bash", "scripts/finetune.bash", "compat=official", "shuffle=true", "max_steps=1",
                             *overrides], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode != 0 and "pass compat.file_order=false to keep your value" in result.stderr


def test_two_process_ddp_on_cpu(common):
    """accelerate launch with the shipped cpu_ddp config runs two processes, for training and for sharded eval."""
    root, overrides = common
    ddp = {"ACCELERATE_CONFIG": "config/accelerate/cpu_ddp.yaml"}
    result = run("bash", "scripts/finetune.bash", "split=retain", "max_steps=2", "run_name=ddp", *overrides, env=ddp)
    assert "x 2 processes" in result.stdout + result.stderr
    run_dir = root / "runs" / "fiubench" / "tiny" / "ddp"
    assert json.loads((run_dir / "run.json").read_text())["train"]["steps"] == 2
    evaluate = ("bash", "scripts/eval_everything.bash", f"run_dirs=[{run_dir}]", f"reference_run={run_dir}",
                "eval.max_new_tokens=6", "eval.batch_size=4", "eval.overwrite=true", "eval.general=null", *overrides)
    run(*evaluate, env=ddp)
    sharded = json.loads((run_dir / "eval" / "retain15.json").read_text())["samples"]
    run(*evaluate)
    single = json.loads((run_dir / "eval" / "retain15.json").read_text())["samples"]
    assert [s["uid"] for s in sharded] == [s["uid"] for s in single]
    assert [s["generation"] for s in sharded] == [s["generation"] for s in single]
    for a, b in zip(sharded, single, strict=True):
        assert a["truth_ratio"] == pytest.approx(b["truth_ratio"], rel=1e-4)
    # forgetting under DDP: the streams of one step (forget rows, their random retain partners) in one batch
    # per process, the reference pass with adapters disabled, an intermediate checkpoint gathered from both
    result = run("bash", "scripts/forget_lora.bash", "method=kl", "max_steps=2", "batch_size=2", "save_every=1",
                 "effective_batch=4", f"model_path={run_dir}/checkpoint", "run_name=ddp_kl", *overrides, env=ddp)
    assert "batch 2 x accum 1 x 2 processes" in result.stdout + result.stderr  # 4 per step: accumulation follows
    forget_dir = run_dir.parent / "ddp_kl"
    log = [json.loads(line) for line in (forget_dir / "train_log.jsonl").read_text().splitlines()]
    # KL >= 0 up to float noise: the reference pass scores the retain rows alone (other padding than the policy's)
    assert len(log) == 2 and all(record["retain_kl"] >= -1e-6 for record in log)
    assert (forget_dir / "checkpoints" / "step_000001" / "adapter_model.safetensors").is_file()
    # a forget run under 2 processes and under 1: its adapter merged into a copy of the base, the base loaded once
    # for both runs, answers generated and scored on shared prefixes: the same per-sample results
    evaluate = ("bash", "scripts/eval_everything.bash", f"run_dirs=[{run_dir},{forget_dir}]",
                f"reference_run={run_dir}", "eval.max_new_tokens=6", "eval.batch_size=4", "eval.overwrite=true",
                "eval.general=null", *overrides)
    result = run(*evaluate, env=ddp)
    assert (result.stdout + result.stderr).count("loaded LlavaForConditionalGeneration") == 2  # once per process
    sharded = json.loads((forget_dir / "eval" / "forget10.json").read_text())["samples"]
    run(*evaluate)
    single = json.loads((forget_dir / "eval" / "forget10.json").read_text())["samples"]
    assert [s["generation"] for s in sharded] == [s["generation"] for s in single]
    assert [s["paraphrase_generations"] for s in sharded] == [s["paraphrase_generations"] for s in single]
    for a, b in zip(sharded, single, strict=True):
        assert a["truth_ratio"] == pytest.approx(b["truth_ratio"], rel=1e-4)
        assert a["answer_nll"] == pytest.approx(b["answer_nll"], rel=1e-4)


def test_a_sweep_is_one_run_per_job_and_its_rerun_trains_nothing(common):
    """``forget_lora.bash -m`` through the shipped local parallel launcher: a 2x2 sweep gives four run folders;
    the same sweep again finds each finished and trains nothing."""
    root, overrides = common
    run("bash", "scripts/finetune.bash", "split=full", "max_steps=2", *overrides)  # Stage I (kept when present)
    sweep = ("bash", "scripts/forget_lora.bash", "-m", "hydra/launcher=local_parallel", "method=ga,npo",
             "lr=3e-4,5e-4", "max_steps=1", "batch_size=2", *overrides)
    run(*sweep)
    tiny = root / "runs" / "fiubench" / "tiny"
    made = sorted(p.name for p in tiny.iterdir() if p.name.startswith(("ga_forget10_0.0003", "ga_forget10_0.0005",
                                                                         "npo_forget10_0.0003", "npo_forget10_0.0005")))
    assert len(made) == 4, made
    records = sorted((root / "runs" / ".multirun").glob("*/multirun.yaml"))  # under the run root
    assert records and "JoblibLauncher" in records[-1].read_text()  # the local parallel launcher ran the jobs
    stamps = {name: (tiny / name / "identity.json").stat().st_mtime_ns for name in made}
    again = run(*sweep)
    assert (again.stdout + again.stderr).count("is already trained with these settings") == 4
    assert {name: (tiny / name / "identity.json").stat().st_mtime_ns for name in made} == stamps
    assert not (Path(REPO) / "multirun").exists()
