"""MLLMU-Bench's evaluation of one model on its four sets, each per modality (image+text and text-only).

Sets: forget (``forget_r``, original images), test (the same profiles from ``Test_Set``, a transformed image
drawn per profile with the seed), retain (``retain_{100-r}``) and celebrity (``Retain_Set``). Tasks:
classification (few-shot), cloze (few-shot) and generation (zero-shot, judged for factuality when a judge
is configured). Each set's per-question results are written to ``eval/`` and reused when their settings match.

Few-shot demonstrations are earlier chat turns (``Example.shots``). By default each evaluated profile gets
its own seeded draw of profiles from ``Full_Set`` outside the evaluated set, and the demonstrations are
dropped from the end until the prompt fits the model's context; the compat switch ``few_shot_from_evaluated_set``
draws them once per set and task from the evaluated profiles themselves and leaves those profiles unscored, as the
original did.
The engine's runner caches each set as a part in ``eval/`` and writes the summary.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from accelerate import Accelerator

from mllmu import metrics
from mllmu.data import MODALITIES, Item, MllmuBench, Profile
from mllmu.prompts import classification_prompt, cloze_prompt, generation_prompt
from unlearning.compat import Compat
from unlearning.data.collator import ChatCollator
from unlearning.data.examples import DataError, Example
from unlearning.evaluation.intervals import Resampler
from unlearning.evaluation.judge.client import Judge
from unlearning.evaluation.judge.judgments import judge_records
from unlearning.evaluation.runner import EvalContext, EvalSettings, Evaluation, Part
from unlearning.inference.answers import choice_token_logprobs, generate_answers, score_answers
from unlearning.inference.decoding import Decoding

log = logging.getLogger(__name__)

FILE_VERSION = 3  # 3: ROUGE-1 and ROUGE-2 per generation
SETS = ("forget", "test", "retain", "celebrity")
FICTITIOUS_SETS = ("forget", "test", "retain")  # profiles of Full_Set: few-shot draws must avoid them


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """MLLMU-Bench's evaluation knobs (``benchmark.eval_options`` in the config)."""

    shots: Mapping[str, int] = dataclasses.field(default_factory=lambda: {"classification": 1, "cloze": 2})
    classification_scoring: str = "loglik"  # loglik | generate
    context_length: int | None = None  # None: the model's max_position_embeddings
    seed: int = 0

    def __post_init__(self) -> None:
        if self.classification_scoring not in ("loglik", "generate"):
            raise ValueError(f"classification_scoring must be 'loglik' or 'generate', got "
                             f"{self.classification_scoring!r}")


def eval_sets(data: MllmuBench, forget_split: str, seed: int) -> dict[str, list[Profile]]:
    """The four evaluation sets; each Test_Set profile shows one of its transformed images, drawn with the seed."""
    forget = list(data.profiles(forget_split))
    by_id = {p.id: p for p in data.profiles("Test_Set")}
    missing = [p.id for p in forget if p.id not in by_id]
    if missing:
        raise DataError(f"{data.data_dir / 'Test_Set'}: no rows for forget profiles {missing[:5]} of {forget_split}")
    test = [dataclasses.replace(by_id[p.id], image=random.Random(f"{seed}/test/{p.id}").choice(by_id[p.id].images))
            for p in forget]
    return {"forget": forget, "test": test, "retain": list(data.profiles(data.retain_split(forget_split))),
            "celebrity": list(data.profiles("Retain_Set"))}


def _prompt(item: Item) -> str:
    if item.task == "classification":
        return classification_prompt(item.question, item.options)
    if item.task == "cloze":
        return cloze_prompt(item.question)
    return generation_prompt(item.question, item.modality)


def _turn(profile: Profile, item: Item, answer: str | None = None, shots: tuple[Example, ...] = ()) -> Example:
    image = profile.image if item.modality == "image_text" else None
    return Example(_prompt(item), item.answer if answer is None else answer, image,
                   uid=f"{profile.id}/{item.task}/{item.modality}/{item.index}", shots=shots)


