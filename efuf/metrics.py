"""EFUF's caption metrics besides CHAIR: BLEU against the reference captions, and caption length.

BLEU-1/2/4 are nltk's sentence BLEU over lower-cased words against all of an image's reference captions, with
smoothing method 1 (a zero n-gram count becomes 0.1). The original (evaluate/eval_auto.py:28-37, 196-208) passed raw
strings, so it scored characters, against one reference (the last caption of the image in its dict), with
four-element weight vectors (BLEU-n: ``[1/n]*n + [0]*(4-n)``) and smoothing method 7, whose averaging of
neighbouring n-gram orders makes BLEU-1 and -2 depend on the higher orders and lifts BLEU above 1 for a caption
equal to its reference (method 5 counts a pseudo order-0 precision of 2); its hypothesis is the caption as its
captions file held it, with newlines turned into spaces and the space after ``###`` in front
(evaluate/eval_caption.py:45, evaluate/eval_utils.py:11). ``as_original=True`` does all of that (compat switch
``character_bleu``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

BLEU_WEIGHTS = {"bleu1": (1.0,), "bleu2": (0.5, 0.5), "bleu4": (0.25, 0.25, 0.25, 0.25)}
ORIGINAL_BLEU_WEIGHTS = {name: weights + (0.0,) * (4 - len(weights)) for name, weights in BLEU_WEIGHTS.items()}
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks."""
    return _TOKEN.findall(text.lower())


@functools.cache
def _smoothing(as_original: bool):
    from nltk.translate.bleu_score import SmoothingFunction

    return SmoothingFunction().method7 if as_original else SmoothingFunction().method1


def caption_bleu(references: Sequence[str], caption: str, as_original: bool = False) -> dict[str, float]:
    """BLEU-1, -2 and -4 of ``caption``; 0 for an empty caption."""
    from nltk.translate.bleu_score import sentence_bleu

    if not references:
        raise ValueError("BLEU needs at least one reference caption")
    if not caption.strip():
        return dict.fromkeys(BLEU_WEIGHTS, 0.0)
    if as_original:  # strings: nltk iterates them as characters
        refs, hypothesis, orders = [references[-1]], " " + caption.replace("\n", " "), ORIGINAL_BLEU_WEIGHTS
    else:
        refs, hypothesis, orders = [words(reference) for reference in references], words(caption), BLEU_WEIGHTS
    return {name: float(sentence_bleu(refs, hypothesis, weights=weights, smoothing_function=_smoothing(as_original)))
            for name, weights in orders.items()}


def caption_length(caption: str) -> int:
    """Words in the caption (punctuation left out)."""
    return sum(1 for token in words(caption) if token[0].isalnum())
