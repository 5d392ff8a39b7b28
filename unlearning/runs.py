"""Run folders: ``runs/<benchmark>/<model>/<method>_<split>_<lr>_<epochs>/``.

Each holds ``run.json`` (what was trained from what), ``config.yaml`` (resolved, secrets redacted),
``train_log.jsonl``, ``checkpoint/`` (a full model for Stage I, a LoRA adapter for Stage II) and
``eval/`` (per-sample JSON per split and ``summary.json``).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import torch
import yaml

from unlearning.io import atomic_write_dir, atomic_write_json, atomic_write_text, read_json, redact
from unlearning.models import load_adapter, load_model

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
CHECKPOINT = "checkpoint"
PACKAGES = ("torch", "transformers", "peft", "accelerate")


def provenance() -> dict[str, Any]:
    """Where a result came from: code revision, date, library versions."""
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        revision = None
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"git": revision, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": versions}


def start_run(run_dir: Path, config: dict[str, Any]) -> None:
    """Mark ``run_dir`` unfinished (a retrained run's old results must not survive) and record its config."""
    (run_dir / RUN_FILE).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "eval", ignore_errors=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(redact(config), sort_keys=False))


def save_run(
    run_dir: Path, model: torch.nn.Module, processor: Any, info: dict[str, Any], state_dict: dict | None = None
) -> None:
    """Write the checkpoint folder atomically, then ``run.json`` (its presence marks a finished run)."""

    def fill(folder: Path) -> None:
        model.save_pretrained(folder, state_dict=state_dict, safe_serialization=True)
        if info["kind"] == "finetune":
            processor.save_pretrained(folder)

    atomic_write_dir(run_dir / CHECKPOINT, fill)
    atomic_write_json(run_dir / RUN_FILE, {**info, "checkpoint": CHECKPOINT, **provenance()})


def read_run(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished run (no {RUN_FILE})")
    return read_json(path)


def find_runs(root: Path) -> list[Path]:
    """Every finished run folder under ``root``, sorted."""
    return sorted(path.parent for path in root.glob(f"**/{RUN_FILE}"))


def find_unique_run(root: Path, prefix: str, what: str, key: str) -> Path:
    """The one finished run under ``root`` whose folder name starts with ``prefix``."""
    matches = [path for path in find_runs(root) if path.name.startswith(prefix)]
    if len(matches) != 1:
        found = ", ".join(str(m) for m in matches) or "none"
        raise FileNotFoundError(
            f"looking for the {what} ({root}/{prefix}*): found {found}; pass {key}=<run folder> "
            + ("or run scripts/finetune.bash first" if not matches else "to choose one")
        )
    return matches[0]


def base_model_entry(run_dir: Path, base_model: str | Path) -> str:
    """How ``run.json`` records the base: relative to the run when it is a local folder, else the hub id."""
    path = Path(base_model)
    return os.path.relpath(path.resolve(), run_dir.resolve()) if path.exists() else str(base_model)


def base_model_path(run_dir: Path, info: dict[str, Any]) -> str:
    local = run_dir / info["base_model"]
    return str(local) if local.exists() else info["base_model"]


def model_path_of(run_dir: Path) -> str:
    """The full-model folder a run's weights start from: its own checkpoint for Stage I, else its base."""
    info = read_run(run_dir)
    return str(run_dir / info["checkpoint"]) if info["kind"] == "finetune" else base_model_path(run_dir, info)


def load_run_model(run_dir: Path, dtype: str, attn_implementation: str) -> torch.nn.Module:
    """The trained model of a run: Stage-I weights, or the Stage-I base plus the strictly loaded adapter."""
    info = read_run(run_dir)
    if info["kind"] == "finetune":
        return load_model(run_dir / info["checkpoint"], dtype, attn_implementation)
    base = load_model(base_model_path(run_dir, info), dtype, attn_implementation)
    return load_adapter(base, run_dir / info["checkpoint"])