def _shot_turns(shot_profiles: Sequence[Profile], task: str, modality: str) -> tuple[Example, ...]:
    return tuple(_turn(p, item) for p in shot_profiles for item in p.items_of(task, modality))


class FewShot:
    """Chooses each question's demonstrations and fits them into the model's context."""

    def __init__(self, options: EvalOptions, compat: Compat, pool: Sequence[Profile], collator: ChatCollator,
                 context_limit: int) -> None:
        self.options, self.compat, self.pool = options, compat, list(pool)
        self.collator, self.context_limit = collator, context_limit
        self.n_dropped = 0

    def n_shots(self, set_name: str, task: str) -> int:
        n = int(self.options.shots.get(task, 0))
        if self.compat.zero_shot_celebrity_classification and set_name == "celebrity" and task == "classification":
            return 0
        return n

    def shots_from_evaluated_set(self, set_name: str, task: str, profiles: Sequence[Profile]
                       ) -> tuple[set[str], list[Profile]]:
        """The original's (``few_shot_from_evaluated_set``): one draw per set and task of the evaluated profiles'
        IDs (which are then not scored), the demonstrations being those IDs' Full_Set rows (``--few_shot_data``):
        the original questions and images for the Test_Set, and for the celebrities whatever fictitious profile
        shares the ID (none: no demonstration). The draw happens for zero-shot celebrity classification too, whose
        drawn ID is then skipped all the same (eval.py:263-266 draws before the task decides on demonstrations)."""
        n = min(int(self.options.shots.get(task, 0)), max(len(profiles) - 1, 0))
        drawn = random.Random(f"{self.options.seed}/{set_name}/{task}").sample(list(profiles), n)
        by_id = {p.id: p for p in self.pool}
        shots = [by_id[p.id] for p in drawn if p.id in by_id] if self.n_shots(set_name, task) else []
        return {p.id for p in drawn}, shots

    def default_shots(self, set_name: str, task: str, modality: str, profile: Profile,
                      evaluated_ids: set[str]) -> list[Profile]:
        """Default: a seeded draw per evaluated profile from Full_Set profiles outside the evaluated set."""
        candidates = [p for p in self.pool if set_name not in FICTITIOUS_SETS or p.id not in evaluated_ids]
        rng = random.Random(f"{self.options.seed}/{set_name}/{task}/{modality}/{profile.id}")
        return rng.sample(candidates, min(self.n_shots(set_name, task), len(candidates)))

    def fit(self, example: Example) -> Example:
        """Drop demonstrations from the end until the prompt fits the context (answer room included)."""
        shots = example.shots
        while shots and self._length(dataclasses.replace(example, shots=shots)) > self.context_limit:
            shots = shots[:-1]
            self.n_dropped += 1
        return dataclasses.replace(example, shots=shots)

    def _length(self, example: Example) -> int:
        return self.collator.prompt_length(example)  # images are processed once each, not once per question


def build_questions(set_name: str, profiles: Sequence[Profile], few_shot: FewShot,
                    task: str) -> list[tuple[Profile, Item, Example]]:
    """Every (profile, item, prompt example with its demonstrations) of one task in one set."""
    out = []
    evaluated_ids = {p.id for p in profiles}
    excluded: set[str] = set()
    drawn_shots: list[Profile] = []
    if few_shot.compat.few_shot_from_evaluated_set and few_shot.options.shots.get(task, 0):
        excluded, drawn_shots = few_shot.shots_from_evaluated_set(set_name, task, profiles)
    for profile in profiles:
        if profile.id in excluded:
            continue
        for modality in MODALITIES:
            items = profile.items_of(task, modality)
            if not items:
                continue
            if few_shot.compat.few_shot_from_evaluated_set:
                shot_profiles = drawn_shots
            else:
                shot_profiles = few_shot.default_shots(set_name, task, modality, profile, evaluated_ids)
            shots = _shot_turns(shot_profiles, task, modality)
            out += [(profile, item, few_shot.fit(_turn(profile, item, shots=shots))) for item in items]
    return out


