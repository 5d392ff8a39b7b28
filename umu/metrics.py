"""UMU-Bench's metrics (``eval.py``): per-question scores, and per set the modality-paired aggregates.

Per question (MLLMU-Bench's where the two agree, imported from ``mllmu.metrics``):
- classification: the chosen option's text equals the correct option's text (``eval.py:188``, ``:259``); the
  option is the likeliest one (default), the option nearest a greedy answer by ``difflib`` ratio (``select_answer``,
  ``eval.py:73-81``), or the stripped answer itself (compat ``exact_option_match``, ``eval.py:158-159``);
- cloze: the ground truth appears in the answer, case-insensitively (``eval.py:397``, MLLMU-Bench's rule);
- generation: ROUGE-1/2/L F-measures (stemmed) and BLEU (``eval.py:487-595``, MLLMU-Bench's).

Per set, the questions of one key are a pair (multimodal, unimodal) and (``eval.py:273-285``, ``:455-468``,
``:665-670``):
- ``all_correct``: both right ("All Modal Question Accuracy"); ``all_wrong``: both wrong ("All Modal Question
  Error");
- the all-modal ROUGE-L: per pair (a, b) the contraharmonic mean (a² + b²) / (a + b) on the forget set (the larger
  of the two dominates: forgotten only when both are), the harmonic mean 2ab / (a + b) elsewhere (the smaller
  dominates: kept only when both are); 0 when a + b = 0; averaged over pairs.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from mllmu.metrics import bleu, choice_by_likelihood, cloze_correct, rouge_f

__all__ = ["aggregate", "all_modal_rouge_l", "bleu", "choice_by_likelihood", "cloze_correct", "cloze_truth",
           "nearest_option", "pairs", "rouge_f"]

TASKS = ("classification", "cloze", "generation")


def nearest_option(response: str, options: Sequence[str]) -> str:
    """The option most similar to the response by ``difflib.SequenceMatcher`` ratio, the first on a tie."""
    ratios = [difflib.SequenceMatcher(None, response, option).ratio() for option in options]
    return options[ratios.index(max(ratios))]


def cloze_truth(answer: str, first_period: bool = False) -> str:
    """The cloze ground truth: the answer without a trailing period (default), or its text before the first '.'
    (``eval.py:352``: "St. Louis" becomes "St"; compat ``cloze_answer_to_first_period``)."""
    return answer.split(".")[0] if first_period else answer.strip().rstrip(".").strip()


def pair_rouge_l(a: float, b: float, contraharmonic: bool) -> float:
    """One pair's all-modal ROUGE-L (``eval.py:666``, ``:669``)."""
    if a + b == 0:
        return 0.0
    return (a * a + b * b) / (a + b) if contraharmonic else 2 * a * b / (a + b)


def pairs(records: Sequence[Mapping[str, Any]], task: str, key: str) -> list[tuple[str, float, float]]:
    """(profile, multimodal value, unimodal value) per question pair of ``task``, in record order."""
    by = {(r["profile"], r["index"], r["modality"]): r for r in records if r["task"] == task}
    out = []
    for (profile, index, modality), record in by.items():
        if modality == "text":
            twin = by[(profile, index, "image_text")]
            out.append((profile, float(twin[key]), float(record[key])))
    return out


def all_modal_rouge_l(records: Sequence[Mapping[str, Any]], contraharmonic: bool) -> float | None:
    values = [pair_rouge_l(a, b, contraharmonic) for _, a, b in pairs(records, "generation", "rougeL_f")]
    return sum(values) / len(values) if values else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate(records: Sequence[Mapping[str, Any]], contraharmonic: bool) -> dict[str, dict[str, Any]]:
    """One set's numbers (fractions in [0, 1]): per task and modality, and the paired aggregates."""
    out: dict[str, dict[str, Any]] = {}
    for task in ("classification", "cloze"):
        of = [r for r in records if r["task"] == task]
        paired = pairs(records, task, "correct")
        out[task] = {
            "image_text": _mean([float(r["correct"]) for r in of if r["modality"] == "image_text"]),
            "text": _mean([float(r["correct"]) for r in of if r["modality"] == "text"]),
            "all_correct": _mean([float(a == 1 and b == 1) for _, a, b in paired]),
            "all_wrong": _mean([float(a == 0 and b == 0) for _, a, b in paired]),
            "n_pairs": len(paired),
        }
    gen = [r for r in records if r["task"] == "generation"]
    out["generation"] = {
        **{f"{metric}_{modality}": _mean([r[metric] for r in gen if r["modality"] == modality])
           for metric in ("rouge1_f", "rouge2_f", "rougeL_f", "bleu") for modality in ("image_text", "text")},
        "all_modal_rougeL": all_modal_rouge_l(records, contraharmonic),
        "all_modal_mean": "contraharmonic" if contraharmonic else "harmonic",
        "n_pairs": len(pairs(records, "generation", "rougeL_f")),
    }
    return out
