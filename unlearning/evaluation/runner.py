"""One evaluation runner for every benchmark: lazy model, judge, compat switches, a fingerprinted cache per part,
the summary, writes on the main process only.

A benchmark describes its evaluation as parts (``Part``: one file under ``eval/``, the settings it was computed
under, the data it scores, and the function computing it) and a ``summarize`` function over the parts' results.
A part's stored file is reused only when it was computed from the same settings, the same data (by content:
texts and image bytes) and the same model weights; otherwise it is computed again. The runner loads the model
only when some part must be computed, asks again the judge requests that failed last time, and writes
``summary.json`` with the engine's fields (benchmark, compat, judge status, which file holds which part) around
the benchmark's own.

A part that judges reports its counts as ``result["judge"]`` (``unlearning.evaluation.judge.judgments.judge_counts``, or
their sum with ``add_counts``): the summary's judge status and the retry of failed requests read them.

``eval.limit=N`` (a smoke check) scores the first N items of each part: a benchmark's evaluation builder passes each
list it scores through ``EvalSettings.limited``; the parts and summary go to ``eval/limit_<N>/`` (``limited_dir``),
never over a full evaluation's, and the limit is in every part's fingerprint. ``eval.write_prompts=true`` writes
what each computed part sent: the rendered prompts to ``prompts/<part>.jsonl`` and the judge's messages to
``prompts/<part>.judge.jsonl`` beside its result (``PromptLog``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from accelerate import Accelerator

from unlearning.compat import Compat
from unlearning.data.collator import ChatCollator
from unlearning.evaluation.intervals import BootstrapSettings, Replicate, add_intervals
from unlearning.evaluation.judge.client import Judge
from unlearning.evaluation.judge.judgments import judge_status
from unlearning.evaluation.judge.settings import JudgeSettings, judge_unavailable_reason
from unlearning.evaluation.schema import SCHEMA_VERSION
from unlearning.evaluation.selection import ValidationSplit, selection_file, split_metrics
from unlearning.inference.decoding import Decoding
from unlearning.runs.fingerprint import content_hash
from unlearning.runs.io import CorruptFile, atomic_write_json, read_json
from unlearning.runs.provenance import provenance
from unlearning.runs.resources import peak_memory_mb

log = logging.getLogger(__name__)

ModelLoader = Callable[[], tuple[Any, ChatCollator]]
T = TypeVar("T")
PROMPTS_DIR = "prompts"


@dataclass(frozen=True)
class EvalSettings:
    """The engine's evaluation settings (``eval.*`` in the config), checked before any model loads."""

    batch_size: int
    decoding: Decoding
    compat: Compat
    overwrite: bool = False
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)  # the metrics' confidence intervals
    selection: ValidationSplit = field(default_factory=ValidationSplit)  # units held out to choose checkpoints
    limit: int | None = None  # a smoke check: the first N items of each part (``limited``); None: all
    write_prompts: bool = False  # each computed part's prompts (model and judge) in ``prompts/``
    # the lists passed through ``limited``: a benchmark that passes none does not apply the limit (checked)
    _limited: list[int] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"eval.batch_size must be positive, got {self.batch_size}")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int)
                                       or self.limit < 1):
            raise ValueError(f"eval.limit must be a positive whole number or null, got {self.limit!r}")

    def limited(self, items: Sequence[T]) -> Sequence[T]:
        """The first ``eval.limit`` of ``items`` (all of them without a limit): what a benchmark's evaluation builder
        scores of each list (QAs, profiles, records, images). A list subclass keeps its attributes (a release's
        subset note, a grading template)."""
        self._limited.append(len(items))
        return first(items, self.limit)

    @property
    def limit_applied(self) -> bool:
        """Whether a builder passed any list through ``limited`` (one that passes none ignores ``eval.limit``)."""
        return bool(self._limited)

    def judge_fingerprint(self) -> dict[str, Any] | None:
        """What the judged numbers depend on (None when judging is off or has no endpoint; raises when judging is
        required and has none): part fingerprints record it."""
        if judge_unavailable_reason(self.judge):
            return None
        j = self.judge
        return {"model": j.model, "system_prompt": j.system_prompt, "max_tokens": j.max_tokens,
                "temperature": j.temperature, "max_failed": j.max_failed}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], compat: Compat) -> EvalSettings:
        decoding = dict(config.get("decoding") or {})
        try:
            return cls(
                batch_size=_whole(config["batch_size"], "eval.batch_size"),
                decoding=Decoding(max_new_tokens=_whole(config["max_new_tokens"], "eval.max_new_tokens"),
                                  **decoding),
                compat=compat, overwrite=_flag(config.get("overwrite", False), "eval.overwrite"),
                judge=JudgeSettings(**(config.get("judge") or {})),
                bootstrap=BootstrapSettings.from_config(config.get("bootstrap")),
                selection=ValidationSplit.from_config(config.get("selection")),
                limit=config.get("limit"),
                write_prompts=_flag(config.get("write_prompts", False), "eval.write_prompts"),
            )
        except TypeError as error:
            raise ValueError(f"eval settings: {error}") from error


