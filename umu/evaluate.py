"""UMU-Bench's evaluation of one model: the forget, retain and real-person sets, each question asked with the image
(multimodal) and as text only (unimodal), side by side (``eval.py:main``, ``:738-801``).

Every question is asked zero-shot, as ``eval.py`` asks it. Classification is scored by likelihood by default (the
likeliest option text as the answer, MLLMU-Bench's scoring with the options' texts as the candidates), or by a greedy
answer mapped to the nearest option; cloze and generation by a greedy answer. Each set is a part of the engine's
runner (``eval/<set>.json``, reused while its settings match); confidence intervals resample profiles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from accelerate import Accelerator

from mllmu.data import Item
from mllmu.evaluate import score_letters
from umu import metrics
from umu.data import REAL_SETS, Profile, UmuBench
from umu.prompts import classification_prompt, cloze_prompt, generation_prompt
from unlearning.compat import Compat
from unlearning.data.collator import ChatCollator
from unlearning.data.examples import Example
from unlearning.evaluation.intervals import Resampler
from unlearning.evaluation.runner import EvalContext, EvalSettings, Evaluation, Part
from unlearning.inference.answers import generate_answers

FILE_VERSION = 1
SETS = ("forget", "retain", "real")
CONTRAHARMONIC = {"forget": True, "retain": False, "real": False}  # eval.py:665-670 (real: "retain_shared" mode)
SCORINGS = ("loglik", "generate")


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """UMU-Bench's evaluation knobs (``benchmark.eval_options``)."""

    classification_scoring: str = "loglik"  # loglik: likeliest option text; generate: nearest option to a greedy answer
    shared_prefix: bool = True  # the engine's image-prefix sharing; off is faster on the tiny model's small images

    def __post_init__(self) -> None:
        if self.classification_scoring not in SCORINGS:
            raise ValueError(f"benchmark.eval_options.classification_scoring must be one of {SCORINGS}, got "
                             f"{self.classification_scoring!r}")


def prompt(item: Item) -> str:
    if item.task == "classification":
        return classification_prompt(item.question, [text for _, text in item.options])
    if item.task == "cloze":
        return cloze_prompt(item.question)
    return generation_prompt(item.question, item.modality)


def correct_option(profile: Profile, item: Item, compat: Compat) -> str:
    """The correct option's text; under ``multimodal_answer_from_unimodal`` a multimodal question is graded by
    its unimodal twin's letter (``eval.py:142``)."""
    letter = item.answer
    if compat.multimodal_answer_from_unimodal and item.modality == "image_text":
        letter = next(t.answer for t in profile.items_of("classification", "text") if t.index == item.index)
    return dict(item.options)[letter]


def target(profile: Profile, item: Item, compat: Compat) -> str:
    """What the question's answer is scored against."""
    if item.task == "classification":
        return correct_option(profile, item, compat)
    if item.task == "cloze":
        return metrics.cloze_truth(item.answer, compat.cloze_answer_to_first_period)
    return item.answer


def questions(profiles: Sequence[Profile], task: str, compat: Compat) -> list[tuple[Profile, Item, Example]]:
    """Every (profile, item, example) of one task, multimodal before unimodal per profile (``eval.py``'s order)."""
    out = []
    for profile in profiles:
        for modality in ("image_text", "text"):
            for item in profile.items_of(task, modality):
                example = Example(prompt(item), target(profile, item, compat),
                                  profile.image if modality == "image_text" else None,
                                  uid=f"{profile.id}/{task}/{modality}/{item.index}")
                out.append((profile, item, example))
    return out


def _record(profile: Profile, item: Item, example: Example) -> dict[str, Any]:
    return {"profile": profile.id, "task": item.task, "modality": item.modality, "index": item.index,
            "question": item.question, "answer": example.answer}


def classify(set_name: str, items: Sequence[tuple[Profile, Item, Example]], model: Any, collator: ChatCollator,
             settings: EvalSettings, options: EvalOptions, accelerator: Accelerator | None) -> list[dict[str, Any]]:
    """Classification records: the chosen option's text and whether it is the correct one."""
    compat = settings.compat
    records = []
    if options.classification_scoring == "loglik" and not compat.exact_option_match:
        by_text = [(dataclasses.replace(item, options=tuple((t, t) for _, t in item.options)), example)
                   for _, item, example in items]
        scores = score_letters(model, collator, by_text, settings.batch_size, accelerator,
                               desc=f"{set_name} classification", shared_prefix=options.shared_prefix)
        for (profile, item, example), option_logprobs in zip(items, scores, strict=True):
            prediction = metrics.choice_by_likelihood(option_logprobs)
            records.append({**_record(profile, item, example), "scoring": "loglik", "option_logprobs": option_logprobs,
                            "prediction": prediction, "correct": prediction == example.answer})
        return records
    answers = generate_answers(model, collator, [ex for *_, ex in items], settings.batch_size, settings.decoding,
                               accelerator, desc=f"{set_name} classification", shared_prefix=options.shared_prefix)
    exact = compat.exact_option_match and set_name != "real"  # eval.py:158-161: the real set maps to an option
    for (profile, item, example), answer in zip(items, answers, strict=True):
        texts = [text for _, text in item.options]
        prediction = answer.strip() if exact else metrics.nearest_option(answer.strip(), texts)
        records.append({**_record(profile, item, example), "scoring": "exact" if exact else "nearest",
                        "generation": answer, "prediction": prediction, "correct": prediction == example.answer})
    return records


