"""DeepSpeed ZeRO-2 and ZeRO-3 through the launchers, two CPU processes, against plain DDP (docs/distributed.md).

The same run under cpu_ddp.yaml and under cpu_zero2.yaml / cpu_zero3.yaml (the GPU configs' DeepSpeed settings,
their accumulation included, which DDP is given by hand): the same data on each process, so the losses, gradient
norms and saved weights must agree up to float32 summation order (tolerances below); the DeepSpeed checkpoint is then
evaluated by eval_everything.bash as any other. A DeepSpeed config that a launch would run without DeepSpeed is
refused, at the launcher and in the recipe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from unlearning.runs.distributed import LaunchConfigError, launch_exports, match_clipping

pytest.importorskip("deepspeed", reason="deepspeed is not installed: the DeepSpeed launches cannot run")

# float32 on 2 processes: DeepSpeed reduces gradients in its own flat buckets, DDP in its buckets, so sums differ in
# their last bits (measured: losses to 1.4e-7 relative, weights to 3.5e-6 after 4 steps); Adam divides by sqrt(v), which
# can turn such a difference on a near-zero gradient into a visible one, bounded by lr (1e-3 here) per step
LOSS_RTOL = 1e-5
GRAD_NORM_RTOL = 1e-4
WEIGHT_ATOL = 1e-4
ACCUM = {"cpu_zero2": 16, "cpu_zero3": 4}  # the configs' gradient_accumulation_steps (as zero2.yaml / zero3.yaml)


def launch(*args: str, env: dict[str, str] | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("ACCELERATE_CONFIG", "ACCELERATE_USE_CPU", "DS_ACCELERATOR")}
    environment.update(PYTHON=sys.executable, HF_HUB_OFFLINE="1", **(env or {}))
    result = subprocess.run(args, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)
    if ok:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def config(name: str) -> dict[str, str]:
    return {"ACCELERATE_CONFIG": f"config/accelerate/{name}.yaml"}


def train_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


def assert_same_training(ddp: Path, zero: Path) -> None:
    """Step for step the same losses (and their parts) and gradient norms; the same saved weights."""
    expected, got = train_log(ddp), train_log(zero)
    assert [r["step"] for r in got] == [r["step"] for r in expected]
    for a, b in zip(expected, got, strict=True):
        assert b["lr"] == a["lr"]
        assert b["loss"] == pytest.approx(a["loss"], rel=LOSS_RTOL)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=GRAD_NORM_RTOL)
        for part in set(a) - {"step", "epoch", "lr", "loss", "grad_norm", "step_seconds", "tokens_per_second"}:
            assert b[part] == pytest.approx(a[part], rel=LOSS_RTOL, abs=1e-7), part
    first, second = weights(ddp / "checkpoint"), weights(zero / "checkpoint")
    assert first.keys() == second.keys() and first
    for key, tensor in first.items():
        assert second[key].dtype == tensor.dtype
        assert (second[key] - tensor).abs().max().item() <= WEIGHT_ATOL, key


@pytest.fixture(scope="module")
def common(tmp_path_factory, fiu_dir: Path, tiny_dir: Path) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("deepspeed")
    return root / "runs" / "fiubench" / "tiny", [f"run_root={root}/runs", f"data_dir={fiu_dir}",
                                                 f"model.path={tiny_dir}"]


@pytest.mark.parametrize("zero", ["cpu_zero2", "cpu_zero3"])
def test_zero_trains_as_ddp_and_its_checkpoint_evaluates(common, zero: str):
    """Stage I under ZeRO (2 processes, the config's accumulation) equals DDP's run; its checkpoint evaluates as
    DDP's; under ZeRO-3 also a LoRA forget run with a reference pass and intermediate checkpoints."""
    runs, overrides = common
    accum = ACCUM[zero]
    finetune = ("bash", "scripts/finetune.bash", "split=retain", "max_steps=4", *overrides)
    launch(*finetune, f"grad_accum={accum}", f"run_name=ddp_{accum}", env=config("cpu_ddp"))
    result = launch(*finetune, f"run_name={zero}", env=config(zero))
    assert f"batch 4 x accum {accum} x 2 processes" in result.stdout + result.stderr
    # the tiny recipe accumulates 1: the config's value is used, and the log says so
    assert f"accumulates {accum} micro-batches per optimiser step (gradient_accumulation_steps), not the recipe's 1" \
        in result.stderr
    assert_same_training(runs / f"ddp_{accum}", runs / zero)
    evaluate = ("bash", "scripts/eval_everything.bash", f"run_dirs=[{runs / f'ddp_{accum}'},{runs / zero}]",
                f"reference_run={runs / f'ddp_{accum}'}", "eval.max_new_tokens=6", "eval.batch_size=4",
                "eval.general=null", "eval.bootstrap.resamples=0", *overrides)
    launch(*evaluate)
    for split in ("forget10", "retain15"):
        ours = json.loads((runs / zero / "eval" / f"{split}.json").read_text())["samples"]
        theirs = json.loads((runs / f"ddp_{accum}" / "eval" / f"{split}.json").read_text())["samples"]
        assert [s["generation"] for s in ours] == [s["generation"] for s in theirs]
        for a, b in zip(ours, theirs, strict=True):
            assert a["truth_ratio"] == pytest.approx(b["truth_ratio"], rel=1e-4)
    assert json.loads((runs / zero / "eval" / "summary.json").read_text())["forget_quality"] is not None
    if zero != "cpu_zero3":
        return
    # forgetting: LoRA on the ZeRO-3-partitioned model, KL's reference with the adapter disabled, a kept step
    forget = ("bash", "scripts/forget_lora.bash", "method=kl", "max_steps=3", "batch_size=2",
              f"model_path={runs / f'ddp_{accum}' / 'checkpoint'}", *overrides)
    launch(*forget, f"grad_accum={accum}", "run_name=ddp_kl", env=config("cpu_ddp"))
    launch(*forget, "save_every=1", "run_name=zero3_kl", env=config(zero))  # no training state kept: warned
    assert_same_training(runs / "ddp_kl", runs / "zero3_kl")
    assert (runs / "zero3_kl" / "checkpoints" / "step_000001" / "adapter_model.safetensors").is_file()


def test_a_deepspeed_config_that_would_be_dropped_is_refused(common, tmp_path: Path):
    """ACCELERATE_USE_CPU=true makes accelerate drop DeepSpeed; a DeepSpeed config's use_cpu is never read: the
    launcher stops before starting anything, naming the config and what to change."""
    _, overrides = common
    finetune = ("bash", "scripts/finetune.bash", "max_steps=1", *overrides)
    result = launch(*finetune, env={**config("cpu_zero2"), "ACCELERATE_USE_CPU": "true"}, ok=False)
    assert result.returncode != 0
    assert "config/accelerate/cpu_zero2.yaml asks for DeepSpeed" in result.stderr
    assert "unset ACCELERATE_USE_CPU" in result.stderr
    flagged = tmp_path / "my_zero2.yaml"
    flagged.write_text(yaml.safe_dump({**yaml.safe_load((REPO / "config/accelerate/zero2.yaml").read_text()),
                                       "use_cpu": True}))
    result = launch(*finetune, env={"ACCELERATE_CONFIG": str(flagged)}, ok=False)
    assert result.returncode != 0 and f"{flagged} asks for DeepSpeed with use_cpu: true" in result.stderr
    assert "set use_cpu: false" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_the_recipe_stops_when_the_processes_do_not_run_deepspeed(common):
    """Launched around the launcher's check (accelerate launch itself, ACCELERATE_USE_CPU=true): the recipe sees
    distributed_type MULTI_CPU where the config asked for DeepSpeed, and stops before any run folder is made."""
    runs, overrides = common
    result = launch(sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                    "config/accelerate/cpu_zero2.yaml", "-m", "unlearning.recipes.finetune", "max_steps=1",
                    "run_name=dropped", *overrides,
                    env={**config("cpu_zero2"), "ACCELERATE_USE_CPU": "true"}, ok=False)
    assert result.returncode != 0
    assert ("config/accelerate/cpu_zero2.yaml asks for DeepSpeed but this process runs MULTI_CPU because "
            "ACCELERATE_USE_CPU=true, with which accelerate drops DeepSpeed: unset ACCELERATE_USE_CPU") in result.stderr
    assert not (runs / "dropped").exists()


def test_launch_exports(tmp_path: Path):
    """cpu_* DDP configs: ACCELERATE_USE_CPU; cpu_* DeepSpeed configs: DeepSpeed's CPU accelerator; GPU configs
    nothing; the shipped CPU DeepSpeed configs differ from the GPU ones in device settings only."""
    accelerate = REPO / "config" / "accelerate"
    assert launch_exports(accelerate / "cpu_ddp.yaml", {}) == {"ACCELERATE_USE_CPU": "true"}
    assert launch_exports(accelerate / "cpu_zero2.yaml", {}) == {"DS_ACCELERATOR": "cpu"}
    assert launch_exports(accelerate / "zero3.yaml", {}) == {}
    with pytest.raises(LaunchConfigError, match="unset ACCELERATE_USE_CPU"):
        launch_exports(accelerate / "zero3.yaml", {"ACCELERATE_USE_CPU": "1"})
    with pytest.raises(LaunchConfigError, match="does not exist"):
        launch_exports(tmp_path / "nothing.yaml", {})
    device = {"num_processes", "mixed_precision", "use_cpu"}
    for stage in ("zero2", "zero3"):
        gpu = yaml.safe_load((accelerate / f"{stage}.yaml").read_text())
        cpu = yaml.safe_load((accelerate / f"cpu_{stage}.yaml").read_text())
        assert {k: v for k, v in gpu.items() if k not in device} == {k: v for k, v in cpu.items() if k not in device}
        assert cpu["num_processes"] == 2 and cpu["mixed_precision"] == "no" and cpu["use_cpu"] is False


def test_deepspeed_clips_as_the_recipe_asks(monkeypatch):
    """DeepSpeed's engine clips at its config's gradient_clipping and never applies the recipe's max_grad_norm: an
    unset value takes the recipe's, a different number is refused, naming the config."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    def accelerator(clipping: object) -> SimpleNamespace:
        plugin = SimpleNamespace(deepspeed_config={"gradient_clipping": clipping})
        return SimpleNamespace(distributed_type=DistributedType.DEEPSPEED,
                               state=SimpleNamespace(deepspeed_plugin=plugin))

    monkeypatch.setenv("ACCELERATE_CONFIG", "config/accelerate/zero2.yaml")
    auto = accelerator("auto")
    match_clipping(auto, 0.0)
    assert auto.state.deepspeed_plugin.deepspeed_config["gradient_clipping"] == 0.0
    match_clipping(accelerator(1.0), 1.0)
    with pytest.raises(ValueError, match=r"zero2.yaml clips gradients at 1.0 .* max_grad_norm=0.0"):
        match_clipping(accelerator(1.0), 0.0)
    match_clipping(SimpleNamespace(distributed_type=DistributedType.MULTI_CPU), 0.0)  # DDP: the trainer clips
