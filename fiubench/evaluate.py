"""FIUBench's evaluation of one model: forget and retain splits, the never-trained holdout, MME/POPE.

Per split, one batched generation pass (plus the paraphrased questions on the forget split, for APE) and
one batched teacher-forced pass scoring the answer, the paraphrased answer and every perturbed answer of
every QA. Each part is written to ``eval/`` with the settings it was computed under and reused when they
match, so re-running only computes what is missing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from eval.general import run_general
from fiubench import metrics
from fiubench.data import FiuBench, FiuQA
from unlearning.evaluate import LazyModel, ModelLoader, cached_result, generate_answers, score_answers
from unlearning.io import atomic_write_json, read_json
from unlearning.metrics.judge import Judge, JudgeScores, build_judge, judge_scores
from unlearning.metrics.membership import attack_auc
from unlearning.metrics.text import keyword_match, rouge_l_recall

log = logging.getLogger(__name__)

FILE_VERSION = 2


def evaluate_run(
    data: FiuBench, load_model: ModelLoader, settings: Mapping[str, Any], out_dir: Path,
    reference_eval_dir: Path | None, accelerator: Accelerator | None,
) -> dict[str, Any]:
    compat = metrics.check_compat(settings.get("compat", "default"))
    model = LazyModel(load_model)
    judge, judge_status = build_judge(settings.get("judge", {}))
    overwrite = bool(settings.get("overwrite", False))
    split_fingerprint = {"version": FILE_VERSION, "max_new_tokens": settings["max_new_tokens"], "compat": compat,
                         "judge": None if judge is None else judge.settings.model}

    results = {}
    for role in metrics.ROLES:
        split = settings[f"{role}_split"]
        results[role] = cached_result(
            out_dir / f"{split}.json", {**split_fingerprint, "split": split}, overwrite,
            lambda split=split, role=role: evaluate_split(data.qas(split), role, model, settings, judge,
                                                          accelerator, split),
            accelerator,
        )
    holdout = data.qas("holdout")
    holdout_result = cached_result(
        out_dir / "holdout.json", {"version": FILE_VERSION, "n": len(holdout)}, overwrite,
        lambda: {"samples": score_membership(holdout, model, settings, accelerator)}, accelerator,
    ) if holdout else None
    general = settings.get("general") or {}
    general_result = cached_result(
        out_dir / "general.json", {"version": FILE_VERSION, **general}, overwrite,
        lambda: run_general(*model.get(), general, settings["batch_size"], accelerator), accelerator,
    ) if general else None

    summary = {
        "benchmark": "fiubench",
        "compat": compat,
        "forget_split": results["forget"]["split"],
        "retain_split": results["retain"]["split"],
        "forget": results["forget"]["aggregate"],
        "retain": results["retain"]["aggregate"],
        "model_utility": metrics.model_utility(results["retain"]["aggregate"]),
        "judge": {"status": judge_status,
                  **{role: results[role].get("judge") for role in metrics.ROLES}},
        "membership_auc": _membership_auc(results["forget"]["samples"], holdout_result),
        "general": None if general_result is None else {k: v for k, v in general_result.items() if k != "fingerprint"},
        **_forget_quality(results["forget"], reference_eval_dir),
    }
    if accelerator is None or accelerator.is_main_process:
        atomic_write_json(out_dir / "summary.json", summary)
    return summary


def evaluate_split(
    qas: Sequence[FiuQA], role: str, model: LazyModel, settings: Mapping[str, Any], judge: Judge | None,
    accelerator: Accelerator | None, split: str,
) -> dict[str, Any]:
    compat = settings.get("compat", "default")
    net, collator = model.get()
    batch_size, max_new_tokens = settings["batch_size"], settings["max_new_tokens"]
    generations = generate_answers(net, collator, [qa.example() for qa in qas], batch_size, max_new_tokens,
                                   accelerator, desc=f"{split} generate")
    paraphrase_generations: list[list[str]] = []
    if role == "forget":  # APE: the same facts asked in other words
        questions = [(i, q) for i, qa in enumerate(qas) for q in qa.paraphrased_questions]
        flat = generate_answers(net, collator, [qas[i].example(question=q) for i, q in questions], batch_size,
                                max_new_tokens, accelerator, desc=f"{split} paraphrases")
        paraphrase_generations = [[] for _ in qas]
        for (i, _), text in zip(questions, flat, strict=True):
            paraphrase_generations[i].append(text)

    requests, spans = [], []
    for qa in qas:
        start = len(requests)
        requests += [qa.example(), qa.example(answer=qa.paraphrased_answer)]
        requests += [qa.example(answer=p) for p in qa.perturbed_answers]
        spans.append((start, len(requests)))
    scores = score_answers(net, collator, requests, batch_size, accelerator, desc=f"{split} score")

    gpt = _judge(judge, qas, generations, compat, accelerator)
    records = []
    for index, (qa, generation, (start, end)) in enumerate(zip(qas, generations, spans, strict=True)):
        text = metrics.answer_text(generation, compat)
        answer_nll = metrics.answer_nll(scores[start], compat)
        paraphrased_nll = metrics.answer_nll(scores[start + 1], compat)
        perturbed_nlls = [metrics.answer_nll(score, compat) for score in scores[start + 2:end]]
        mia, mia_pp = metrics.mia(scores[start], compat)
        record = {
            "uid": qa.uid, "unique_id": qa.unique_id, "question": qa.question, "answer": qa.answer,
            "generation": generation,
            "rougeL_recall": rouge_l_recall(qa.answer, text),
            "exact_match": keyword_match(text, qa.keywords),
            "answer_nll": answer_nll, "paraphrased_nll": paraphrased_nll, "perturbed_nll": perturbed_nlls,
            "probability": metrics.answer_probability(answer_nll),
            "normalised_probability": metrics.normalised_probability(answer_nll, perturbed_nlls),
            "truth_ratio": metrics.truth_ratio(paraphrased_nll, perturbed_nlls),
            "mia": mia, "mia_pp": mia_pp,
            "membership": metrics.membership_scores(scores[start], qa.answer),
            "gpt": gpt.values[index] if gpt else None,
        }
        if role == "forget":
            texts = [metrics.answer_text(g, compat) for g in paraphrase_generations[index]]
            record["paraphrase_generations"] = paraphrase_generations[index]
            record["ape"] = sum(keyword_match(t, qa.keywords) for t in texts) / len(texts)
        records.append(record)
    return {
        "split": split, "role": role, "aggregate": metrics.aggregate_split(records, role),
        "judge": gpt.summary() if gpt else None, "samples": records,
    }


def _judge(judge: Judge | None, qas: Sequence[FiuQA], generations: Sequence[str], compat: str,
           accelerator: Accelerator | None = None) -> JudgeScores | None:
    if judge is None:
        return None
    texts = [metrics.answer_text(g, compat) for g in generations]
    # FIUBench scored generations of 5 characters or fewer 0 without asking
    asked = [i for i, t in enumerate(texts) if compat == "default" or len(t) > 5]
    prompts = [metrics.judge_prompt(qas[i].question, qas[i].answer, texts[i]) for i in asked]
    partial = judge_scores(judge, prompts, metrics.parse_judge_score, accelerator)
    values: list[float | None] = [0.0] * len(texts)
    for i, value in zip(asked, partial.values, strict=True):
        values[i] = value
    return JudgeScores(values=values, failed=partial.failed, unparseable=partial.unparseable,
                       replies=partial.replies)


def score_membership(qas: Sequence[FiuQA], model: LazyModel, settings: Mapping[str, Any],
                     accelerator: Accelerator | None) -> list[dict[str, Any]]:
    """Attack scores of QAs the model never trained on (the holdout identities): the non-members."""
    net, collator = model.get()
    scores = score_answers(net, collator, [qa.example() for qa in qas], settings["batch_size"], accelerator,
                           desc="holdout score")
    return [{"uid": qa.uid, "membership": metrics.membership_scores(score, qa.answer)}
            for qa, score in zip(qas, scores, strict=True)]


def _membership_auc(forget_samples: Sequence[dict], holdout: dict | None) -> dict[str, Any]:
    """Forget QAs (trained on in Stage I) against never-trained holdout QAs; 0.5 = indistinguishable."""
    if holdout is None:
        return {"note": "no holdout identities: the data has none beyond max_identities and no 'holdout' split"}
    out = {}
    for name in forget_samples[0]["membership"]:
        members = [s["membership"][name] for s in forget_samples]
        nonmembers = [s["membership"][name] for s in holdout["samples"]]
        out[name] = attack_auc(members, nonmembers)
    return {**out, "n_members": len(forget_samples), "n_nonmembers": len(holdout["samples"])}


def _forget_quality(forget_result: dict[str, Any], reference_eval_dir: Path | None) -> dict[str, Any]:
    split = forget_result["split"]
    reference = reference_eval_dir / f"{split}.json" if reference_eval_dir else None
    if reference is None or not reference.is_file():
        return {"forget_quality": None, "forget_quality_note": f"no retain-model evaluation of {split} found"}
    stored = read_json(reference)
    if stored.get("fingerprint", {}).get("compat") != forget_result["fingerprint"]["compat"]:
        return {"forget_quality": None,
                "forget_quality_note": f"{reference} was computed under another compat setting; re-evaluate it"}
    value = metrics.forget_quality(forget_result["samples"], stored["samples"])
    return {"forget_quality": value, "forget_quality_log10": math.log10(max(value, 1e-300)),
            "forget_quality_reference": str(reference)}