def evaluate_set(set_name: str, profiles: Sequence[Profile], model: Any, collator: ChatCollator,
                 settings: EvalSettings, options: EvalOptions, accelerator: Accelerator | None
                 ) -> list[dict[str, Any]]:
    """One set's per-question records: classification, cloze, generation (``eval.py:741-801``)."""
    compat = settings.compat
    records = classify(set_name, questions(profiles, "classification", compat), model, collator, settings, options,
                       accelerator)
    for task in ("cloze", "generation"):
        items = questions(profiles, task, compat)
        answers = generate_answers(model, collator, [ex for *_, ex in items], settings.batch_size, settings.decoding,
                                   accelerator, desc=f"{set_name} {task}", shared_prefix=options.shared_prefix)
        for (profile, item, example), answer in zip(items, answers, strict=True):
            record = {**_record(profile, item, example), "generation": answer}
            if task == "cloze":
                record["correct"] = metrics.cloze_correct(example.answer, answer)
            else:
                record |= {**metrics.rouge_f(example.answer, answer), "bleu": metrics.bleu(example.answer, answer)}
            records.append(record)
    return records


def evaluation(data: UmuBench, options: EvalOptions, settings: EvalSettings, forget_split: str) -> Evaluation:
    """The three sets as parts (``<forget_split>``, ``retain_{100-r}``, ``real_person``); unknown splits, missing
    folders and malformed rows fail here, before any model loads."""
    if settings.decoding.n != 1:
        raise ValueError(f"UMU-Bench scores one answer per question: eval.decoding.n must be 1, got "
                         f"{settings.decoding.n}")
    retain_split = data.retain_split(forget_split)
    sets = {name: list(settings.limited(profiles))  # eval.limit: each set's first profiles
            for name, profiles in (("forget", data.profiles(forget_split)), ("retain", data.profiles(retain_split)),
                                   ("real", data.profiles(REAL_SETS[0])))}
    for profiles in sets.values():
        for profile in profiles:
            profile.evaluation_items()  # a missing task column is named now
    files = {"forget": forget_split, "retain": retain_split, "real": "real_person"}
    fingerprint = {"version": FILE_VERSION, "forget_split": forget_split,
                   "decoding": dataclasses.asdict(settings.decoding), "options": dataclasses.asdict(options)}

    def compute(set_name: str, context: EvalContext) -> dict[str, Any]:
        net, collator = context.model.get()
        records = evaluate_set(set_name, sets[set_name], net, collator, settings, options, context.accelerator)
        return {"set": set_name, "aggregate": metrics.aggregate(records, CONTRAHARMONIC[set_name]),
                "n_profiles": len(sets[set_name]), "samples": records}

    parts = {name: Part(files[name], {**fingerprint, "set": name},
                        lambda context, name=name: compute(name, context), data=sets[name]) for name in SETS}

    def summarize(results: Mapping[str, dict[str, Any]], reference_dir: Path | None) -> dict[str, Any]:
        return {"forget_split": forget_split, "retain_split": retain_split,
                "sets": {name: result["aggregate"] for name, result in results.items()},
                "n_profiles": {name: result["n_profiles"] for name, result in results.items()}}

    def resample(results: Mapping[str, dict[str, Any]], reference_dir: Path | None, resampler: Resampler
                 ) -> dict[str, np.ndarray]:
        return resample_sets(results, resampler)

    return Evaluation(parts, summarize, resample)


def resample_sets(results: Mapping[str, dict[str, Any]], resampler: Resampler) -> dict[str, np.ndarray]:
    """Bootstrap replicates of every field the table reads, profiles resampled within their set (the unit of
    independence: a profile's questions share its image and facts); paired fields resample pairs."""
    out: dict[str, np.ndarray] = {}
    for name, result in results.items():
        records, stratum = result["samples"], name
        for task in ("classification", "cloze"):
            prefix = f"sets.{name}.{task}"
            for modality in ("image_text", "text"):
                of = [r for r in records if r["task"] == task and r["modality"] == modality]
                if of:
                    out[f"{prefix}.{modality}"] = resampler.mean(stratum, [r["profile"] for r in of],
                                                                 [float(r["correct"]) for r in of])
            paired = metrics.pairs(records, task, "correct")
            if paired:
                units = [p for p, _, _ in paired]
                both_right = [float(a == b == 1) for _, a, b in paired]
                out[f"{prefix}.all_correct"] = resampler.mean(stratum, units, both_right)
                out[f"{prefix}.all_wrong"] = resampler.mean(stratum, units, [float(a == b == 0) for _, a, b in paired])
        gen = [r for r in records if r["task"] == "generation"]
        for modality in ("image_text", "text"):
            of = [r for r in gen if r["modality"] == modality]
            if of:
                out[f"sets.{name}.generation.rougeL_f_{modality}"] = resampler.mean(
                    stratum, [r["profile"] for r in of], [r["rougeL_f"] for r in of])
        paired = metrics.pairs(records, "generation", "rougeL_f")
        if paired:
            out[f"sets.{name}.generation.all_modal_rougeL"] = resampler.mean(
                stratum, [p for p, _, _ in paired],
                [metrics.pair_rouge_l(a, b, CONTRAHARMONIC[name]) for _, a, b in paired])
    return out
