"""From captions and object scores to EFUF's training files (``finetune/format_data.py``, restated).

A caption's clauses are its runs of text between ``, . ; ! ? :``. Each clause naming an object becomes one
``pos_neg.json`` entry: the caption up to the clause's end, the clause's start, and the lowest score of the
objects it names (a clause with a hallucinated object is a hallucinated clause, even beside a grounded one; the
original wrote one entry per object, so a shared clause appeared once per object, each with its own score). An
object is found in its clause as a whole word (the original's substring search found "cat" in "catch"). Each
caption with an object becomes one ``sentences.json`` entry with the mean and minimum of its objects' scores.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from efuf.chair import Mention, ObjectVocabulary
from efuf.data import Caption, ClauseScore, SentenceScore

CLAUSE = re.compile(r"[^,.;!?:]+")

ObjectScore = Callable[[Caption, Mention], float]


def clause_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each clause; a clause keeps the space that follows the delimiter before it."""
    return [(m.start(), m.end()) for m in CLAUSE.finditer(text) if m.group(0).strip()]


def curate(captions: Iterable[Caption], find: ObjectVocabulary | Callable[[Caption], list[Mention]],
           score: ObjectScore) -> tuple[list[ClauseScore], list[SentenceScore]]:
    """``pos_neg.json`` and ``sentences.json`` entries of the captions: objects found by ``find`` (a vocabulary,
    or any function giving a caption's mentions), scored by ``score``."""
    if isinstance(find, ObjectVocabulary):
        vocabulary = find

        def find(caption: Caption) -> list[Mention]:
            return vocabulary.mentions(caption.text)

    clauses, sentences = [], []
    for caption in captions:
        mentions = find(caption)
        if not mentions:
            continue
        by_word: dict[str, float] = {}
        for mention in mentions:
            if mention.word not in by_word:
                by_word[mention.word] = float(score(caption, mention))
        for start, end in clause_spans(caption.text):
            inside = [by_word[m.word] for m in mentions if start <= m.start and m.end <= end]
            if inside:
                clauses.append(ClauseScore(caption.image, caption.text[:end], start, min(inside)))
        values = list(by_word.values())
        sentences.append(SentenceScore(caption.image, caption.text, sum(values) / len(values), min(values)))
    return clauses, sentences


def coco_label_score(truth: Mapping[str, Sequence[str]], vocabulary: ObjectVocabulary, present: float,
                     absent: float) -> ObjectScore:
    """Scores from COCO ground truth instead of CLIP (``labels=coco``): ``present`` for an object whose category
    the image's annotations hold, ``absent`` otherwise."""

    def score(caption: Caption, mention: Mention) -> float:
        return present if mention.category in set(truth.get(caption.image, ())) else absent

    return score
