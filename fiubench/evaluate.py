"""FIUBench's evaluation parts: the forget and retain splits, and the never-trained holdout identities.

Per split, one batched generation pass (plus the paraphrased questions on the forget split, for APE) and
one batched teacher-forced pass scoring the answer, the paraphrased answer and every perturbed answer of
every QA. The engine's runner caches each part in ``eval/`` and calls ``summarize``; forget quality compares
the forget split's truth ratios with the retain model's (the reference run's) evaluation of the same split.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fiubench import metrics
from fiubench.data import FiuBench, FiuQA
from unlearning.compat import Compat
from unlearning.data.examples import DataError
from unlearning.evaluation.general import general_results, mean_accuracy
from unlearning.evaluation.intervals import Resampler
from unlearning.evaluation.judge.judgments import Judgment, judge_counts, judge_records, store_judgment
from unlearning.evaluation.metrics.membership import attack_auc
from unlearning.evaluation.metrics.stats import ks_forget_quality
from unlearning.evaluation.metrics.text import keyword_match, rouge_1_recall, rouge_l_recall
from unlearning.evaluation.runner import EvalContext, EvalSettings, Evaluation, Part, reference_result
from unlearning.inference.answers import generate_answers, score_answers
from unlearning.inference.decoding import Decoding

FILE_VERSION = 4  # 4: rouge1_recall per QA


@dataclasses.dataclass(frozen=True)
class SplitSettings:
    """One split's evaluation: which QAs, in which role, generated how."""

    split: str
    role: str  # forget | retain
    batch_size: int
    decoding: Decoding
    compat: Compat
    skip_first_answer_token: bool  # the compat switch: the original's labels 2..L over L
    max_failed: float = 0.0  # judge requests allowed to fail with GPT still complete
    ends_with_eos: bool = True  # the scored span ends with EOS (not under the original's prompt)

    def __post_init__(self) -> None:
        if self.role not in metrics.ROLES:
            raise ValueError(f"role must be one of {metrics.ROLES}, got {self.role!r}")
        if self.decoding.n != 1:
            raise ValueError(f"FIUBench scores one answer per question: eval.decoding.n must be 1, got "
                             f"{self.decoding.n}")


def evaluation(data: FiuBench, settings: EvalSettings, forget_split: str, retain_split: str,
               original_prompt: Mapping[str, Any] | None = None) -> Evaluation:
    """The parts of one model's FIUBench evaluation; unknown splits fail here, before any model loads.

    With the original's prompt (``original_prompt``, the compat switch of that name) the collator scores the
    original's label tokens (no EOS); ``skip_first_answer_token`` then takes the original's NLL over them, labels
    2..L over L, and its MIA over ``labels[1:]`` (evaluate_util.py:395-405, :436-438); without the original's
    prompt it applies the same rule to this toolkit's span (the answer and EOS: tokens 2..L over L)."""
    compat = settings.compat
    skip_first = compat.skip_first_answer_token
    judge = settings.judge_fingerprint()
    parts: dict[str, Part] = {}
    shared = set(data.identity_ids(forget_split)) & set(data.identity_ids(retain_split))  # unknown splits raise
    if shared:
        raise DataError(f"{data.split_path}: the forget split {forget_split!r} and the retain split {retain_split!r} "
                        f"share {len(shared)} identities ({', '.join(sorted(shared)[:5])}); retain metrics would "
                        "measure forgotten identities")
    for role, split in (("forget", forget_split), ("retain", retain_split)):
        part = SplitSettings(split, role, settings.batch_size, settings.decoding, compat, skip_first,
                             settings.judge.max_failed, ends_with_eos=not original_prompt)
        qas = settings.limited(data.qas(split))  # eval.limit: its first QAs
        parts[role] = Part(split, {"version": FILE_VERSION, "split": split,
                                   "decoding": dataclasses.asdict(settings.decoding), "judge": judge,
                                   **({"original_prompt": dict(original_prompt)} if original_prompt else {})},
                           lambda context, part=part, qas=qas: evaluate_split(qas, part, context), data=qas)
    holdout = settings.limited(data.qas("holdout"))
    if holdout:
        parts["holdout"] = Part("holdout", {"version": FILE_VERSION, "n": len(holdout)},
                                lambda context: {"samples": score_membership(holdout, settings.batch_size, context)},
                                data=holdout)

    def summarize(results: Mapping[str, dict[str, Any]], reference_dir: Path | None) -> dict[str, Any]:
        return summarize_run(results, reference_dir, parts["forget"], settings.compat)

    def resample(results: Mapping[str, dict[str, Any]], reference_dir: Path | None, resampler: Resampler
                 ) -> dict[str, np.ndarray]:
        return resample_run(results, reference_dir, resampler, parts["forget"], settings.compat)

    return Evaluation(parts, summarize, resample)


