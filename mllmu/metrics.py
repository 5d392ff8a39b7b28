"""MLLMU-Bench's metrics (``eval.py``, ``eval_gpt.py``) and their aggregation per evaluation set and modality.

- classification accuracy: the option chosen either by log-likelihood (default: the letter whose answer
  target is most likely) or parsed from a greedy answer; the original parsed the first character only.
- cloze accuracy: the ground truth appears in the answer, case-insensitively.
- generation: ROUGE-1, ROUGE-2 and ROUGE-L F-measures (rouge-score, stemmed) and sentence BLEU (nltk, whitespace tokens,
  smoothing method 1, 4-gram weights) of the greedy answer against the ground truth.
- factuality: the judge's 1-10 score. By default an unparseable reply counts as 1, the rubric's lowest; the
  original dropped unparseable replies from the mean. When more requests failed than ``max_failed`` allows,
  the set's factuality is incomplete: ``factuality`` is None and ``factuality_partial`` holds the mean over the
  answered ones (the table shows it with its count); the next run asks the failed prompts again.

The original's behaviours are arguments named after them, set from the compat switches (mllmu/compat.py).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unlearning.evaluation.judge.judgments import add_counts, judge_counts
from unlearning.evaluation.metrics.text import rouge_l, rouge_scores

JUDGE_PROMPT = Path(__file__).with_name("judge_prompt.txt").read_text(encoding="utf-8")
JUDGE_SYSTEM_PROMPT = "You are an expert at evaluating the factuality of responses."
FACTUALITY_RANGE = (1.0, 10.0)

_LEADING_LETTER = re.compile(r"^\s*[\(\[]?([A-D])(?:\s*$|[\s]*[.:)\],])")
_ANSWER_IS = re.compile(r"answer(?:\s+is)?\s*[:\-]?\s*[\(\[]?([A-D])(?![A-Za-z])", re.IGNORECASE)
_FACTUALITY = re.compile(r"factuality\s*score\W*?(\d+(?:\.\d+)?)", re.IGNORECASE)


def parse_choice(response: str, options: Sequence[tuple[str, str]], first_character: bool = False) -> str | None:
    """The option letter a free-form answer picks, or None.

    Default: a leading letter ("B", "B.", "(B)", "B: text"), "the answer is B" / "Answer: B", or the text of
    exactly one option. The original: the first character, upper-cased, when it is an option letter.
    """
    letters = [letter for letter, _ in options]
    if first_character:
        first = response[:1].upper()
        return first if response and first in letters else None
    for pattern in (_LEADING_LETTER, _ANSWER_IS):
        match = pattern.search(response)
        if match and match.group(1).upper() in letters:
            return match.group(1).upper()
    text = response.strip().rstrip(".").lower()
    named = [letter for letter, option in options if option.strip().rstrip(".").lower() in text and option.strip()]
    exact = [letter for letter, option in options if option.strip().rstrip(".").lower() == text]
    if exact:
        return exact[0]
    return named[0] if len(named) == 1 else None


def choice_by_likelihood(letter_logprobs: Mapping[str, float]) -> str:
    """The letter with the highest log-likelihood (the first listed on a tie)."""
    return max(letter_logprobs, key=lambda letter: letter_logprobs[letter])


def cloze_correct(ground_truth: str, response: str) -> bool:
    """MLLMU-Bench's cloze score: the ground truth is a case-insensitive substring of the answer."""
    return bool(ground_truth.strip()) and ground_truth.strip().lower() in response.lower()


def rouge_l_f(reference: str, prediction: str) -> float:
    return rouge_l(reference, prediction).fmeasure


