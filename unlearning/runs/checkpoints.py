"""Checkpoints: written atomically, kept every N steps, and loaded back as the model a run evaluates.

A finetune run keeps a full model; a forget run a LoRA adapter (plus its fully trained parts) over its base, or a
full model when nothing was adapted (``lora.r=0``). ``model_source`` says what to load for a run;
``BaseModels`` loads it, keeping one base in memory across the runs of an evaluation command.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from unlearning.models.loading import ADAPTER_CONFIG, CheckpointError, load_adapter, load_model
from unlearning.runs.folders import IDENTITY_FILE, STEP_CHECKPOINTS, base_model_path, read_run
from unlearning.runs.io import atomic_write_dir, read_json

log = logging.getLogger(__name__)


def save_checkpoint(folder: Path, model: torch.nn.Module, processor: Any | None = None,
                    state_dict: dict | None = None) -> Path:
    """Write a checkpoint folder atomically (the processor too for a full model)."""

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        if processor is not None:
            processor.save_pretrained(tmp)

    return atomic_write_dir(folder, fill)


def step_checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / STEP_CHECKPOINTS / f"step_{step:06d}"


def checkpoint_steps(run_dir: Path) -> list[int]:
    """The optimiser steps at which intermediate checkpoints were kept, ascending."""
    folder = run_dir / STEP_CHECKPOINTS
    steps = [int(match.group(1)) for path in folder.glob("step_*")
             if path.is_dir() and (match := re.fullmatch(r"step_(\d+)", path.name))]
    return sorted(steps)


@dataclass(frozen=True)
class ModelSource:
    """What to load for one evaluation: full weights, an optional adapter on them, and the processor's folder."""

    weights: str
    adapter: str | None
    processor: str


def model_source(run_dir: Path, step: int | None = None) -> ModelSource:
    """The model of a finished run (``step``: an intermediate checkpoint instead of the final one)."""
    info = read_run(run_dir)
    kind = info["kind"]
    if kind == "external":
        base = base_model_path(run_dir, info["base_model"])
        check_model_folder(base, f"{run_dir}: its model")
        adapter = base_model_path(run_dir, info["adapter"], "adapter") if info.get("adapter") else None
        if adapter is not None:
            check_adapter_base(adapter, base)
        return ModelSource(base, adapter, base)
    folder = run_dir / info["checkpoint"] if step is None else step_checkpoint_dir(run_dir, step)
    if not folder.is_dir():
        raise FileNotFoundError(f"{run_dir}: no checkpoint {folder.name}")
    if kind == "finetune":
        processor = str(run_dir / info["checkpoint"])
        if (folder / ADAPTER_CONFIG).is_file():  # an intermediate checkpoint of a LoRA finetune
            return ModelSource(base_model_path(run_dir, info["base_model"]), str(folder), processor)
        return ModelSource(str(folder), None, processor)
    if not (folder / ADAPTER_CONFIG).is_file():  # lora.r = 0: the tuned parts were trained in full
        return ModelSource(str(folder), None, str(folder))
    check_adapter_config(run_dir, folder)
    base = base_model_path(run_dir, info["base_model"])
    return ModelSource(base, str(folder), base)


WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")
# config.json keys that do not change the model a folder holds
_CONFIG_NOTES = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache", "_commit_hash"}


def check_model_folder(path: str | Path, what: str) -> None:
    """A local ``path`` must be a model folder (``config.json`` and weights); anything else (a data folder, an empty
    folder, a file) is named here, before a run folder is made for it. A path that does not exist is a hub id."""
    folder = Path(path)
    if not folder.exists():
        if str(path).startswith((".", "/", "~")):
            raise CheckpointError(f"{what} {path} does not exist")
        return
    if not folder.is_dir():
        raise CheckpointError(f"{what} {folder} is a file, not a model folder")
    missing = [name for name, found in (("config.json", (folder / "config.json").is_file()),
                                        ("weights (*.safetensors or pytorch_model*.bin)",
                                         any(any(folder.glob(pattern)) for pattern in WEIGHT_FILES))) if not found]
    if missing:
        raise CheckpointError(f"{what} {folder} is not a model folder: no {' and no '.join(missing)}")


