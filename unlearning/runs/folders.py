"""Run folders: ``runs/<benchmark>/<model>/<readable name>-<hash>/``, claimed, filled by an attempt, found again.

A run folder holds ``run.json`` (what was trained from what; its presence marks a finished run),
``identity.json`` (the hashed settings, ``unlearning.runs.identity``), ``config.yaml`` (resolved, secrets
redacted), ``train_log.jsonl``, ``checkpoint/`` (a full model for a finetune, a LoRA adapter for a forget run),
``checkpoints/step_NNNNNN/`` (intermediate ones, with ``save_every``) and ``eval/``.

A training attempt writes into ``<group>/.attempts/<run name>/`` and is moved into place only when it has
finished, so a failed or interrupted attempt never touches a finished run; a finished run is replaced only when
the user asks (``overwrite=true``). Nothing here ever deletes another run's files.

A model that was not trained here (an HF id, a local folder, an adapter on top of one) is evaluated in a run
folder of kind ``external`` whose ``run.json`` records where it came from.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unlearning.models.loading import ADAPTER_CONFIG
from unlearning.runs.identity import differences, identity_hash
from unlearning.runs.io import CorruptFile, atomic_write_json, atomic_write_text, read_json, redact
from unlearning.runs.locks import Lock
from unlearning.runs.provenance import provenance

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
IDENTITY_FILE = "identity.json"
ATTEMPTS = ".attempts"  # unfinished training attempts, beside the runs of a benchmark/model
CHECKPOINT = "checkpoint"
STEP_CHECKPOINTS = "checkpoints"


class RunExists(RuntimeError):
    """A run folder already holds a run trained with other settings."""


@dataclass(frozen=True)
class RunClaim:
    """Where a training run goes and what is there already.

    ``state``: ``new``; ``finished`` (the same settings trained already: nothing to do); or ``replace`` (the
    folder holds an unfinished run of an older version, or the user asked ``overwrite=true``): the old folder
    stays as it is until this attempt has finished. An attempt writes into ``work_dir``. ``lock``: the run
    folder's lock (``unlearning.runs.locks``) the main process holds while it trains; ``held`` releases it.
    """

    run_dir: Path
    work_dir: Path
    state: str
    lock: Lock | None = field(default=None, compare=False)
    key: str = ""  # the identity's hash (what caches computed for this run are filed under)
    identity: dict[str, Any] | None = field(default=None, compare=False)  # the settings ``key`` hashes
    resume_from: Path | None = None  # an interrupted attempt's training state this attempt goes on from

    @contextlib.contextmanager
    def held(self) -> Iterator[RunClaim]:
        """The block that trains the run; the lock is let go when it ends, finished or failed."""
        try:
            yield self
        finally:
            if self.lock is not None:
                self.lock.release()


def run_folder(group_dir: Path, label: str, run_name: str | None, identity: Mapping[str, Any]) -> Path:
    """``<label>-<hash>`` (or ``run_name`` when given) under the benchmark/model folder."""
    return group_dir / (run_name or f"{label}-{identity_hash(identity)}")


def claim_run(group_dir: Path, label: str, run_name: str | None, identity: Mapping[str, Any],
              overwrite: bool = False) -> RunClaim:
    """The folder for a run with these settings: ``<label>-<hash>`` (or ``run_name`` when given).

    Without ``overwrite`` a folder holding another run (other settings, or evaluation results without a
    finished training) is never touched: RunExists names it and what differs.
    """
    run_dir = run_folder(group_dir, label, run_name, identity)
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
                f"{run_dir} already holds a run trained with other settings ({differences(stored or {}, identity)}); "
                "it is left as it is. Choose another run_name=, or pass overwrite=true to replace it")
        if (run_dir / "eval").exists():
            raise RunExists(f"{run_dir} has evaluation results but no {RUN_FILE}; it is left as it is. Pass "
                            "overwrite=true to replace it")
    return RunClaim(run_dir, work_dir, "replace")


def start_attempt(claim: RunClaim, config: dict[str, Any], identity: Mapping[str, Any],
                  keep: Callable[[Path], bool] | None = None) -> bool:
    """A fresh attempt folder holding the run's settings (a stale attempt of the same run is cleared first: with
    the run folder's lock held, no live process is writing it), or the stale attempt kept as it is when it trained
    these very settings and ``keep`` says it can be resumed; returns whether it was kept."""
    if keep is not None and claim.work_dir.exists() and _same_identity(claim.work_dir, identity) \
            and keep(claim.work_dir):
        return True
    if claim.work_dir.exists():
        log.info("clearing %s, an earlier attempt at this run that did not finish", claim.work_dir)
        shutil.rmtree(claim.work_dir)
    claim.work_dir.mkdir(parents=True)
    atomic_write_json(claim.work_dir / IDENTITY_FILE, identity)
    atomic_write_text(claim.work_dir / "config.yaml", yaml.safe_dump(redact(config), sort_keys=False))
    return False


def _same_identity(folder: Path, identity: Mapping[str, Any]) -> bool:
    path = folder / IDENTITY_FILE
    try:
        return path.is_file() and read_json(path) == json.loads(json.dumps(identity, default=str))
    except CorruptFile:
        return False


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


def save_run(run_dir: Path, info: dict[str, Any]) -> None:
    """Write ``run.json`` (its presence marks a finished run) once the checkpoint is in place."""
    atomic_write_json(run_dir / RUN_FILE, {**info, "checkpoint": CHECKPOINT, **provenance()})


def read_run(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished run (no {RUN_FILE})")
    return read_json(path)


def find_runs(root: Path) -> list[Path]:
    """Every finished run folder under ``root``, sorted (attempts and other hidden folders left out). Runs lie at
    one depth below a run root (``<benchmark>/<model>/<run>``, or ``<run>`` below a benchmark/model folder); runs
    deeper than the shallowest belong to another run root kept inside this one (``runs/methods`` of ``make
    demo-methods`` inside ``runs/``) and are left out, logged: collect them with that folder as the root."""
    found = [path.parent for path in root.glob(f"**/{RUN_FILE}")
             if not any(part.startswith(".") for part in path.relative_to(root).parts)]
    if not found:
        return []
    depth = min(len(run.relative_to(root).parts) for run in found)
    nested = sorted({run.relative_to(root).parts[0] for run in found if len(run.relative_to(root).parts) > depth})
    if nested:
        log.info("left out the runs of the run roots inside %s (%s): pass one of them as the run root to see them",
                 root, ", ".join(str(root / name) for name in nested))
    return sorted(run for run in found if len(run.relative_to(root).parts) == depth)


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

    The same source gets the same folder, so its evaluation resumes; ``run.json`` records the source. A folder that
    is not a model, or an adapter trained on another base, is refused before the run folder is made.
    """
    from unlearning.runs.checkpoints import check_adapter_base, check_model_folder  # checkpoints imports this module

    source = {"model_path": str(model_path), "adapter_path": None if adapter_path is None else str(adapter_path)}
    resolved = {key: str(Path(value).resolve()) if value and Path(value).exists() else value
                for key, value in source.items()}
    named = Path(str(adapter_path or model_path).rstrip("/"))
    named = named.parent if named.name == CHECKPOINT else named  # a run's checkpoint: the run's name
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", named.name) or "model"
    run_dir = group_dir / f"external_{label}-{identity_hash(resolved)}"
    check_model_folder(model_path, "model_path")  # before any folder is made for it
    if adapter_path is not None and not (Path(adapter_path) / ADAPTER_CONFIG).is_file():
        raise FileNotFoundError(f"adapter_path {adapter_path}: no {ADAPTER_CONFIG} (a peft adapter folder)")
    if adapter_path is not None:
        check_adapter_base(adapter_path, model_path)
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
