"""Resuming an interrupted run from its last saved step, to the same final weights as an uninterrupted run.

With ``save_every=N`` the training loop keeps, beside each step checkpoint, what the next steps depend on
(``checkpoints/step_N/trainer_state.pt``): the trainable weights, the optimiser's state (its fp32 master weights
too), the schedule, where the data order stands (the epoch, the micro-batches of it already used, the data
generator's state when the epoch began) and every random generator (Python, NumPy, torch; each process its own,
for dropout). On resume the epoch's batches are drawn again from the saved generator state and the used ones
skipped (their indices and images are drawn as before, not trained on), so every later batch and every dropout
mask is the uninterrupted run's. Only the newest state is kept: optimiser moments double a full model's size.

accelerate's ``save_state``/``load_state`` keep the weights, optimiser and generators too, but not where a
non-stateful data loader stands mid-epoch, which the exact replay needs; DeepSpeed's sharded optimiser is not
covered here (a resume under DeepSpeed is refused).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearning.runs.checkpoints import step_checkpoint_dir as step_dir

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
RNG_FILE = "rng_state_{rank}.pt"
STEP_DIR = re.compile(r"^step_(\d+)$")
VERSION = 1


@dataclass(frozen=True)
class Resume:
    """Keeping training state every ``every`` optimiser steps in ``folder``/checkpoints/step_N, and the state
    training goes on from (``start``), if any."""

    folder: Path
    every: int | None
    start: dict[str, Any] | None = None

    @property
    def step(self) -> int:
        return 0 if self.start is None else int(self.start["step"])


def latest_state(folder: Path) -> Path | None:
    """The newest ``trainer_state.pt`` under ``folder``/checkpoints (None when there is none)."""
    found = []
    for path in (folder / "checkpoints").glob(f"step_*/{STATE_FILE}"):
        match = STEP_DIR.match(path.parent.name)
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def save_state(folder: Path, step: int, position: dict[str, Any], model: torch.nn.Module, optimizer: Any,
               scheduler: Any, main_process: bool, rank: int) -> None:
    """The state after optimiser step ``step`` (``position``: epoch, batches used of it, the generator's state at its
    start); older states are removed once this one is written."""
    target = step_dir(folder, step)
    target.mkdir(parents=True, exist_ok=True)
    torch.save(rng_states(), target / RNG_FILE.format(rank=rank))
    if not main_process:
        return
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
    state = {"version": VERSION, "step": step, **position, "weights": trainable_state(model),
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "masters": inner.master_state() if hasattr(inner, "master_state") else None}
    partial = target / (STATE_FILE + ".partial")
    torch.save(state, partial)
    partial.replace(target / STATE_FILE)
    for old in (folder / "checkpoints").glob(f"step_*/{STATE_FILE}"):
        if old.parent != target:
            old.unlink()
    log.info("kept the training state of step %d (resumable)", step)


def load_state(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("version") != VERSION:
        raise ValueError(f"{path} is not a training state this version can resume from")
    return state


def restore(state: dict[str, Any], model: torch.nn.Module, optimizer: Any, scheduler: Any) -> None:
    """Weights, optimiser and schedule as they were after the saved step."""
    parameters = dict(model.named_parameters())
    missing = sorted(set(state["weights"]) - set(parameters))
    if missing:
        raise ValueError(f"the saved training state names parameters this model lacks: {missing[:3]}")
    with torch.no_grad():
        for name, value in state["weights"].items():
            parameters[name].copy_(value.to(parameters[name].device, parameters[name].dtype))
    optimizer.load_state_dict(state["optimizer"])
    inner = getattr(optimizer, "optimizer", optimizer)
    if state.get("masters") is not None and hasattr(inner, "load_master_state"):
        inner.load_master_state(state["masters"])
    scheduler.load_state_dict(state["scheduler"])


def rng_restorer(folder: Path, step: int, rank: int) -> Callable[[], None]:
    """Sets this process's generators as they were after ``step``."""
    path = step_dir(folder, step) / RNG_FILE.format(rank=rank)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the random state of process {rank} at step {step} is missing; resume with "
                                "as many processes as the run was started with")
    states = torch.load(path, map_location="cpu", weights_only=False)
    return lambda: set_rng_states(states)