def _whole(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return value


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def first(items: Sequence[T], limit: int | None) -> Sequence[T]:
    """The first ``limit`` items (all with None); a list is copied (its subclass and attributes kept), not cut."""
    if limit is None or len(items) <= limit:
        return items
    if isinstance(items, list):
        out = copy.copy(items)
        del out[limit:]
        return out
    return items[:limit]


def limited_dir(eval_dir: Path, limit: int | None) -> Path:
    """Where an evaluation with ``eval.limit`` writes: ``<eval dir>/limit_<N>/``, apart from the full one."""
    return eval_dir if limit is None else eval_dir / f"limit_{limit}"


class PromptLog:
    """The prompts a part's computation sent, one JSON object a line: the model's (``<part>.jsonl``: each example's
    rendered text, as ``unlearning.inference.answers`` passes it) and the judge's (``<part>.judge.jsonl``: the
    messages and sampling settings of each request, never a key). Written on the main process only; a part computed
    again replaces its files."""

    def __init__(self, folder: Path, part: str, enabled: bool) -> None:
        self.model_file = folder / f"{part}.jsonl"
        self.judge_file = folder / f"{part}.judge.jsonl"
        self.enabled = enabled
        if enabled:
            folder.mkdir(parents=True, exist_ok=True)
            for path in (self.model_file, self.judge_file):
                path.unlink(missing_ok=True)

    def model(self, records: Iterable[Mapping[str, Any]]) -> None:
        self._append(self.model_file, records)

    def judge(self, records: Iterable[Mapping[str, Any]]) -> None:
        self._append(self.judge_file, records)

    def _append(self, path: Path, records: Iterable[Mapping[str, Any]]) -> None:
        if self.enabled:
            with path.open("a", encoding="utf-8") as handle:
                handle.writelines(json.dumps(record, ensure_ascii=False, default=str) + "\n" for record in records)


class LazyModel:
    """Loads the model the first time a part of an evaluation actually needs it (resumed runs may not)."""

    def __init__(self, load: ModelLoader) -> None:
        self._load, self._loaded = load, None

    def get(self) -> tuple[Any, ChatCollator]:
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded

    @property
    def loaded(self) -> bool:
        return self._loaded is not None


class _Logged(LazyModel):
    """The evaluation's lazily loaded model with a copy of its collator that writes the prompts it is given."""

    def __init__(self, inner: LazyModel, prompts: PromptLog) -> None:
        super().__init__(inner.get)
        self._inner, self._prompts = inner, prompts

    def get(self) -> tuple[Any, ChatCollator]:
        net, collator = self._inner.get()
        logged = copy.copy(collator)  # its caches shared
        logged.prompt_log = self._prompts
        return net, logged

    @property
    def loaded(self) -> bool:
        return self._inner.loaded


@dataclass
class EvalContext:
    """What a part's computation gets: the (lazily loaded) model and collator, the judge, the processes."""

    model: LazyModel
    judge: Judge | None
    accelerator: Accelerator | None
    compat: Compat


@dataclass(frozen=True)
class Part:
    """One cached unit of an evaluation: ``eval/<name>.json``, computed by ``compute`` under the settings in
    ``fingerprint`` from ``data`` (what it scores: examples, records, files; hashed by content)."""

    name: str
    fingerprint: Mapping[str, Any]
    compute: Callable[[EvalContext], dict[str, Any]]
    data: Any

    @functools.cached_property
    def data_hash(self) -> str:
        """Hashed once per evaluation command, however many runs it evaluates."""
        return content_hash(self.data, desc=f"hash {self.name}")

    def key(self, compat: Compat, model: str | None, limit: int | None = None) -> dict[str, Any]:
        """Everything the stored result depends on: the compat switches on at evaluation, settings, a content hash
        of the data, the model weights, and ``eval.limit`` when one cut the data."""
        return {"compat": compat.at("eval"), **self.fingerprint, "data": self.data_hash, "model": model,
                **({} if limit is None else {"limit": limit})}


@dataclass(frozen=True)
class Evaluation:
    """A benchmark's evaluation of one model: its parts (by key) and how their results become its summary.

    ``summarize(results, reference_dir)`` gets each part's stored result by key, and the reference run's
    ``eval/`` folder (or None) for metrics measured against a reference model. ``resample(results, reference_dir,
    resampler)``, when given, returns bootstrap replicates of the summary fields the table reads
    (``unlearning.evaluation.intervals``): every metric then gets a confidence interval.
    """

    parts: Mapping[str, Part]
    summarize: Callable[[Mapping[str, dict[str, Any]], Path | None], dict[str, Any]]
    resample: Replicate | None = None


def canonical(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """A fingerprint as stored JSON reads back (tuples as lists, paths as text), so that a stored fingerprint and
    the settings that made it compare equal."""
    return json.loads(json.dumps(fingerprint, default=str, ensure_ascii=False))


def _changed(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> str:
    """The fingerprint keys whose values differ, for the log line saying why a result is not reused."""
    return ", ".join(sorted(k for k in {*ours, *theirs} if ours.get(k) != theirs.get(k)))


def _stored(path: Path) -> dict | None:
    """A part's stored result, or None (with a warning) when the file is missing or corrupt."""
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except CorruptFile as error:
        log.warning("%s; computing it again", error)
        return None


def cached_result(path: Path, fingerprint: Mapping[str, Any], overwrite: bool, compute: Callable[[], dict],
                  accelerator: Accelerator | None, judge_available: bool = False) -> dict:
    """The result stored at ``path`` when it was computed under ``fingerprint``; else compute and store it.

    A stored result whose judge requests partly failed is computed again when a judge is available (its
    successful replies come from the judge's cache, the failed ones are asked again).
    """
    fingerprint = canonical(fingerprint)
    stored = None if overwrite else _stored(path)
    if stored is not None:
        failed = (stored.get("judge") or {}).get("n_failed", 0)
        if stored.get("fingerprint") != fingerprint:
            log.info("%s was computed from other %s; computing it again", path,
                     _changed(fingerprint, stored.get("fingerprint", {})))
        elif failed and judge_available:
            log.info("%s: %d judge requests failed last time; asking again", path, failed)
        else:
            log.info("reusing %s", path)
            return stored
    result = {"fingerprint": fingerprint, **compute()}
    if accelerator is None or accelerator.is_main_process:
        atomic_write_json(path, result)
    return result


def reference_result(reference_dir: Path | None, part: Part, compat: Compat) -> tuple[dict | None, str | None]:
    """The reference run's result of ``part`` when it was computed from the same data and settings (its own
    model aside), else a note saying why it cannot be used. Under ``eval.limit`` the reference folder is the
    reference's ``limit_<N>/``; the limit itself is left out of the comparison, the data hash saying which items."""
    path = reference_dir / f"{part.name}.json" if reference_dir else None
    if path is None or not path.is_file():
        return None, f"no reference evaluation of {part.name} found"
    stored = _stored(path)
    if stored is None:
        return None, f"{path} cannot be read; re-evaluate the reference run"
    ours = {k: v for k, v in canonical(part.key(compat, None)).items() if k not in ("model", "limit")}
    theirs = {k: v for k, v in stored.get("fingerprint", {}).items() if k not in ("model", "limit")}
    if theirs != ours:
        return None, f"{path} was computed from other {_changed(ours, theirs)}; re-evaluate the reference run"
    return stored, None


def run_evaluation(
    benchmark: str, evaluation: Evaluation, load_model: ModelLoader, settings: EvalSettings, out_dir: Path,
    reference_dir: Path | None, accelerator: Accelerator | None, model: str | None = None,
    metrics: Callable[[dict[str, Any]], dict[str, Any]] | None = None, summary_file: str = "summary.json",
) -> dict[str, Any]:
    """Compute (or reuse) every part, then write and return the summary (``summary_file``). ``model`` fingerprints the
    weights ``load_model`` loads (``unlearning.runs.fingerprint.model_fingerprint``); ``metrics`` gives the
    summary's typed metrics (``unlearning.evaluation.schema.table_metrics``) from the rest of it. Under
    ``eval.limit`` ``out_dir`` is the limited folder (``limited_dir``)."""
    skipped = judge_unavailable_reason(settings.judge)
    judge = Judge(settings.judge) if skipped is None else None
    context = EvalContext(LazyModel(load_model), judge, accelerator, settings.compat)
    main = accelerator is None or accelerator.is_main_process
    start = time.perf_counter()

    def compute(part: Part) -> dict[str, Any]:
        if not settings.write_prompts:
            return part.compute(context)
        prompts = PromptLog(out_dir / PROMPTS_DIR, part.name, main)
        logged_judge = None
        if context.judge is not None:
            logged_judge = copy.copy(context.judge)  # its client and cache shared
            logged_judge.prompt_log = prompts
        return part.compute(dataclasses.replace(context, model=_Logged(context.model, prompts), judge=logged_judge))

    results = {
        key: cached_result(out_dir / f"{part.name}.json", part.key(settings.compat, model, settings.limit),
                           settings.overwrite, lambda part=part: compute(part), accelerator, judge is not None)
        for key, part in evaluation.parts.items()
    }
    own = evaluation.summarize(results, reference_dir)
    status = judge_status([result.get("judge") for result in results.values()], skipped)
    if status.startswith(("incomplete", "failed")):
        log.warning("%s: judge %s", out_dir, status)
    summary = {
        "benchmark": benchmark,
        **({} if settings.limit is None else {"limit": settings.limit}),  # a smoke check of the first N items
        "compat": settings.compat.mode,
        "compat_switches": settings.compat.at("eval"),
        **own,
        "judge": {"status": status, **own.get("judge", {})},
        "parts": {key: f"{part.name}.json" for key, part in evaluation.parts.items()},
        # what this evaluation cost (the model loaded only when some part was computed); the memory peak is the
        # process's, over everything it evaluated so far
        "cost": {"seconds": round(time.perf_counter() - start, 2), "model_loaded": context.model.loaded,
                 **peak_memory_mb()},
    }
    typed = metrics(summary) if metrics else {}
    intervals = None
    if metrics and evaluation.resample is not None and settings.bootstrap.resamples:
        intervals = add_intervals({**summary, "metrics": typed}, results, reference_dir, evaluation.resample,
                                  metrics, settings.bootstrap, out_dir, summary_file, main)
    summary = {"schema_version": SCHEMA_VERSION, **summary, "metrics": typed, "bootstrap": intervals,
               "provenance": {**provenance(), "compat": settings.compat.mode,
                              "compat_switches": settings.compat.at("eval"),
                              "data": {key: part.data_hash for key, part in evaluation.parts.items()},
                              "weights": model}}
    if main:
        atomic_write_json(out_dir / summary_file, summary)
        write_selection(summary, results, reference_dir, evaluation, metrics, settings, out_dir / selection_file(
            summary_file))
    return summary


def write_selection(summary: dict[str, Any], results: Mapping[str, dict[str, Any]], reference_dir: Path | None,
                    evaluation: Evaluation, metrics: Callable[[dict[str, Any]], dict[str, Any]] | None,
                    settings: EvalSettings, path: Path) -> None:
    """The metrics on the validation and on the reported units (``unlearning.evaluation.selection``), for choosing
    a checkpoint without reading the reported units; a file saying why not when the benchmark names no units."""
    if not settings.selection.validation_fraction:
        path.unlink(missing_ok=True)  # an earlier split's numbers never outlive the setting
        return
    if metrics is None or evaluation.resample is None:
        atomic_write_json(path, {"available": False, "reason": "its evaluation names no unit of independence per "
                                 "sample (no Evaluation.resample), so no validation split can be held out"})
        return
    try:
        split = split_metrics(summary, results, reference_dir, evaluation.resample, metrics, settings.selection,
                              settings.bootstrap)
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as error:  # never the evaluation's end
        log.warning("%s: no validation split (%s: %s)", path, type(error).__name__, error)
        atomic_write_json(path, {"available": False, "reason": f"its split metrics failed ({error})"})
        return
    atomic_write_json(path, {"available": True, **split})
