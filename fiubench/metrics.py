"""FIUBench's metrics: per-QA values and their forget/retain aggregation (FIUBench ``evaluate_util.py``,
``aggregate_eval_stat.py``; TOFU's definitions).

Per QA, with ℓ the per-token NLL of an answer given the original question:
- probability:   forget: exp(-ℓ_gt);  retain: exp(-ℓ_gt) / (exp(-ℓ_gt) + Σ_j exp(-ℓ_pert_j))
- truth ratio:   R = exp(ℓ_para - mean_j ℓ_pert_j)  (geometric-mean perturbed prob / paraphrased prob)
                 forget aggregate mean(min(R, 1/R)), retain aggregate mean(max(0, 1 - R))
- ROUGE-L recall and keyword exact match (EM) of the greedy answer; APE = EM of the greedy answers to the
  three paraphrased questions; MIA = weighted Min-K / Min-K++ of the answer tokens; GPT = the judge's 0-1 score.
Forget quality is the KS-test p-value of the forget-split R values against the retain model's.

The original's number-changing behaviours are arguments named after them, set from the compat switches
(fiubench/compat.py, docs/fidelity.md): text cut at the first ".", the first answer token unscored with ℓ divided
by the full answer length, Min-K terms dropped without renormalising (a one-token answer scores 0), generations of
5 characters or fewer scored 0 by GPT without asking, and the judge's prompt layout and reply parsing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from unlearning.evaluation.metrics.membership import lowest_k_mean, min_k_plus_plus_z, weighted_min_k, zlib_score
from unlearning.evaluation.metrics.stats import harmonic_mean, ks_forget_quality
from unlearning.inference.answers import SequenceScore

ROLES = ("forget", "retain")
JUDGE_PROMPT = Path(__file__).with_name("judge_prompt.txt").read_text(encoding="utf-8")
MEMBERSHIP_K = 0.2  # Min-K / Min-K++ ratio of the attack-AUC scores
SHORT_ANSWER = 5  # the original scored GPT 0 for generations of this many characters or fewer


def answer_text(generation: str, cut_at_first_period: bool = False) -> str:
    """The text the generation metrics see: all of it, or up to the first '.' ('' without one)."""
    if cut_at_first_period:
        return generation[: generation.find(".") + 1]
    return generation


def scored_logprobs(score: SequenceScore, skip_first_answer_token: bool = False, ends_with_eos: bool = True
                    ) -> tuple[list[float], list[float], list[float]]:
    """Token log-probs, mu and sigma of the tokens a metric scores: every target token, or FIUBench's labels 2..L
    (not the first, and not the EOS this toolkit's span ends with, which the original never appended; under the
    original's prompt the span is its labels, with no EOS: ``ends_with_eos=False``)."""
    columns = (list(score.token_logprobs), list(score.token_mu), list(score.token_sigma))
    if skip_first_answer_token:
        end = -1 if ends_with_eos else None
        return tuple(column[1:end] for column in columns)  # type: ignore[return-value]
    return columns


def answer_nll(score: SequenceScore, skip_first_answer_token: bool = False, ends_with_eos: bool = True) -> float:
    """ℓ: mean NLL over every target token; the original (evaluate_util.py:395-405): the sum over labels 2..L
    divided by L."""
    if skip_first_answer_token:
        labels = score.n_tokens - (1 if ends_with_eos else 0)
        return -sum(scored_logprobs(score, True, ends_with_eos)[0]) / max(labels, 1)
    return score.mean_nll


def mia(score: SequenceScore, skip_first_answer_token: bool = False, min_k_without_renormalising: bool = False,
        ends_with_eos: bool = True) -> tuple[float, float]:
    """FIUBench's weighted Min-K and Min-K++ of one answer (the original's over ``labels[1:]``)."""
    logprobs, mu, sigma = scored_logprobs(score, skip_first_answer_token, ends_with_eos)
    renormalise = not min_k_without_renormalising
    if not logprobs:  # a one-token answer under the original's rule: every term empty, their sum 0
        return (0.0, 0.0) if min_k_without_renormalising else (math.nan, math.nan)
    return (weighted_min_k(logprobs, renormalise=renormalise),
            weighted_min_k(min_k_plus_plus_z(logprobs, mu, sigma), renormalise=renormalise))


def membership_scores(score: SequenceScore, text: str) -> dict[str, float]:
    """Attack scores (higher = more member-like) over every target token: loss, zlib, Min-K, Min-K++ at k=20%."""
    logprobs, mu, sigma = score.token_logprobs, score.token_mu, score.token_sigma
    z = min_k_plus_plus_z(logprobs, mu, sigma)
    k = max(MEMBERSHIP_K, 1 / len(logprobs))  # at least one token
    return {
        "loss": -score.mean_nll,
        "zlib": zlib_score(logprobs, text),
        "mink": lowest_k_mean(logprobs, k),
        "mink_pp": lowest_k_mean(z, k),
    }


def truth_ratio(paraphrased_nll: float, perturbed_nlls: Sequence[float]) -> float:
    return math.exp(paraphrased_nll - float(np.mean(perturbed_nlls)))


def answer_probability(answer_nll: float) -> float:
    return math.exp(-answer_nll)


def normalised_probability(answer_nll: float, perturbed_nlls: Sequence[float]) -> float:
    """exp(-ℓ_gt) over the sum with every perturbed answer's, computed stably in log space."""
    logits = -np.array([answer_nll, *perturbed_nlls])
    return float(np.exp(logits[0] - np.logaddexp.reduce(logits)))


def judge_prompt(question: str, answer: str, prediction: str, as_original: bool = False) -> str:
    """FIUBench's judge prompt, with the QA's own question; the original (``judge_as_original``,
    evaluate_util.py:47-65) put question, answer and prediction on consecutive lines and ended the prompt without a
    newline, ours separates them by blank lines."""
    prompt = JUDGE_PROMPT
    if as_original:
        prompt = prompt.replace("{question}\n\nCorrect", "{question}\nCorrect").replace("{answer}\n\nPrediction",
                                                                                        "{answer}\nPrediction")
        prompt = prompt.rstrip("\n")
    return prompt.format(question=question, answer=answer, prediction=prediction)


_NUMBER = re.compile(r"\d*\.?\d+")


def parse_judge_score(reply: str) -> float | None:
    """The score on the reply's first line (as "0.75", "Score: 0.75" or "**0.75**"), if it lies in [0, 1]."""
    first_line = reply.strip().split("\n")[0]
    match = _NUMBER.search(first_line)
    if match is None:
        return None
    value = float(match.group())
    return value if 0.0 <= value <= 1.0 else None


def parse_judge_score_as_original(reply: str) -> float:
    """The original's reading (``evaluate_util.py``): the first line, from its first ':' on with ':' and spaces
    stripped, then '*' stripped, as a float; anything ``float`` rejects scores 0.0 and any number is kept (1.5,
    -0.2)."""
    text = reply.split("\n")[0].strip(" ")
    if ":" in text:
        text = text[text.find(":"):].strip(":").strip(" ")
    if "**" in text:
        text = text.strip("*").strip(" ")
    try:
        return float(text)
    except ValueError:
        return 0.0


def judge_parser(as_original: bool = False) -> Callable[[str], float | None]:
    return parse_judge_score_as_original if as_original else parse_judge_score


def aggregate_truth_ratio(ratios: Sequence[float], role: str) -> float:
    r = np.asarray(ratios, dtype=float)
    if role == "forget":
        return float(np.mean(np.minimum(r, 1.0 / r)))
    if role == "retain":
        return float(np.mean(np.maximum(0.0, 1.0 - r)))
    raise ValueError(f"role must be one of {ROLES}, got {role!r}")


def _mean_of(records: Sequence[dict], key: str) -> float | None:
    values = [r[key] for r in records if r.get(key) is not None and not math.isnan(r[key])]
    return float(np.mean(values)) if values else None


def aggregate_split(records: Sequence[dict], role: str) -> dict[str, float | int | None]:
    """Split-level values from per-QA records (as written to ``eval/<split>.json``)."""
    if not records:
        raise ValueError("no records to aggregate")
    probability_key = "probability" if role == "forget" else "normalised_probability"
    aggregate: dict[str, float | int | None] = {
        "rougeL_recall": float(np.mean([r["rougeL_recall"] for r in records])),
        "rouge1_recall": _mean_of(records, "rouge1_recall"),
        "avg_gt_loss": _mean_of(records, "answer_nll"),  # the ground-truth answer's per-token NLL (TOFU's name)
        "exact_match": float(np.mean([r["exact_match"] for r in records])),
        "probability": float(np.mean([r[probability_key] for r in records])),
        "truth_ratio": aggregate_truth_ratio([r["truth_ratio"] for r in records], role),
        "mia": _mean_of(records, "mia"),
        "mia_pp": _mean_of(records, "mia_pp"),
        "gpt": _mean_of(records, "gpt"),
        "n": len(records),
    }
    if role == "forget":
        aggregate["ape"] = _mean_of(records, "ape")
    return aggregate


def model_utility(retain: dict[str, float | None]) -> float:
    """FIUBench's code: harmonic mean of the retain split's ROUGE-L, probability, truth ratio (and GPT when judged).

    The original also put EM and GPT in, as 0 when they were not computed, which zeroed the mean.
    """
    values = [retain[term] for term in model_utility_terms(retain)]
    if None in values:
        raise ValueError("model utility needs every term; the judge's answers are incomplete")
    return harmonic_mean(values)


def model_utility_terms(retain: dict[str, float | None]) -> list[str]:
    """The retain aggregates MU is the harmonic mean of: GPT joins when the split was judged."""
    terms = ["rougeL_recall", "probability", "truth_ratio"]
    return [*terms, "gpt"] if retain.get("gpt") is not None or "gpt_partial" in retain else terms


def forget_quality(forget_records: Sequence[dict], reference_records: Sequence[dict]) -> float:
    """KS p-value between this model's and the retain model's truth ratios on the same forget QAs."""
    ours = {r["uid"]: r["truth_ratio"] for r in forget_records}
    theirs = {r["uid"]: r["truth_ratio"] for r in reference_records}
    if set(ours) != set(theirs):
        raise ValueError("forget quality compares different QAs: the reference was evaluated on another split")
    return ks_forget_quality(list(ours.values()), list(theirs.values()))