def summarize_run(results: Mapping[str, dict[str, Any]], reference_dir: Path | None, forget_part: Part,
                  compat: Compat) -> dict[str, Any]:
    general = general_results(results)
    if general is not None:
        general["acc"] = general_accuracy(general)
    retain, retain_judge = results["retain"]["aggregate"], results["retain"].get("judge")
    incomplete = retain_judge is not None and not retain_judge["complete"]
    return {
        "forget_split": results["forget"]["split"],
        "retain_split": results["retain"]["split"],
        "forget": results["forget"]["aggregate"],
        "retain": retain,
        # with the judge's answers incomplete MU is undefined, rather than silently a mean of other terms
        "model_utility": None if incomplete else metrics.model_utility(retain),
        "model_utility_terms": metrics.model_utility_terms(retain),
        "judge": {role: results[role].get("judge") for role in metrics.ROLES},
        "membership_auc": _membership_auc(results["forget"]["samples"], results.get("holdout")),
        "general": general,
        **_forget_quality(results["forget"], reference_dir, forget_part, compat),
    }


def general_accuracy(general: Mapping[str, Any]) -> float | None:
    """FIUBench's ACC: the paper reports one from MME and POPE without saying how they are combined; this mean
    of their overall yes/no accuracies is our definition (docs/fidelity.md)."""
    return mean_accuracy(general, ("mme", "pope"))


def evaluate_split(qas: Sequence[FiuQA], settings: SplitSettings, context: EvalContext) -> dict[str, Any]:
    net, collator = context.model.get()
    role, split, compat = settings.role, settings.split, settings.compat
    cut, skip_first, eos = compat.cut_at_first_period, settings.skip_first_answer_token, settings.ends_with_eos
    batch_size, accelerator = settings.batch_size, context.accelerator
    # APE (forget split): the same facts asked in other words, generated with the questions (one prefix per image)
    questions = [(i, q) for i, qa in enumerate(qas) for q in qa.paraphrased_questions] if role == "forget" else []
    flat = generate_answers(net, collator, [qa.example() for qa in qas] + [qas[i].example(question=q)
                                                                          for i, q in questions],
                            batch_size, settings.decoding, accelerator, desc=f"{split} generate")
    generations, paraphrase_generations = flat[:len(qas)], [[] for _ in qas]
    for (i, _), text in zip(questions, flat[len(qas):], strict=True):
        paraphrase_generations[i].append(text)

    requests, spans = [], []
    for qa in qas:
        start = len(requests)
        requests += [qa.example(), qa.example(answer=qa.paraphrased_answer)]
        requests += [qa.example(answer=p) for p in qa.perturbed_answers]
        spans.append((start, len(requests)))
    scores = score_answers(net, collator, requests, batch_size, accelerator, desc=f"{split} score")

    records = []
    for index, (qa, generation, (start, end)) in enumerate(zip(qas, generations, spans, strict=True)):
        text = metrics.answer_text(generation, cut)
        answer_nll = metrics.answer_nll(scores[start], skip_first, eos)
        paraphrased_nll = metrics.answer_nll(scores[start + 1], skip_first, eos)
        perturbed_nlls = [metrics.answer_nll(score, skip_first, eos) for score in scores[start + 2:end]]
        mia, mia_pp = metrics.mia(scores[start], skip_first, compat.min_k_without_renormalising, eos)
        record = {
            "uid": qa.uid, "unique_id": qa.unique_id, "question": qa.question, "answer": qa.answer,
            "generation": generation,
            "rougeL_recall": rouge_l_recall(qa.answer, text),
            "rouge1_recall": rouge_1_recall(qa.answer, text),
            "exact_match": keyword_match(text, qa.keywords),
            "answer_nll": answer_nll, "paraphrased_nll": paraphrased_nll, "perturbed_nll": perturbed_nlls,
            "probability": metrics.answer_probability(answer_nll),
            "normalised_probability": metrics.normalised_probability(answer_nll, perturbed_nlls),
            "truth_ratio": metrics.truth_ratio(paraphrased_nll, perturbed_nlls),
            "mia": mia, "mia_pp": mia_pp,
            "membership": metrics.membership_scores(scores[start], qa.answer),
            "gpt": None,
        }
        if role == "forget":
            texts = [metrics.answer_text(g, cut) for g in paraphrase_generations[index]]
            record["paraphrase_generations"] = paraphrase_generations[index]
            record["ape"] = sum(keyword_match(t, qa.keywords) for t in texts) / len(texts)
        records.append(record)
    if context.judge is not None:
        _judge(context, qas, records, compat)
    aggregate = metrics.aggregate_split(records, role)
    judge = None if context.judge is None else judge_counts(records, "gpt", settings.max_failed)
    if judge is not None and not judge["complete"]:  # a partial mean is kept apart, never reported as the GPT score
        aggregate["gpt_partial"], aggregate["gpt"] = aggregate["gpt"], None
    return {"split": split, "role": role, "aggregate": aggregate, "judge": judge, "samples": records}