def _record(profile: Profile, item: Item, example: Example) -> dict[str, Any]:
    return {"profile": profile.id, "task": item.task, "modality": item.modality, "index": item.index,
            "question": item.question, "answer": item.answer, "n_shots": len(example.shots)}


def evaluate_set(
    set_name: str, profiles: Sequence[Profile], few_shot: FewShot, model: Any, collator: ChatCollator,
    settings: SetSettings, judge: Judge | None, accelerator: Accelerator | None,
) -> list[dict[str, Any]]:
    compat, options = few_shot.compat, few_shot.options
    batch_size, decoding = settings.batch_size, settings.decoding
    records: list[dict[str, Any]] = []

    questions = build_questions(set_name, profiles, few_shot, "classification")
    if options.classification_scoring == "loglik" and not compat.classification_by_generation:
        letter_scores = score_letters(model, collator, [(item, ex) for _, item, ex in questions], batch_size,
                                      accelerator, desc=f"{set_name} classification")
        for (profile, item, ex), letter_logprobs in zip(questions, letter_scores, strict=True):
            prediction = metrics.choice_by_likelihood(letter_logprobs)
            records.append({**_record(profile, item, ex), "scoring": "loglik", "letter_logprobs": letter_logprobs,
                            "prediction": prediction, "correct": prediction == item.answer})
    else:
        answers = generate_answers(model, collator, [ex for *_, ex in questions], batch_size, decoding,
                                   accelerator, desc=f"{set_name} classification")
        for (profile, item, ex), answer in zip(questions, answers, strict=True):
            prediction = metrics.parse_choice(answer, item.options, compat.first_character_choice)
            records.append({**_record(profile, item, ex), "scoring": "generate", "generation": answer,
                            "prediction": prediction, "correct": prediction == item.answer})

    questions = build_questions(set_name, profiles, few_shot, "cloze")
    answers = generate_answers(model, collator, [ex for *_, ex in questions], batch_size, decoding,
                               accelerator, desc=f"{set_name} cloze")
    for (profile, item, ex), answer in zip(questions, answers, strict=True):
        records.append({**_record(profile, item, ex), "generation": answer,
                        "correct": metrics.cloze_correct(item.answer, answer)})

    questions = build_questions(set_name, profiles, few_shot, "generation")
    answers = generate_answers(model, collator, [ex for *_, ex in questions], batch_size, decoding,
                               accelerator, desc=f"{set_name} generation")
    generation_records = []
    for (profile, item, ex), answer in zip(questions, answers, strict=True):
        generation_records.append({**_record(profile, item, ex), "generation": answer,
                                   **metrics.rouge_f(item.answer, answer),
                                   "bleu": metrics.bleu(item.answer, answer)})
    if judge is not None:
        _judge(judge, generation_records, compat, accelerator)
    return records + generation_records