def check_adapter_base(adapter: str | Path, base: str | Path) -> None:
    """An adapter evaluated on another base than it was trained on is refused when that base is here to compare
    (their ``config.json`` differ: another vocabulary, other sizes), and warned about when it is not."""
    config = read_json(Path(adapter) / ADAPTER_CONFIG)
    named = config.get("base_model_name_or_path")
    if not named or named == str(base) or (Path(named).exists() and Path(named).resolve() == Path(base).resolve()):
        return
    theirs, ours = Path(named) / "config.json", Path(base) / "config.json"
    if not theirs.is_file() or not ours.is_file():
        log.warning("adapter %s was trained on %s and is evaluated on %s; the two cannot be compared here (check "
                    "that they are the same model)", adapter, named, base)
        return
    differs = _config_differences(read_json(theirs), read_json(ours))
    if differs:
        raise CheckpointError(f"adapter {adapter} was trained on {named}, which differs from {base}: "
                              f"{'; '.join(differs[:5])}. Evaluate it on the model it was trained on")


def _config_differences(theirs: dict[str, Any], ours: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(theirs) | set(ours)):
        if key in _CONFIG_NOTES:
            continue
        a, b = theirs.get(key), ours.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {a!r} there, {b!r} here")
    return out


def check_adapter_config(run_dir: Path, folder: Path) -> None:
    """The adapter's LoRA settings must be the run's (a hand-edited ``adapter_config.json`` changes the model)."""
    identity_file, config_file = run_dir / IDENTITY_FILE, folder / ADAPTER_CONFIG
    if not identity_file.is_file() or not config_file.is_file():
        return
    lora = read_json(identity_file).get("lora") or {}
    saved = read_json(config_file)
    expected = {"r": lora.get("r"), "lora_alpha": lora.get("alpha"), "lora_dropout": lora.get("dropout")}
    differs = {key: (saved.get(key), value) for key, value in expected.items()
               if value is not None and saved.get(key) != value}
    if differs:
        detail = ", ".join(f"{key} {got!r} (the run trained with {want!r})" for key, (got, want) in differs.items())
        raise CheckpointError(f"{config_file} differs from the run's settings: {detail}")


class BaseModels:
    """Models to evaluate, built on one base model kept loaded between them (the last weights folder asked for).

    Runs that share their base (a finetune run and the forget runs trained on it) read it from disk once per
    command. A run with an adapter gets the adapter merged into a copy of the base weights (no LoRA detour at
    every step; modules_to_save parts replaced by their trained copies); the kept base is never modified. Evaluation
    only: the models returned are for inference.
    """

    def __init__(self, dtype: str, attn_implementation: str, device: torch.device | str = "cpu",
                 merge: bool = True) -> None:
        self.dtype, self.attn_implementation, self.device, self.merge = dtype, attn_implementation, device, merge
        self._weights: str | None = None
        self._base: torch.nn.Module | None = None

    def base(self, weights: str) -> torch.nn.Module:
        key = os.path.realpath(weights) if os.path.exists(weights) else weights  # ../ddp/checkpoint = ddp/checkpoint
        if self._weights != key:
            self._base = None  # the previous base is released before the next one loads
            self._base = load_model(weights, self.dtype, self.attn_implementation).to(self.device).eval()
            self._weights = key
        return self._base

    def load(self, source: ModelSource) -> torch.nn.Module:
        base = self.base(source.weights)
        if not source.adapter:
            return base
        model = load_adapter(copy.deepcopy(base), source.adapter)
        return model.merge_and_unload().eval() if self.merge else model.eval()
