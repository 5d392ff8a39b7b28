"""Text-overlap metrics on generated answers."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from rouge_score import rouge_scorer


@functools.cache
def _rouge_l_scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(reference: str, prediction: str) -> rouge_scorer.scoring.Score:
    """ROUGE-L (precision, recall, F-measure) of ``prediction`` against ``reference``, Porter-stemmed."""
    return _rouge_l_scorer().score(reference, prediction)["rougeL"]


def rouge_l_recall(reference: str, prediction: str) -> float:
    """LCS / len(reference): how much of the gold answer the generation reproduces (TOFU, FIUBench)."""
    return rouge_l(reference, prediction).recall


@functools.cache
def _rouge_1_scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)


def rouge_1_recall(reference: str, prediction: str) -> float:
    """Shared unigrams (with counts) / the reference's unigrams, Porter-stemmed (TOFU's, FIUBench's rouge1_recall)."""
    return _rouge_1_scorer().score(reference, prediction)["rouge1"].recall


def keyword_match(prediction: str, keywords: Sequence[str]) -> float:
    """Fraction of gold keywords found (case-insensitively) in the prediction, capped at 1 (FIUBench's EM)."""
    if not keywords:
        raise ValueError("keyword_match needs at least one keyword")
    found = sum(keyword.lower() in prediction.lower() for keyword in keywords)
    return min(1.0, found / len(keywords))