def score_letters(
    model: Any, collator: ChatCollator, questions: Sequence[tuple[Item, Example]], batch_size: int,
    accelerator: Accelerator | None, desc: str, shared_prefix: bool = True,
) -> list[dict[str, float]]:
    """log p(letter | prompt) of each option letter, the answer's first token that differs between the
    options (after a shared prefix such as a space), one forward pass per question.

    Where the options' targets differ in more than one token, those questions fall back to the
    log-likelihood of each whole answer target (letter + end of turn), one pass per option. ``shared_prefix``:
    the engine's image-prefix sharing (``unlearning.inference.answers``; off is faster for tiny images).
    """
    groups: dict[tuple[int, tuple[int, ...]] | None, list[int]] = {}
    for position, (item, example) in enumerate(questions):
        targets = [collator.target_text(dataclasses.replace(example, answer=letter))[1] for letter, _ in item.options]
        groups.setdefault(_single_token_choice(targets), []).append(position)
    out: list[dict[str, float]] = [{} for _ in questions]
    for key, positions in groups.items():
        if key is not None:
            offset, tokens = key
            requests = [dataclasses.replace(questions[p][1], answer=questions[p][0].options[0][0]) for p in positions]
            values = choice_token_logprobs(model, collator, requests, tokens, offset, batch_size, accelerator, desc,
                                           shared_prefix)
            for position, row in zip(positions, values, strict=True):
                out[position] = dict(zip([letter for letter, _ in questions[position][0].options], row, strict=True))
            continue
        requests = [dataclasses.replace(questions[p][1], answer=letter) for p in positions
                    for letter, _ in questions[p][0].options]
        scores = iter(score_answers(model, collator, requests, batch_size, accelerator, desc, shared_prefix))
        for position in positions:
            out[position] = {letter: sum(next(scores).token_logprobs) for letter, _ in questions[position][0].options}
    return out


def _single_token_choice(targets: Sequence[Sequence[int]]) -> tuple[int, tuple[int, ...]] | None:
    """(offset, tokens) when the targets share a prefix, differ in exactly one distinct token each, and agree
    after it; None otherwise."""
    offset = 0
    while all(len(t) > offset for t in targets) and len({t[offset] for t in targets}) == 1:
        offset += 1
    if not all(len(t) > offset for t in targets):
        return None
    tokens = tuple(t[offset] for t in targets)
    if len(set(tokens)) != len(tokens) or len({tuple(t[offset + 1:]) for t in targets}) != 1:
        return None
    return offset, tokens


def _judge(judge: Judge, records: list[dict[str, Any]], compat: Compat,
           accelerator: Accelerator | None) -> None:
    prompts = [metrics.judge_prompt(r["profile"], r["question"], r["generation"], r["answer"]) for r in records]
    as_original = compat.original_factuality_parse
    judge_records(judge, records, prompts, "factuality", lambda reply: metrics.parse_factuality(reply, as_original),
                  accelerator)


def context_limit(model: Any, options: EvalOptions, max_new_tokens: int) -> int:
    length = options.context_length
    if length is None:
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        length = getattr(config, "max_position_embeddings", None)
    if not length:
        raise ValueError("the model config has no max_position_embeddings; set benchmark.eval_options.context_length")
    return int(length) - max_new_tokens


@dataclasses.dataclass(frozen=True)
class SetSettings:
    """One set's evaluation: generation and scoring batch size and decoding."""

    batch_size: int
    decoding: Decoding

    def __post_init__(self) -> None:
        if self.decoding.n != 1:
            raise ValueError(f"MLLMU-Bench scores one answer per question: eval.decoding.n must be 1, got "
                             f"{self.decoding.n}")


