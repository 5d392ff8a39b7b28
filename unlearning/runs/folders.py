"""Run folders: ``runs/<benchmark>/<model>/<readable name>-<hash>/``.

The hash is taken over every setting that changes training (the resolved config without the keys listed in
``NOT_TRAINING``, plus the model training started from), so two runs that differ in any such setting (NPO's
beta, a retain weight, the LoRA rank, the seed) get two folders. A run folder holds ``run.json`` (what was
trained from what; its presence marks a finished run), ``identity.json`` (the hashed settings),
``config.yaml`` (resolved, secrets redacted), ``train_log.jsonl``, ``checkpoint/`` (a full model for a
finetune, a LoRA adapter for a forget run), ``checkpoints/step_NNNNNN/`` (intermediate ones, with
``save_every``) and ``eval/``.

A training attempt writes into ``<group>/.attempts/<run name>/`` and is moved into place only when it has
finished, so a failed or interrupted attempt never touches a finished run; a finished run is replaced only when
the user asks (``overwrite=true``). Nothing here ever deletes another run's files.

A model that was not trained here (an HF id, a local folder, an adapter on top of one) is evaluated in a run
folder of kind ``external`` whose ``run.json`` records where it came from.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from unlearning.models.loading import ADAPTER_CONFIG, CheckpointError, load_adapter, load_model
from unlearning.runs.io import atomic_write_dir, atomic_write_json, atomic_write_text, read_json, redact
from unlearning.runs.provenance import provenance

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
IDENTITY_FILE = "identity.json"
ATTEMPTS = ".attempts"  # unfinished training attempts, beside the runs of a benchmark/model
CHECKPOINT = "checkpoint"
STEP_CHECKPOINTS = "checkpoints"

# Config keys that do not change what is trained: where it is written, how it is logged, which checkpoints
# are kept, and the benchmark's evaluation-only settings.
NOT_TRAINING = ("run_root", "run_name", "run_label", "log_every", "report_to", "save_every", "model_path",
                "overwrite", "data_dir",  # the data's content and the base model stand in for their paths
                "compat",  # it acts through the method's resolved coefficients, which are in the identity
                "num_workers", "pixel_cache_mb")  # where and how batches are collated, not what they hold
NOT_TRAINING_BENCHMARK = ("builtin_dir", "forget_split", "retain_split", "reference_split", "stage_one_split",
                          "starts_from", "general_evals", "judge", "eval_options", "recipe", "official_training")
# Settings added after runs existed, by the section of the config holding them, at the value that trains as before:
# left out of the identity at that value, so earlier runs keep their names (any other value is in it).
_METHOD_ADDED = {"reduction": "answer_tokens", "retain_nll": 0.0, "joint": False, "granularity": "sequence"}
IDENTITY_DEFAULTS: dict[tuple[str, ...], dict[str, Any]] = {
    (): {"shuffle": True, "decay_exempt": "1d", "reference_model": None, "lora_match": "path",
         "label_scope": "answer", "passes": "joint", "original_prompt": None},
    ("method",): _METHOD_ADDED,
    ("method", "base"): _METHOD_ADDED,  # a composed method's base (kl_pd, po_pd)
    ("benchmark", "options"): {"capitalize": False},
}


class RunExists(RuntimeError):
    """A run folder already holds a run trained with other settings."""


# ---------------------------------------------------------------------------------------------- identity


def training_identity(config: Mapping[str, Any], base_model: str | None, data: str | None = None,
                      base_content: str | None = None) -> dict[str, Any]:
    """The settings that determine a trained model: the resolved config minus ``NOT_TRAINING``, plus its base
    (where it is and a hash of what it holds) and a content hash of the examples it trains on (``data``), so
    changed data or a rebuilt base never finds the old run, and moved data still finds it."""
    identity = _without_added_defaults({key: value for key, value in config.items() if key not in NOT_TRAINING})
    benchmark = identity.get("benchmark")
    if isinstance(benchmark, Mapping):
        identity["benchmark"] = {k: v for k, v in benchmark.items() if k not in NOT_TRAINING_BENCHMARK}
    if isinstance(identity.get("model"), Mapping):  # where the model lives: ``base_model`` says what it is
        identity["model"] = {k: v for k, v in identity["model"].items() if k != "path"}
    identity["base_model"] = base_model
    identity["base_content"] = base_content
    identity["data"] = data
    return redact(identity)  # secrets never reach disk, nor the hash


def _without_added_defaults(config: dict[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    defaults = IDENTITY_DEFAULTS.get(path, {})
    out = {}
    for key, value in config.items():
        if key in defaults and value == defaults[key]:
            continue
        out[key] = _without_added_defaults(dict(value), (*path, key)) if isinstance(value, Mapping) else value
    return out


def identity_hash(identity: Mapping[str, Any]) -> str:
    material = json.dumps(identity, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:8]


@dataclass(frozen=True)
class RunClaim:
    """Where a training run goes and what is there already.

    ``state``: ``new``; ``finished`` (the same settings trained already: nothing to do); or ``replace`` (the
    folder holds an unfinished run of an older version, or the user asked ``overwrite=true``): the old folder
    stays as it is until this attempt has finished. An attempt writes into ``work_dir``.
    """

    run_dir: Path
    work_dir: Path
    state: str


def claim_run(group_dir: Path, label: str, run_name: str | None, identity: Mapping[str, Any],
              overwrite: bool = False) -> RunClaim:
    """The folder for a run with these settings: ``<label>-<hash>`` (or ``run_name`` when given).

    Without ``overwrite`` a folder holding another run (other settings, or evaluation results without a
    finished training) is never touched: RunExists names it and what differs.
    """
    run_dir = group_dir / (run_name or f"{label}-{identity_hash(identity)}")
    work_dir = group_dir / ATTEMPTS / run_dir.name
    if not run_dir.exists():
        return RunClaim(run_dir, work_dir, "new")
    stored_file = run_dir / IDENTITY_FILE
    stored = read_json(stored_file) if stored_file.is_file() else None
    same = stored == json.loads(json.dumps(identity, default=str))
    finished = (run_dir / RUN_FILE).is_file()
    if same and finished and not overwrite:
        return RunClaim(run_dir, run_dir, "finished")
    if not overwrite:
        if not same:
            raise RunExists(
                f"{run_dir} already holds a run trained with other settings ({_differences(stored or {}, identity)}); "
                "it is left as it is. Choose another run_name=, or pass overwrite=true to replace it")
        if (run_dir / "eval").exists():
            raise RunExists(f"{run_dir} has evaluation results but no {RUN_FILE}; it is left as it is. Pass "
                            "overwrite=true to replace it")
    return RunClaim(run_dir, work_dir, "replace")


def _differences(stored: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> str:
    keys = sorted(set(stored) | set(current))
    out = []
    for key in keys:
        a, b = stored.get(key), current.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            inner = _differences(a, b, f"{prefix}{key}.")
            out += [inner] if inner else []
        elif json.dumps(a, default=str) != json.dumps(b, default=str):
            out.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return "; ".join(out[:5]) if not prefix else "; ".join(out)


def start_attempt(claim: RunClaim, config: dict[str, Any], identity: Mapping[str, Any]) -> None:
    """A fresh attempt folder holding the run's settings (a stale attempt of the same run is cleared first)."""
    if claim.work_dir.exists():
        log.info("clearing %s, an earlier attempt at this run that did not finish", claim.work_dir)
        shutil.rmtree(claim.work_dir)
    claim.work_dir.mkdir(parents=True)
    atomic_write_json(claim.work_dir / IDENTITY_FILE, identity)
    atomic_write_text(claim.work_dir / "config.yaml", yaml.safe_dump(redact(config), sort_keys=False))


