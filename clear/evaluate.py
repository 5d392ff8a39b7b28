"""CLEAR's evaluation: the authors' six tasks (config/mm/eval.yaml), one cached part each.

forget / retain: the forget split's and the retain set's captions (``forgetXX_perturbed``, ``retain_perturbed``),
truth ratio against the paraphrased and perturbed captions; forget_facerec / retain_facerec: the same images asked
for the person's name, against other names; real_faces (names of real people) and real_world (questions about
real images), against their options. Per task one batched generation pass and one teacher-forced pass over every
candidate answer. Forget quality and JS compare the forget captions' truth ratios with the retain model's (the
reference run's evaluation of the same part).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clear import metrics
from clear.data import FORGET_TASKS, TASKS, Clear, Item
from fiubench.metrics import forget_quality
from unlearning.compat import Compat
from unlearning.evaluation.intervals import Resampler
from unlearning.evaluation.metrics.stats import ks_forget_quality
from unlearning.evaluation.metrics.text import rouge_1_recall, rouge_l_recall
from unlearning.evaluation.runner import EvalContext, EvalSettings, Evaluation, Part, reference_result
from unlearning.inference.answers import generate_answers, score_answers
from unlearning.inference.decoding import Decoding

FILE_VERSION = 1
ORIGINAL_ROWS = 300  # config/mm/eval.yaml:39 ds_size: the first 300 rows of each task (compat first_300_rows)
STRATA = {"forget": "forget", "forget_facerec": "forget", "retain": "retain", "retain_facerec": "retain",
          "real_faces": "real_faces", "real_world": "real_world"}  # the same persons are drawn in both of a pair


@dataclasses.dataclass(frozen=True)
class TaskSettings:
    task: str
    batch_size: int
    decoding: Decoding
    pooled_perturbed_loss: bool  # compat: the original's truth ratio against the task's mean perturbed NLL
    generation_without_image: bool  # compat: the original generated from the decoded text, the image dropped

    def __post_init__(self) -> None:
        if self.decoding.n != 1:
            raise ValueError(f"CLEAR scores one answer per question: eval.decoding.n must be 1, got "
                             f"{self.decoding.n}")


def evaluation(data: Clear, settings: EvalSettings, forget_split: str) -> Evaluation:
    """The six parts of one model's CLEAR evaluation; unknown splits and bad rows fail here, before any model
    loads."""
    compat = settings.compat
    if compat.first_300_rows:
        data = Clear(data.data_dir, seed=data.seed, max_rows=ORIGINAL_ROWS)
    data.check_disjoint(forget_split)
    parts: dict[str, Part] = {}
    for task in TASKS:
        items = list(settings.limited(data.items(task, forget_split)))  # eval.limit: each task's first rows
        task_settings = TaskSettings(task, settings.batch_size, settings.decoding, compat.pooled_perturbed_loss,
                                     compat.generation_without_image)
        parts[task] = Part(task, {"version": FILE_VERSION, "task": task, "n": len(items),
                                  "decoding": dataclasses.asdict(settings.decoding)},
                           lambda context, s=task_settings, items=items: evaluate_task(items, s, context),
                           data=items)

    def summarize(results: Mapping[str, dict[str, Any]], reference_dir: Path | None) -> dict[str, Any]:
        return summarize_run(results, reference_dir, parts["forget"], compat, forget_split)

    def resample(results: Mapping[str, dict[str, Any]], reference_dir: Path | None, resampler: Resampler
                 ) -> dict[str, np.ndarray]:
        return resample_run(results, reference_dir, resampler, parts["forget"], compat)

    return Evaluation(parts, summarize, resample)


def evaluate_task(items: Sequence[Item], settings: TaskSettings, context: EvalContext) -> dict[str, Any]:
    net, collator = context.model.get()
    task, batch_size, accelerator = settings.task, settings.batch_size, context.accelerator
    generations = generate_answers(net, collator, [item.example(with_image=not settings.generation_without_image)
                                                   for item in items],
                                   batch_size, settings.decoding, accelerator, desc=f"{task} generate")
    requests, spans = [], []
    for item in items:
        start = len(requests)
        requests.append(item.example())
        if item.base_answer != item.answer:  # the paraphrased caption; facerec and real tasks compare the answer
            requests.append(item.example(answer=item.base_answer))
        requests += [item.example(answer=p) for p in item.perturbed]
        spans.append((start, len(requests)))
    scores = score_answers(net, collator, requests, batch_size, accelerator, desc=f"{task} score")
    answer_nlls, base_nlls, perturbed_nlls = [], [], []
    for item, (start, end) in zip(items, spans, strict=True):
        first_perturbed = start + (2 if item.base_answer != item.answer else 1)
        answer_nlls.append(scores[start].mean_nll)
        base_nlls.append(scores[first_perturbed - 1].mean_nll)
        perturbed_nlls.append([score.mean_nll for score in scores[first_perturbed:end]])
    ratios = metrics.truth_ratios(base_nlls, perturbed_nlls, pooled=settings.pooled_perturbed_loss)
    records = []
    for item, generation, nll, base, perturbed, ratio in zip(items, generations, answer_nlls, base_nlls,
                                                             perturbed_nlls, ratios, strict=True):
        records.append({
            "uid": item.uid, "unit": item.unit, "question": item.question, "answer": item.answer,
            "generation": generation,
            "rougeL_recall": rouge_l_recall(item.answer, generation),
            "rouge1_recall": rouge_1_recall(item.answer, generation),
            "answer_nll": nll, "base_nll": base, "perturbed_nll": perturbed,
            "probability": metrics.task_probability(task, nll, perturbed),
            "truth_ratio": ratio,
        })
    return {"task": task, "aggregate": metrics.aggregate_task(records, task), "samples": records}


def summarize_run(results: Mapping[str, dict[str, Any]], reference_dir: Path | None, forget_part: Part,
                  compat: Compat, forget_split: str) -> dict[str, Any]:
    tasks = {task: results[task]["aggregate"] for task in TASKS}
    return {
        "forget_split": forget_split,
        "tasks": tasks,
        "model_utility": metrics.model_utility(tasks),
        **_against_reference(results["forget"], reference_dir, forget_part, compat),
    }


def _against_reference(forget_result: dict[str, Any], reference_dir: Path | None, forget_part: Part,
                       compat: Compat) -> dict[str, Any]:
    """Forget quality (KS) and JS against the retain model's evaluation of the same forget rows."""
    stored, note = reference_result(reference_dir, forget_part, compat)
    if stored is None:
        return {"forget_quality": None, "js": None, "forget_quality_note": note}
    value = forget_quality(forget_result["samples"], stored["samples"])
    theirs = {r["uid"]: r["truth_ratio"] for r in stored["samples"]}
    ours = forget_result["samples"]
    return {"forget_quality": value, "forget_quality_log10": math.log10(max(value, 1e-300)),
            "js": metrics.js_distance([r["truth_ratio"] for r in ours], [theirs[r["uid"]] for r in ours]),
            "forget_quality_reference": str(reference_dir / f"{forget_part.name}.json")}