def rouge_f(reference: str, prediction: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures (Porter-stemmed), the three the original's eval.py reports (text
    outside the Latin script tokenised so that it counts: ``unlearning.evaluation.metrics.text``)."""
    scores = rouge_scores(reference, prediction, ("rouge1", "rouge2"))
    return {"rouge1_f": scores["rouge1"].fmeasure, "rouge2_f": scores["rouge2"].fmeasure,
            "rougeL_f": rouge_l_f(reference, prediction)}


@functools.cache
def _smoothing():
    from nltk.translate.bleu_score import SmoothingFunction

    return SmoothingFunction().method1


def bleu(reference: str, prediction: str) -> float:
    """nltk ``sentence_bleu([reference.split()], prediction.split())`` with smoothing method 1; 0 for no words."""
    from nltk.translate.bleu_score import sentence_bleu

    hypothesis = prediction.split()
    if not hypothesis or not reference.split():
        return 0.0
    return float(sentence_bleu([reference.split()], hypothesis, smoothing_function=_smoothing()))


def judge_prompt(profile_id: str, question: str, generation: str, ground_truth: str) -> str:
    return JUDGE_PROMPT.format(image_id=profile_id, question=question, generation=generation,
                               ground_truth=ground_truth)


def parse_factuality(reply: str, as_original: bool = False) -> float | None:
    """The 1-10 score in a judge reply, or None.

    The original (eval_gpt.py:130-145): the first line containing "Factuality Score", its text after the last ':'
    without commas, as an int (a one-line JSON reply therefore fails), and only when some line holds
    "Justification" (the same exception dropped the reply otherwise).
    """
    if as_original:
        lines = reply.split("\n")
        scores = [line for line in lines if "Factuality Score" in line]
        if not scores or not any("Justification" in line for line in lines):
            return None
        try:
            return float(int(scores[0].split(":")[-1].strip().replace(",", "")))
        except ValueError:
            return None
    match = _FACTUALITY.search(reply)
    if not match:
        return None
    value = float(match.group(1))
    low, high = FACTUALITY_RANGE
    return value if low <= value <= high else None


def factuality_mean(values: Sequence[float | None], failed: Sequence[bool], drop_unscored: bool = False
                    ) -> float | None:
    """Mean judge score over the requests that were answered. ``values[i]`` is None where the reply was
    unparseable (counted as the rubric's lowest score; the original left it out) or the request failed."""
    answered = [v for v, f in zip(values, failed, strict=True) if not f]
    if drop_unscored:
        answered = [v for v in answered if v is not None]
    if not answered:
        return None
    low = FACTUALITY_RANGE[0]
    return sum(low if v is None else v for v in answered) / len(answered)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate(records: Sequence[dict[str, Any]], max_failed: float = 0.0, drop_unscored: bool = False,
              over_both_modalities: bool = False) -> dict[str, dict[str, Any]]:
    """Per modality: classification and cloze accuracy, ROUGE-L F, BLEU, factuality (None unless the judge's
    answers are complete), and the counts behind them. ``drop_unscored`` and ``over_both_modalities``: the
    original's factuality (compat switches ``factuality_drops_unscored``, ``factuality_over_both_modalities``)."""
    out = {}
    for modality in ("image_text", "text"):
        of = [r for r in records if r["modality"] == modality]
        cls = [r for r in of if r["task"] == "classification"]
        cloze = [r for r in of if r["task"] == "cloze"]
        gen = [r for r in of if r["task"] == "generation"]
        judged = [r for r in gen if "judge_failed" in r]
        counts = judge_counts(judged, "factuality", max_failed) if judged else None
        partial = factuality_mean([r["factuality"] for r in judged], [r["judge_failed"] for r in judged],
                                  drop_unscored)
        out[modality] = {
            "classification_acc": _mean([float(r["correct"]) for r in cls]),
            "cloze_acc": _mean([float(r["correct"]) for r in cloze]),
            "rouge1_f": _mean([r["rouge1_f"] for r in gen]),
            "rouge2_f": _mean([r["rouge2_f"] for r in gen]),
            "rougeL_f": _mean([r["rougeL_f"] for r in gen]),
            "bleu": _mean([r["bleu"] for r in gen]),
            "factuality": partial if counts and counts["complete"] else None,
            "factuality_partial": partial,
            "n_classification": len(cls), "n_cloze": len(cloze), "n_generation": len(gen),
            "n_unanswered_classification": sum(r.get("prediction") is None for r in cls),
            "judge": counts,
        }
    if over_both_modalities:
        _factuality_over_both(records, out, drop_unscored, max_failed)
    return out


def _factuality_over_both(records: Sequence[dict[str, Any]], out: dict[str, dict[str, Any]], drop_unscored: bool,
                          max_failed: float) -> None:
    """The original's number: eval.py wrote one file per set with both modalities' generations, eval_gpt.py
    averaged over that file. It becomes each modality row's ``factuality``; the per-modality mean is kept as
    ``factuality_modality``."""
    judged = [r for r in records if r["task"] == "generation" and "judge_failed" in r]
    if not judged:
        return
    counts = judge_counts(judged, "factuality", max_failed)
    both = factuality_mean([r["factuality"] for r in judged], [r["judge_failed"] for r in judged], drop_unscored)
    for values in out.values():
        values["factuality_modality"] = values["factuality"]
        values["factuality"] = both if counts["complete"] else None
        values["factuality_partial"] = both


def part_judge_counts(aggregated: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """One set's judge counts over both modalities (what the engine's runner reads)."""
    return add_counts([values["judge"] for values in aggregated.values()])
