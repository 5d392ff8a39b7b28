"""Metric logging for training and evaluation: a JSONL file always, and Weights & Biases, TensorBoard or MLflow when
``report_to`` names them (their own clients; keys from the environment only).

    bash scripts/forget_lora.bash report_to=[wandb,tensorboard]     # wandb offline unless WANDB_MODE=online
    bash scripts/eval_everything.bash report_to=tensorboard

A run's trackers write into its folder (``wandb/``, ``tensorboard/``; MLflow into ``MLFLOW_TRACKING_URI``, else
``<run_root>/mlruns``), named after the run; the config they are given has its secrets redacted. Only the main
process logs.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unlearning.runs.io import redact

log = logging.getLogger(__name__)

TRACKERS = ("wandb", "tensorboard", "mlflow")
PROJECT = "vlm-unlearning"


def tracker_names(report_to: Any) -> tuple[str, ...]:
    """``report_to`` as a tuple of trackers: none, one name, or a list of them; anything else names the setting."""
    if report_to is None or report_to == "none":
        return ()
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    unknown = [name for name in names if name not in TRACKERS]
    if unknown or not all(isinstance(name, str) for name in names):
        raise ValueError(f"report_to must be none or among {TRACKERS} (one or a list), got {report_to!r}")
    return tuple(dict.fromkeys(names))


def flat_numbers(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a nested mapping, keys joined by '/' (booleans and text left out)."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_numbers(value, f"{name}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


class MetricLog:
    """One run's metric stream: ``log(values, step)`` appends a JSONL line and sends the values to each tracker."""

    def __init__(self, folder: Path, name: str, report_to: Sequence[str] = (), config: Mapping[str, Any] | None = None,
                 jsonl: Path | None = None, main_process: bool = True, mlflow_root: Path | None = None,
                 keep_until: int | None = None) -> None:
        """``keep_until``: a resumed run keeps the JSONL lines of its steps up to this one and appends after them."""
        self.folder, self.name, self.main = Path(folder), name, main_process
        self.trackers = tracker_names(report_to)
        kept = ""
        if jsonl is not None and main_process and keep_until is not None and Path(jsonl).is_file():
            kept = "".join(line for line in Path(jsonl).read_text(encoding="utf-8").splitlines(keepends=True)
                           if line.strip() and json.loads(line).get("step", 0) <= keep_until)
        self._jsonl = open(jsonl, "w", encoding="utf-8") if jsonl is not None and main_process else None  # noqa: SIM115
        if self._jsonl is not None and kept:
            self._jsonl.write(kept)
            self._jsonl.flush()
        self._wandb = self._tensorboard = self._mlflow = None
        if not main_process:
            return
        config = redact(dict(config or {}))
        if "wandb" in self.trackers:
            import wandb

            os.environ.setdefault("WANDB_MODE", "offline")  # nothing leaves the machine unless asked
            self._wandb = wandb.init(project=os.environ.get("WANDB_PROJECT", PROJECT), name=name,
                                     dir=str(self.folder), config=config, reinit="create_new")
        if "tensorboard" in self.trackers:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(log_dir=str(self.folder / "tensorboard"))
            self._tensorboard.add_text("config", f"```\n{json.dumps(config, indent=1, default=str)}\n```")
        if "mlflow" in self.trackers:
            import mlflow

            if not os.environ.get("MLFLOW_TRACKING_URI") and mlflow_root is not None:
                mlflow.set_tracking_uri((Path(mlflow_root) / "mlruns").resolve().as_uri())
            mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT))
            self._mlflow = mlflow.start_run(run_name=name)
            mlflow.log_params({key: str(value)[:250] for key, value in _flat_items(config)})
        if self.trackers:
            log.info("metrics also go to %s", ", ".join(self.trackers))

    def log(self, values: Mapping[str, Any], step: int) -> None:
        if not self.main:
            return
        if self._jsonl is not None:
            self._jsonl.write(json.dumps({"step": step, **values}) + "\n")
            self._jsonl.flush()
        numbers = flat_numbers(values)
        if not numbers:
            return
        if self._wandb is not None:
            self._wandb.log(numbers, step=step)
        if self._tensorboard is not None:
            for key, value in numbers.items():
                self._tensorboard.add_scalar(key, value, step)
            self._tensorboard.flush()
        if self._mlflow is not None:
            import mlflow

            mlflow.log_metrics(numbers, step=step)

    def close(self) -> None:
        """Finish every tracker (before the run's folder moves into place)."""
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        if self._mlflow is not None:
            import mlflow

            mlflow.end_run()
            self._mlflow = None

    def __enter__(self) -> MetricLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _flat_items(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in config.items():
        if isinstance(value, Mapping):
            items += _flat_items(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items
