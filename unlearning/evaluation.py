"""One evaluation runner for every benchmark: lazy model, judge, compat mode, a fingerprinted cache per part,
the summary, writes on the main process only.

A benchmark describes its evaluation as parts (``Part``: one file under ``eval/``, the settings it was computed
under, and the function computing it) and a ``summarize`` function over the parts' results. The runner
reuses every part whose file was computed under the same fingerprint, loads the model only when some part
must be computed, and writes ``summary.json`` with the engine's fields (benchmark, compat, judge status,
which file holds which part, provenance) around the benchmark's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from unlearning.data import ChatCollator
from unlearning.inference import Decoding
from unlearning.io import atomic_write_json, read_json
from unlearning.metrics.judge import Judge, JudgeSettings, build_judge, judge_unavailable_reason

log = logging.getLogger(__name__)

COMPAT_MODES = ("default", "official")
ModelLoader = Callable[[], tuple[Any, ChatCollator]]


def check_compat(compat: str) -> str:
    """``default``: correct behaviour; ``official``: the original code's number-changing behaviours."""
    if compat not in COMPAT_MODES:
        raise ValueError(f"compat must be one of {COMPAT_MODES}, got {compat!r}")
    return compat


@dataclass(frozen=True)
class EvalSettings:
    """The engine's evaluation settings (``eval.*`` in the config), checked before any model loads."""

    batch_size: int
    decoding: Decoding
    compat: str = "default"
    overwrite: bool = False
    judge: JudgeSettings = field(default_factory=JudgeSettings)

    def __post_init__(self) -> None:
        check_compat(self.compat)
        if self.batch_size < 1:
            raise ValueError(f"eval.batch_size must be positive, got {self.batch_size}")

    def judge_model(self) -> str | None:
        """The judge model that will score, or None when judging is off or has no endpoint (raises when
        judging is required and has none): part fingerprints record it."""
        return None if judge_unavailable_reason(self.judge) else self.judge.model

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EvalSettings:
        decoding = dict(config.get("decoding") or {})
        try:
            return cls(
                batch_size=int(config["batch_size"]),
                decoding=Decoding(max_new_tokens=int(config["max_new_tokens"]), **decoding),
                compat=str(config.get("compat", "default")), overwrite=bool(config.get("overwrite", False)),
                judge=JudgeSettings(**(config.get("judge") or {})),
            )
        except TypeError as error:
            raise ValueError(f"eval settings: {error}") from error


class LazyModel:
    """Loads the model the first time a part of an evaluation actually needs it (resumed runs may not)."""

    def __init__(self, load: ModelLoader) -> None:
        self._load, self._loaded = load, None

    def get(self) -> tuple[Any, ChatCollator]:
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded


@dataclass
class EvalContext:
    """What a part's computation gets: the (lazily loaded) model and collator, the judge, the processes."""

    model: LazyModel
    judge: Judge | None
    accelerator: Accelerator | None
    compat: str = "default"


@dataclass(frozen=True)
class Part:
    """One cached unit of an evaluation: ``eval/<name>.json``, computed under ``fingerprint`` by ``compute``."""

    name: str
    fingerprint: Mapping[str, Any]
    compute: Callable[[EvalContext], dict[str, Any]]


@dataclass(frozen=True)
class Evaluation:
    """A benchmark's evaluation of one model: its parts (by key) and how their results become its summary.

    ``summarize(results, reference_dir)`` gets each part's stored result by key, and the reference run's
    ``eval/`` folder (or None) for metrics measured against a reference model.
    """

    parts: Mapping[str, Part]
    summarize: Callable[[Mapping[str, dict[str, Any]], Path | None], dict[str, Any]]


def cached_result(path: Path, fingerprint: Mapping[str, Any], overwrite: bool, compute: Callable[[], dict],
                  accelerator: Accelerator | None) -> dict:
    """The result stored at ``path`` when it was computed under ``fingerprint``; else compute and store it."""
    fingerprint = dict(fingerprint)
    if not overwrite and path.is_file():
        stored = read_json(path)
        if stored.get("fingerprint") == fingerprint:
            log.info("reusing %s", path)
            return stored
    result = {"fingerprint": fingerprint, **compute()}
    if accelerator is None or accelerator.is_main_process:
        atomic_write_json(path, result)
    return result


def reference_result(reference_dir: Path | None, part: Part, compat: str) -> tuple[dict | None, str | None]:
    """The reference run's result of ``part`` when it was computed under the same compat mode, else a note."""
    path = reference_dir / f"{part.name}.json" if reference_dir else None
    if path is None or not path.is_file():
        return None, f"no reference evaluation of {part.name} found"
    stored = read_json(path)
    if stored.get("fingerprint", {}).get("compat") != compat:
        return None, f"{path} was computed under another compat setting; re-evaluate it"
    return stored, None


def run_evaluation(
    benchmark: str, evaluation: Evaluation, load_model: ModelLoader, settings: EvalSettings, out_dir: Path,
    reference_dir: Path | None, accelerator: Accelerator | None,
) -> dict[str, Any]:
    """Compute (or reuse) every part, then write and return ``summary.json``."""
    judge, judge_status = build_judge(settings.judge)
    context = EvalContext(LazyModel(load_model), judge, accelerator, settings.compat)
    results = {
        key: cached_result(out_dir / f"{part.name}.json", {"compat": settings.compat, **part.fingerprint},
                           settings.overwrite, lambda part=part: part.compute(context), accelerator)
        for key, part in evaluation.parts.items()
    }
    own = evaluation.summarize(results, reference_dir)
    summary = {
        "benchmark": benchmark,
        "compat": settings.compat,
        **own,
        "judge": {"status": judge_status, **own.get("judge", {})},
        "parts": {key: f"{part.name}.json" for key, part in evaluation.parts.items()},
    }
    if accelerator is None or accelerator.is_main_process:
        atomic_write_json(out_dir / "summary.json", summary)
    return summary
