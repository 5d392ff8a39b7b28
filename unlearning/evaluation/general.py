"""General-capability evaluations (MME, POPE, ...) that a benchmark attaches to its own, found by name.

Each lives in the ``eval`` package as ``eval/<name>.py`` and registers an object with its settings class,
its built-in (offline) data writer, its questions and its scores; the engine generates the answers. A
benchmark config lists the ones it reports (``general_evals``) and ``eval.general.<name>`` holds their
settings. All of them form one evaluation part, ``eval/general.json``. An evaluation graded by the LLM judge
(``judged``) gets the engine's judge (None when none is configured) and reports its counts as ``judge``; the part
sums them, so the summary's judge status and the retry of failed requests cover it like any judged part.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearning.data.examples import Example
from unlearning.evaluation.judge.judgments import add_counts
from unlearning.evaluation.runner import EvalContext, Part, first
from unlearning.inference.answers import generate_answers
from unlearning.registry import Registry

log = logging.getLogger(__name__)

FILE_VERSION = 2


@dataclass(frozen=True)
class GeneralEval:
    """One general evaluation: its settings class (a dataclass with ``data_dir``, ``builtin_dir`` where the
    built-in data is written, and ``max_new_tokens``), its built-in data writer, its questions (the release's
    items and the prompt to answer for each) and its scores (with ``accuracy``, 0-1, over all questions, or None
    when it cannot be had: a judged evaluation without a judge). ``judged``: ``score`` also takes the judge and
    the accelerator, ``score(items, answers, judge, accelerator)``."""

    settings: type
    write_builtin: Callable[[Path], Path]
    questions: Callable[[Any], tuple[Sequence[Any], list[Example]]]
    score: Callable[..., dict[str, Any]]
    judged: bool = False


GENERAL_EVALS: Registry[GeneralEval] = Registry("general evaluation")


def general_eval(name: str) -> GeneralEval:
    """Import ``eval.<name>`` (which registers it) and return it."""
    return GENERAL_EVALS.find(name, f"eval.{name}")


def general_settings(names: Sequence[str], configs: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """Each listed evaluation's typed settings (``eval.general.<name>``); none when ``eval.general`` is null."""
    if not configs:
        return {}
    out = {}
    for name in names:
        if name not in configs:
            raise ValueError(f"the benchmark reports {name!r} but eval.general has no settings for it")
        evaluation = general_eval(name)
        try:
            out[name] = evaluation.settings(**configs[name])
        except TypeError as error:
            raise ValueError(f"eval.general.{name}: {error}") from error
    return out


def ensure_general_data(settings: Mapping[str, Any], on_main_first: Callable[[Callable[[], None]], None],
                        ensure_data: Callable[..., None]) -> None:
    """Write each evaluation's built-in data the first time its built-in folder is used."""
    for name, values in settings.items():
        if values.builtin_dir:
            on_main_first(lambda name=name, values=values: ensure_data(
                Path(values.data_dir), Path(values.builtin_dir), general_eval(name).write_builtin, {}, name.upper()))


def general_part(settings: Mapping[str, Any], batch_size: int, judge: Mapping[str, Any] | None = None,
                 limit: int | None = None) -> Part:
    """One part running every configured general evaluation on the model (its questions are read here, before
    any model loads, so a missing file stops the evaluation early and the part's fingerprint covers them).
    ``judge``: what judged numbers depend on (``EvalSettings.judge_fingerprint``), in the fingerprint when a judged
    evaluation is configured, so configuring a judge later recomputes the part. ``limit`` (``eval.limit``): each
    evaluation's first questions only, a smoke check (its scores then rest on those)."""
    questions = {name: _first(general_eval(name).questions(values), limit, name)
                 for name, values in settings.items()}
    judged = any(general_eval(name).judged for name in settings)

    def compute(context: EvalContext) -> dict[str, Any]:
        model, collator = context.model.get()
        results = {}
        for name, values in settings.items():
            items, prompts = questions[name]
            answers = generate_answers(model, collator, prompts, batch_size, values.max_new_tokens,
                                       context.accelerator, desc=name)
            evaluation = general_eval(name)
            results[name] = (evaluation.score(items, answers, context.judge, context.accelerator)
                             if evaluation.judged else evaluation.score(items, answers))
        counts = add_counts([result.get("judge") for result in results.values()])
        if counts is not None:
            results["judge"] = counts
        return results

    fingerprint = {"version": FILE_VERSION, **{name: dataclasses.asdict(v) for name, v in settings.items()}}
    if judged:
        fingerprint["judge"] = judge
    return Part("general", fingerprint, compute, data={name: prompts for name, (_, prompts) in questions.items()})


def _first(questions: tuple[Sequence[Any], list[Example]], limit: int | None, name: str
           ) -> tuple[Sequence[Any], list[Example]]:
    """An evaluation's first ``limit`` items and their prompts (a list of items keeps its attributes: the subset
    drawn, a grading template)."""
    items, prompts = questions
    if len(items) != len(prompts):
        raise ValueError(f"general evaluation {name!r}: {len(items)} items but {len(prompts)} prompts")
    return first(items, limit), list(first(prompts, limit))


def general_results(results: Mapping[str, Any]) -> dict[str, Any] | None:
    """The general evaluations' results among an evaluation's part results (each by name, without the part's
    fingerprint and judge counts); None when none ran."""
    general = results.get("general")
    if not general:
        return None
    return {name: value for name, value in general.items() if name not in ("fingerprint", "judge")} or None


def mean_accuracy(general: Mapping[str, Any] | None, names: Sequence[str] | None = None) -> float | None:
    """The mean of the named general evaluations' overall accuracies (all of them when ``names`` is None); one
    without an accuracy (a judged one without a judge) is left out."""
    if not general:
        return None
    accuracies = [value["accuracy"] for name, value in general.items()
                  if (names is None or name in names) and value.get("accuracy") is not None]
    return sum(accuracies) / len(accuracies) if accuracies else None