def resample_run(results: Mapping[str, dict[str, Any]], reference_dir: Path | None, resampler: Resampler,
                 forget_part: Part, compat: Compat) -> dict[str, np.ndarray]:
    """Bootstrap replicates of the summary fields the table reads, persons (a real-world row each) resampled within
    their stratum; model utility, forget quality and JS recomputed inside each resample.

    Under the pooled truth ratio (compat) each row's stored ratio is kept as it is: the pool is not redrawn."""
    out: dict[str, np.ndarray] = {}
    for task in TASKS:
        samples = results[task]["samples"]
        units, stratum = [s["unit"] for s in samples], STRATA[task]
        out[f"tasks.{task}.rougeL_recall"] = resampler.mean(stratum, units, [s["rougeL_recall"] for s in samples])
        out[f"tasks.{task}.probability"] = resampler.mean(stratum, units, [s["probability"] for s in samples])
        ratios = np.array([s["truth_ratio"] for s in samples], dtype=float)
        folded = np.minimum(ratios, 1 / ratios) if task in FORGET_TASKS else np.maximum(0.0, 1 - ratios)
        out[f"tasks.{task}.truth_ratio"] = resampler.mean(stratum, units, list(folded))
    stacked = np.stack([out[f"tasks.{task}.{term}"] for task in metrics.UTILITY_TASKS
                        for term in metrics.UTILITY_TERMS])
    with np.errstate(divide="ignore"):
        out["model_utility"] = np.where(np.any(stacked <= 0, axis=0), 0.0, len(stacked) / np.sum(1 / stacked, axis=0))
    stored, _ = reference_result(reference_dir, forget_part, compat)
    samples = results["forget"]["samples"]
    if stored is not None and {r["uid"] for r in stored["samples"]} == {s["uid"] for s in samples}:
        theirs = {r["uid"]: r["truth_ratio"] for r in stored["samples"]}
        ours = np.array([s["truth_ratio"] for s in samples])
        reference = np.array([theirs[s["uid"]] for s in samples])
        units = [s["unit"] for s in samples]
        def ks(drawn: np.ndarray) -> float:  # a held-out half may draw no forget person: undefined there
            return ks_forget_quality(ours[drawn], reference[drawn]) if len(drawn) else math.nan

        def js(drawn: np.ndarray) -> float:
            return metrics.js_distance(ours[drawn], reference[drawn]) if len(drawn) else math.nan

        values = resampler.each("forget", units, ks)
        out["forget_quality"] = values
        out["forget_quality_log10"] = np.log10(np.maximum(values, 1e-300))
        out["js"] = resampler.each("forget", units, js)
    return out