def _judge(context: EvalContext, qas: Sequence[FiuQA], records: list[dict[str, Any]], compat: Compat) -> None:
    """The GPT score of each generation; the original scored short generations 0 without asking."""
    texts = [metrics.answer_text(record["generation"], compat.cut_at_first_period) for record in records]
    asked = [i for i, text in enumerate(texts)
             if not compat.short_answers_score_zero or len(text) > metrics.SHORT_ANSWER]
    as_original = compat.judge_as_original
    prompts = [metrics.judge_prompt(qas[i].question, qas[i].answer, texts[i], as_original) for i in asked]
    judge_records(context.judge, [records[i] for i in asked], prompts, "gpt", metrics.judge_parser(as_original),
                  context.accelerator)
    for index in set(range(len(records))) - set(asked):  # not asked: the original's 0
        store_judgment(records[index], "gpt", Judgment(0.0, None))


def score_membership(qas: Sequence[FiuQA], batch_size: int, context: EvalContext) -> list[dict[str, Any]]:
    """Attack scores of QAs the model never trained on (the holdout identities): the non-members."""
    net, collator = context.model.get()
    scores = score_answers(net, collator, [qa.example() for qa in qas], batch_size, context.accelerator,
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


def _forget_quality(forget_result: dict[str, Any], reference_dir: Path | None, forget_part: Part,
                    compat: Compat) -> dict[str, Any]:
    stored, note = reference_result(reference_dir, forget_part, compat)
    if stored is None:
        return {"forget_quality": None, "forget_quality_note": note}
    value = metrics.forget_quality(forget_result["samples"], stored["samples"])
    return {"forget_quality": value, "forget_quality_log10": math.log10(max(value, 1e-300)),
            "forget_quality_reference": str(reference_dir / f"{forget_part.name}.json")}


def _identity(sample: Mapping[str, Any]) -> str:
    """The unit of independence: the identity a QA asks about (holdout samples keep it only in their uid)."""
    return sample.get("unique_id") or sample["uid"].rsplit("/", 1)[0]


def resample_run(results: Mapping[str, dict[str, Any]], reference_dir: Path | None, resampler: Resampler,
                 forget_part: Part, compat: Compat) -> dict[str, np.ndarray]:
    """Bootstrap replicates of the summary fields the table reads, identities resampled within each split (forget,
    retain, holdout); model utility, forget quality and the attack AUC are recomputed inside each resample.

    ACC comes from the general evaluations, which keep no per-question results: it has no replicates (NaN), so
    ACC and Avg MU get no interval."""
    out: dict[str, np.ndarray] = {}
    for role in metrics.ROLES:
        samples = results[role]["samples"]
        units = [_identity(s) for s in samples]

        def mean(values: Sequence[float | None], role: str = role, units: list[str] = units) -> np.ndarray:
            return resampler.mean(role, units, values)

        aggregate = results[role]["aggregate"]
        out[f"{role}.rougeL_recall"] = mean([s["rougeL_recall"] for s in samples])
        out[f"{role}.exact_match"] = mean([float(s["exact_match"]) for s in samples])
        if role == "forget":
            out["forget.mia"] = mean([s.get("mia") for s in samples])
            out["forget.ape"] = mean([s.get("ape") for s in samples])
            continue
        out["retain.probability"] = mean([s["normalised_probability"] for s in samples])
        out["retain.truth_ratio"] = mean([max(0.0, 1.0 - s["truth_ratio"]) for s in samples])
        if aggregate.get("gpt") is not None:
            out["retain.gpt"] = mean([s.get("gpt") for s in samples])
        terms = metrics.model_utility_terms(aggregate)
        if all(f"retain.{term}" in out for term in terms) and "gpt_partial" not in aggregate:
            stacked = np.stack([out[f"retain.{term}"] for term in terms])
            with np.errstate(divide="ignore"):
                out["model_utility"] = np.where(np.any(stacked <= 0, axis=0), 0.0,
                                                len(terms) / np.sum(1.0 / stacked, axis=0))
    if results.get("general"):
        out["general.acc"] = np.full(resampler.resamples, np.nan)
    out.update(_resampled_forget_quality(results["forget"], reference_dir, forget_part, compat, resampler))
    if results.get("holdout"):
        out["membership_auc.mink_pp"] = _resampled_auc(results["forget"]["samples"], results["holdout"]["samples"],
                                                       "mink_pp", resampler)
    return out


def _resampled_forget_quality(forget_result: dict[str, Any], reference_dir: Path | None, forget_part: Part,
                              compat: Compat, resampler: Resampler) -> dict[str, np.ndarray]:
    """The KS p-value of each resample: the same drawn identities' QAs, with this model's and the reference's
    truth ratios."""
    stored, _ = reference_result(reference_dir, forget_part, compat)
    if stored is None:
        return {}
    samples = forget_result["samples"]
    theirs = {r["uid"]: r["truth_ratio"] for r in stored["samples"]}
    if set(theirs) != {s["uid"] for s in samples}:
        return {}
    ours = np.array([s["truth_ratio"] for s in samples])
    reference = np.array([theirs[s["uid"]] for s in samples])
    values = resampler.each("forget", [_identity(s) for s in samples],
                            lambda drawn: ks_forget_quality(ours[drawn], reference[drawn]))
    return {"forget_quality": values, "forget_quality_log10": np.log10(np.maximum(values, 1e-300))}


def _resampled_auc(members: Sequence[dict], nonmembers: Sequence[dict], score: str, resampler: Resampler
                   ) -> np.ndarray:
    """The attack AUC of each resample (forget and holdout identities drawn in their own strata), as the weighted
    Mann-Whitney U: P(member > non-member) with ties counting half."""
    m = np.array([s["membership"][score] for s in members])
    n = np.array([s["membership"][score] for s in nonmembers])
    wins = (m[:, None] > n[None, :]) + 0.5 * (m[:, None] == n[None, :])
    w = resampler.weights("forget", [_identity(s) for s in members]).astype(float)
    v = resampler.weights("holdout", [_identity(s) for s in nonmembers]).astype(float)
    return np.einsum("bi,ij,bj->b", w, wins, v) / (w.sum(axis=1) * v.sum(axis=1))
