"""Text-overlap metrics on generated answers.

ROUGE is rouge-score's, Porter-stemmed. Its tokenizer keeps only ``a-z0-9``, so an answer in another script has no
tokens and scores 0 even when it equals the reference (a release in Chinese or Greek would read as "forgotten"). A
pair of texts holding a letter or digit of a script other than Latin is therefore tokenised by ``ScriptTokenizer``:
words of Unicode letters, digits and their combining marks, and one token per character in scripts written without
spaces (CJK, kana, Thai, Lao, Khmer, Myanmar). Pairs in the Latin script keep rouge-score's tokenizer, so their
numbers are the originals' to the bit (docs/fidelity.md).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

from nltk.stem import porter
from rouge_score import rouge_scorer, tokenizers

# Scripts written without spaces between words: one token per character.
_PER_CHARACTER = ((0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x3040, 0x30FF), (0x31F0, 0x31FF),
                  (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFF66, 0xFF9F), (0x20000, 0x3FFFF))
_STEMMED = re.compile(r"^[a-z0-9]+$")  # the tokens rouge-score stems (when longer than 3 characters)


def _per_character(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _PER_CHARACTER)


def _word_character(char: str) -> bool:
    return unicodedata.category(char)[0] in "LN" and unicodedata.category(char) != "No"


def _outside_latin(char: str) -> bool:
    if ord(char) < 0x80 or not _word_character(char):
        return False
    return not unicodedata.name(char, "").startswith("LATIN ")


def non_latin(*texts: str) -> bool:
    """Whether any of ``texts`` holds a letter or digit of a script other than Latin (which rouge-score's tokenizer
    drops)."""
    return any(_outside_latin(char) for text in texts for char in text)


class ScriptTokenizer(tokenizers.Tokenizer):
    """Lower-cased words of Unicode letters and digits (with their combining marks), one token per character in
    scripts without spaces; ``a-z0-9`` words longer than 3 characters Porter-stemmed as rouge-score stems them."""

    def __init__(self, use_stemmer: bool = True) -> None:
        self._stemmer = porter.PorterStemmer() if use_stemmer else None

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        word: list[str] = []
        for char in unicodedata.normalize("NFC", text.lower()):
            if word and unicodedata.category(char)[0] == "M":  # a combining mark stays with its letter
                word.append(char)
                continue
            if word and (not _word_character(char) or _per_character(char) or _per_character(word[0])):
                tokens.append("".join(word))
                word = []
            if _word_character(char):
                word.append(char)
        if word:
            tokens.append("".join(word))
        if self._stemmer is not None:
            tokens = [self._stemmer.stem(token) if len(token) > 3 and _STEMMED.match(token) else token
                      for token in tokens]
        return [token for token in tokens if token]


@functools.cache
def _scorer(types: tuple[str, ...], any_script: bool) -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(list(types), use_stemmer=True,
                                    tokenizer=ScriptTokenizer(use_stemmer=True) if any_script else None)


def rouge_scores(reference: str, prediction: str, types: Sequence[str]) -> dict[str, rouge_scorer.scoring.Score]:
    """rouge-score's ``types`` (``rouge1``, ``rouge2``, ``rougeL``) of ``prediction`` against ``reference``,
    Porter-stemmed; a pair with text outside the Latin script tokenised by ``ScriptTokenizer``."""
    return _scorer(tuple(types), non_latin(reference, prediction)).score(reference, prediction)


def rouge_l(reference: str, prediction: str) -> rouge_scorer.scoring.Score:
    """ROUGE-L (precision, recall, F-measure) of ``prediction`` against ``reference``, Porter-stemmed."""
    return rouge_scores(reference, prediction, ("rougeL",))["rougeL"]


def rouge_l_recall(reference: str, prediction: str) -> float:
    """LCS / len(reference): how much of the gold answer the generation reproduces (TOFU, FIUBench)."""
    return rouge_l(reference, prediction).recall


def rouge_1_recall(reference: str, prediction: str) -> float:
    """Shared unigrams (with counts) / the reference's unigrams, Porter-stemmed (TOFU's, FIUBench's rouge1_recall)."""
    return rouge_scores(reference, prediction, ("rouge1",))["rouge1"].recall


def keyword_match(prediction: str, keywords: Sequence[str]) -> float:
    """Fraction of gold keywords found (case-insensitively) in the prediction, capped at 1 (FIUBench's EM)."""
    if not keywords:
        raise ValueError("keyword_match needs at least one keyword")
    found = sum(keyword.lower() in prediction.lower() for keyword in keywords)
    return min(1.0, found / len(keywords))