def evaluation(data: MllmuBench, options: EvalOptions, settings: EvalSettings, forget_split: str) -> Evaluation:
    """The four sets as parts (``<forget_split>``, ``test_<forget_split>``, ``retain_r``, ``celebrity``); unknown
    splits and missing sets fail here, before any model loads."""
    compat = settings.compat
    set_settings = SetSettings(settings.batch_size, settings.decoding)
    sets = {name: list(settings.limited(profiles))  # eval.limit: each set's first profiles
            for name, profiles in eval_sets(data, forget_split, options.seed).items()}
    files = {"forget": forget_split, "test": f"test_{forget_split}", "retain": data.retain_split(forget_split),
             "celebrity": "celebrity"}
    fingerprint = {"version": FILE_VERSION, "forget_split": forget_split,
                   "decoding": dataclasses.asdict(settings.decoding), "options": dataclasses.asdict(options),
                   "judge": settings.judge_fingerprint()}

    def compute(set_name: str, context: EvalContext) -> dict[str, Any]:
        net, collator = context.model.get()
        few_shot = FewShot(options, compat, data.profiles("Full_Set"), collator,
                           context_limit(net, options, settings.decoding.max_new_tokens))
        records = evaluate_set(set_name, sets[set_name], few_shot, net, collator, set_settings, context.judge,
                               context.accelerator)
        if few_shot.n_dropped:
            log.info("%s: %d demonstrations dropped to fit the context", set_name, few_shot.n_dropped)
        aggregated = metrics.aggregate(records, settings.judge.max_failed, compat.factuality_drops_unscored,
                                        compat.factuality_over_both_modalities)
        return {"set": set_name, "aggregate": aggregated, "judge": metrics.part_judge_counts(aggregated),
                "n_profiles": len(sets[set_name]), "shots_dropped": few_shot.n_dropped, "samples": records}

    pool = data.profiles("Full_Set")  # few-shot demonstrations are drawn from it: part of what a set's scores rest on
    parts = {name: Part(files[name], {**fingerprint, "set": name},
                        lambda context, name=name: compute(name, context), data=[sets[name], pool])
             for name in SETS}

    def summarize(results: Mapping[str, dict[str, Any]], reference_dir: Path | None) -> dict[str, Any]:
        return {"forget_split": forget_split, "retain_split": data.retain_split(forget_split),
                "sets": {name: result["aggregate"] for name, result in results.items()},
                "n_profiles": {name: result["n_profiles"] for name, result in results.items()}}

    def resample(results: Mapping[str, dict[str, Any]], reference_dir: Path | None, resampler: Resampler
                 ) -> dict[str, np.ndarray]:
        return resample_sets(results, resampler, compat)

    return Evaluation(parts, summarize, resample)


# The unit of independence is the profile, drawn within its group: the forget and test sets ask about the same
# fictitious profiles (test with other images), so one draw of forget profiles serves both.
STRATA = {"forget": "forget", "test": "forget", "retain": "retain", "celebrity": "celebrity"}
MEAN_METRICS = {"classification_acc": "classification", "cloze_acc": "cloze", "rouge1_f": "generation",
                "rouge2_f": "generation", "rougeL_f": "generation"}


def resample_sets(results: Mapping[str, dict[str, Any]], resampler: Resampler, compat: Compat
                  ) -> dict[str, np.ndarray]:
    """Bootstrap replicates of every set's per-modality metrics, profiles resampled (``STRATA``); factuality
    counted as its point estimate counts it (failed requests left out, unparseable replies the rubric's lowest
    score or left out, one mean over both modalities under the original's switch)."""
    out: dict[str, np.ndarray] = {}
    for name, result in results.items():
        if name not in STRATA:
            continue
        stratum, records = STRATA[name], result["samples"]
        for modality in MODALITIES:
            values = result["aggregate"][modality]
            for key, task in MEAN_METRICS.items():
                of = [r for r in records if r["modality"] == modality and r["task"] == task]
                if values.get(key) is None or not of:
                    continue
                numbers = [float(r["correct"]) if task != "generation" else r[key] for r in of]
                out[f"sets.{name}.{modality}.{key}"] = resampler.mean(stratum, [r["profile"] for r in of], numbers)
            if values.get("factuality") is None:
                continue
            judged = [r for r in records if r["task"] == "generation" and "judge_failed" in r
                      and (compat.factuality_over_both_modalities or r["modality"] == modality)]
            scores = [_factuality_score(r, compat.factuality_drops_unscored) for r in judged]
            out[f"sets.{name}.{modality}.factuality"] = resampler.mean(stratum, [r["profile"] for r in judged],
                                                                         scores)
    return out


def _factuality_score(record: Mapping[str, Any], drop_unscored: bool) -> float | None:
    """A judged generation's part in the factuality mean (None: left out, as ``metrics.factuality_mean`` does)."""
    if record["judge_failed"]:
        return None
    if record["factuality"] is None:
        return None if drop_unscored else metrics.FACTUALITY_RANGE[0]
    return record["factuality"]
