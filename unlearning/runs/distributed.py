"""DeepSpeed launches that really run DeepSpeed, on GPUs or on CPU (docs/distributed.md).

Two ways a DeepSpeed config used to be dropped without a word: ``ACCELERATE_USE_CPU=true`` (which the launchers
export for the ``cpu_*`` DDP config) makes accelerate's ``AcceleratorState`` take DeepSpeed only ``and not cpu``
(accelerate/state.py), so the run trained as plain multi-CPU DDP; and a config's ``use_cpu: true`` is never read by
accelerate's DeepSpeed launch. ``python -m unlearning.runs.distributed <config>`` (run by ``scripts/launch.sh``
before ``accelerate launch``) refuses both and prints the variables to export; ``deepspeed_handlers`` and
``check_launch`` are the recipe side: the process group's backend on CPU, and a stop when the launch asked for
DeepSpeed and the processes run something else.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)
TRUE = ("1", "true", "yes", "on")


class LaunchConfigError(ValueError):
    """An accelerate config that would not run as written."""


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in TRUE


def launch_exports(config_path: str | Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment ``scripts/launch.sh`` exports for ``config_path``; refuses a DeepSpeed config that the
    launch would not run as DeepSpeed. ``cpu_*`` configs run on CPU: DDP configs through ``ACCELERATE_USE_CPU``
    (gloo), DeepSpeed configs through DeepSpeed's CPU accelerator (``DS_ACCELERATOR=cpu``)."""
    environ = dict(os.environ if environ is None else environ)
    path = Path(config_path)
    if not path.is_file():
        raise LaunchConfigError(f"accelerate config {path} does not exist")
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(config, dict):
        raise LaunchConfigError(f"accelerate config {path} is not a mapping")
    cpu_named = path.name.startswith("cpu_")
    if str(config.get("distributed_type", "")).upper() != "DEEPSPEED":
        return {"ACCELERATE_USE_CPU": "true"} if cpu_named else {}
    if importlib.util.find_spec("deepspeed") is None:
        raise LaunchConfigError(f"accelerate config {path} asks for DeepSpeed, which is not installed: install "
                                "deepspeed or choose a config without DeepSpeed (cpu_ddp.yaml, multi_gpu.yaml)")
    if _truthy(environ.get("ACCELERATE_USE_CPU", "")):
        raise LaunchConfigError(
            f"accelerate config {path} asks for DeepSpeed, but ACCELERATE_USE_CPU={environ['ACCELERATE_USE_CPU']} "
            "is set, with which accelerate drops DeepSpeed and trains plain multi-CPU DDP (accelerate/state.py, "
            "AcceleratorState: DeepSpeed only `and not cpu`): unset ACCELERATE_USE_CPU; DeepSpeed runs on CPU "
            "through its CPU accelerator (config/accelerate/cpu_zero2.yaml, cpu_zero3.yaml)")
    if _truthy(config.get("use_cpu", False)):
        raise LaunchConfigError(
            f"accelerate config {path} asks for DeepSpeed with use_cpu: true, which accelerate's DeepSpeed launch "
            "does not read: set use_cpu: false (for DeepSpeed on CPU name the config cpu_*.yaml, as "
            "config/accelerate/cpu_zero2.yaml: the launchers select DeepSpeed's CPU accelerator, DS_ACCELERATOR=cpu)")
    return {"DS_ACCELERATOR": "cpu"} if cpu_named else {}


def _config_name(default: str) -> str:
    """The accelerate config the launch named (``scripts/launch.sh`` exports it), for messages."""
    return os.environ.get("ACCELERATE_CONFIG") or default


def deepspeed_requested(environ: dict[str, str] | None = None) -> bool:
    """Whether ``accelerate launch`` started this process for DeepSpeed."""
    return _truthy((os.environ if environ is None else environ).get("ACCELERATE_USE_DEEPSPEED", "false"))


def deepspeed_handlers(cuda: bool) -> list[Any]:
    """accelerate's kwargs handlers for a DeepSpeed process. Without CUDA, accelerate finds no device backend and
    leaves its own backend unset, so every process would call itself process 0 of 1 (two "main" processes, each
    taking the run's lock); naming gloo, the backend DeepSpeed's CPU accelerator uses without oneCCL, fixes it."""
    if not deepspeed_requested() or cuda:
        return []
    from accelerate.utils import InitProcessGroupKwargs

    return [InitProcessGroupKwargs(backend="gloo")]


def check_launch(accelerator: Any) -> None:
    """Stop when the launch asked for DeepSpeed and the processes run something else, naming the config; under
    DeepSpeed, honour the config's ``zero3_init_flag: false``: accelerate registers the ZeRO-3 config with
    transformers whatever the flag, and ``from_pretrained`` would then load every model partitioned."""
    from accelerate.utils import DistributedType

    if not deepspeed_requested():
        return
    config = _config_name("the accelerate config")
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        cpu = os.environ.get("ACCELERATE_USE_CPU")
        why = (f" because ACCELERATE_USE_CPU={cpu}, with which accelerate drops DeepSpeed: unset ACCELERATE_USE_CPU "
               "(DeepSpeed runs on CPU through its CPU accelerator, DS_ACCELERATOR=cpu)" if _truthy(cpu or "")
               else ": check the config's distributed_type and that deepspeed imports")
        running = getattr(accelerator.distributed_type, "value", accelerator.distributed_type)
        raise RuntimeError(f"{config} asks for DeepSpeed but this process runs {running}{why}")
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None and plugin.hf_ds_config.is_zero3() and not plugin.zero3_init_flag:
        from transformers.integrations import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()


def match_clipping(accelerator: Any, max_grad_norm: float) -> None:
    """Under DeepSpeed the engine clips, at its config's ``gradient_clipping``, and the recipe's ``max_grad_norm``
    is never applied: an unset (``auto``) value takes the recipe's (accelerate would fill in 1.0), a different
    number stops the run before it trains something else than the recipe asks."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    clipping = config.get("gradient_clipping", "auto")
    if clipping == "auto":
        config["gradient_clipping"] = float(max_grad_norm)
    elif float(clipping) != float(max_grad_norm):
        name = _config_name("the DeepSpeed config")
        raise ValueError(f"{name} clips gradients at {clipping} (gradient_clipping) but the recipe asks for "
                         f"max_grad_norm={max_grad_norm}, which DeepSpeed would ignore: pass max_grad_norm={clipping} "
                         "or change the config's gradient_clipping")


def note_accumulation(accelerator: Any, grad_accum: int) -> None:
    """Say so when a DeepSpeed config's ``gradient_accumulation_steps`` replaces the recipe's accumulation (accelerate
    reads it from the environment before the recipe's value): the sequences per optimiser step are then the
    config's, not the recipe's ``effective_batch``. Not refused: FIUBench's settings rely on it (zero2.yaml)."""
    from accelerate.utils import DistributedType

    used = accelerator.gradient_accumulation_steps
    if accelerator.distributed_type == DistributedType.DEEPSPEED and used != grad_accum:
        name = _config_name("the DeepSpeed config")
        log.warning("%s accumulates %d micro-batches per optimiser step (gradient_accumulation_steps), not the "
                    "recipe's %d: its value is used", name, used, grad_accum)


def main(argv: list[str]) -> int:
    """Print ``NAME=value`` lines for ``scripts/launch.sh`` to export, or the reason to stop (exit 2)."""
    if len(argv) != 1:
        print("usage: python -m unlearning.runs.distributed <accelerate config>", file=sys.stderr)
        return 2
    try:
        exports = launch_exports(argv[0])
    except LaunchConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, value in exports.items():
        print(f"{name}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