def finish_attempt(claim: RunClaim) -> Path:
    """Move the finished attempt into place; a folder it replaces is removed only after that."""
    if not (claim.work_dir / RUN_FILE).is_file():
        raise RuntimeError(f"{claim.work_dir} has no {RUN_FILE}: the attempt did not finish")
    old = claim.work_dir.with_name(f"{claim.run_dir.name}.replaced")
    if claim.run_dir.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(claim.run_dir, old)
        log.info("replacing %s (overwrite=true, or an unfinished run of an older version)", claim.run_dir)
    os.replace(claim.work_dir, claim.run_dir)
    shutil.rmtree(old, ignore_errors=True)
    with contextlib.suppress(OSError):
        claim.work_dir.parent.rmdir()  # only when no other attempt is under way
    return claim.run_dir


# ---------------------------------------------------------------------------------------------- checkpoints


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


def save_run(run_dir: Path, info: dict[str, Any]) -> None:
    """Write ``run.json`` (its presence marks a finished run) once the checkpoint is in place."""
    atomic_write_json(run_dir / RUN_FILE, {**info, "checkpoint": CHECKPOINT, **provenance()})


def read_run(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished run (no {RUN_FILE})")
    return read_json(path)


def find_runs(root: Path) -> list[Path]:
    """Every finished run folder under ``root``, sorted (attempts and other hidden folders left out)."""
    return sorted(path.parent for path in root.glob(f"**/{RUN_FILE}")
                  if not any(part.startswith(".") for part in path.relative_to(root).parts))


def find_finetune_run(group_dir: Path, split: str, what: str, key: str) -> Path:
    """The one finished finetune run on ``split`` under ``group_dir`` (a benchmark/model folder)."""
    matches = [run for run in find_runs(group_dir)
               if (info := read_run(run)).get("kind") == "finetune" and info.get("split") == split]
    if len(matches) != 1:
        found = ", ".join(str(m) for m in matches) or "none"
        raise FileNotFoundError(
            f"looking for the {what} (a finished finetune run on split={split} under {group_dir}): found {found}; "
            + (f"pass {key}=<run folder> to choose one" if matches else
               f"run scripts/finetune.bash split={split} first or pass {key}=<model folder>"))
    return matches[0]


def base_model_entry(run_dir: Path, base_model: str | Path) -> str:
    """How ``run.json`` records the base: relative to the run when it is a local folder (``./`` first, so it is
    never mistaken for a hub id), else the hub id."""
    path = Path(base_model)
    if not path.exists():
        return str(base_model)
    relative = os.path.relpath(path.resolve(), run_dir.resolve())
    return relative if relative.startswith(".") else f"./{relative}"


def base_model_path(run_dir: Path, entry: str, what: str = "base model") -> str:
    """The local folder an entry of ``run.json`` names (an error when it is gone), or the hub id."""
    local = run_dir / entry
    if local.exists():
        return str(local)
    if entry.startswith((".", "/")):
        raise FileNotFoundError(f"its {what} {local.resolve()} is missing (deleted or moved?); the run cannot be "
                                "loaded until it is back")
    return entry


# ---------------------------------------------------------------------------------------------- external models


def external_run(group_dir: Path, benchmark: str, model: str, model_path: str, adapter_path: str | None) -> Path:
    """A run folder for a model trained elsewhere (an HF id or a folder; optionally an adapter on top of it).

    The same source gets the same folder, so its evaluation resumes; ``run.json`` records the source.
    """
    source = {"model_path": str(model_path), "adapter_path": None if adapter_path is None else str(adapter_path)}
    resolved = {key: str(Path(value).resolve()) if value and Path(value).exists() else value
                for key, value in source.items()}
    named = Path(str(adapter_path or model_path).rstrip("/"))
    named = named.parent if named.name == CHECKPOINT else named  # a run's checkpoint: the run's name
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", named.name) or "model"
    run_dir = group_dir / f"external_{label}-{identity_hash(resolved)}"
    if adapter_path is not None and not (Path(adapter_path) / ADAPTER_CONFIG).is_file():
        raise FileNotFoundError(f"adapter_path {adapter_path}: no {ADAPTER_CONFIG} (a peft adapter folder)")
    if not (run_dir / RUN_FILE).is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / RUN_FILE, {
            "kind": "external", "benchmark": benchmark, "model": model, "method": None, "split": None,
            "source": source,
            "base_model": base_model_entry(run_dir, model_path),
            "adapter": None if adapter_path is None else base_model_entry(run_dir, adapter_path),
            **provenance(),
        })
    return run_dir


# ---------------------------------------------------------------------------------------------- loading


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
        adapter = base_model_path(run_dir, info["adapter"], "adapter") if info.get("adapter") else None
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


def load_source(source: ModelSource, dtype: str, attn_implementation: str) -> torch.nn.Module:
    """The full weights, with the adapter attached strictly when there is one."""
    model = load_model(source.weights, dtype, attn_implementation)
    return load_adapter(model, source.adapter) if source.adapter else model


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
