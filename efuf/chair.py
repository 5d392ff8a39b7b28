"""CHAIR (Rohrbach et al. 2018) as EFUF scores captions with it: which COCO objects a caption mentions, and which
of them the image does not contain. This is the toolkit's reader; ``efuf/chair_original.py`` is eval_auto.py's
(nltk tokens and WordNet lemmas: compat switch ``chair_as_original``).

A caption is lower-cased and split into words (a possessive "'s" dropped); each word is singularised when its
singular form is an object word (so "buses" is "bus" and "bus" stays "bus"); two-word names are joined, in the
plural too ("hot dog", "traffic lights", "wine glasses", and the rules for "baby/adult <animal>", "passenger
<vehicle>", "bow tie", "toilet seat"); "seat" is dropped when "toilet" is mentioned. Each distinct object word of
a caption counts once. An image's ground truth is the categories of its COCO instances together with those its
reference captions mention.

CHAIR_s = captions with at least one hallucinated object / captions; CHAIR_i = hallucinated object words /
mentioned object words.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import inflect
import numpy as np

DEFAULT_SYNONYMS = Path(__file__).with_name("synonyms.txt")
ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")
VEHICLES = ("jet", "train")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def read_synonyms(path: Path) -> dict[str, str]:
    """``category, synonym, ...`` lines -> {word or phrase: category}; the category names itself."""
    mapping: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        names = [name.strip().lower() for name in line.split(",") if name.strip()]
        if not names:
            continue
        for name in names:
            if mapping.get(name, names[0]) != names[0]:
                raise ValueError(f"{path}: line {number}: {name!r} is already a synonym of {mapping[name]!r}")
            mapping[name] = names[0]
    return mapping


@functools.cache
def _inflect() -> inflect.engine:
    return inflect.engine()


@dataclass(frozen=True)
class Mention:
    """An object named in a caption: its object word, category, and where it stands (``text`` as written)."""

    word: str
    category: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class ObjectVocabulary:
    """The object words and phrases of a synonym list, and how captions are read against them."""

    synonyms: Mapping[str, str]

    @classmethod
    def from_file(cls, path: Path = DEFAULT_SYNONYMS) -> ObjectVocabulary:
        return cls(read_synonyms(path))

    @functools.cached_property
    def phrases(self) -> dict[str, str]:
        """Two-word names -> the word they stand for, as CHAIR joins them."""
        out = {name: name for name in self.synonyms if " " in name}
        out.update({"home plate": "home plate", "train track": "train track", "bow tie": "tie",
                    "toilet seat": "toilet", "wine glas": "wine glass"})
        for animal in ANIMALS:
            out[f"baby {animal}"] = out[f"adult {animal}"] = animal
        for vehicle in VEHICLES:
            out[f"passenger {vehicle}"] = vehicle
        return out

    def singular(self, word: str) -> str:
        """The word itself when it names an object, else its singular when that does, else the word."""
        if word in self.synonyms:
            return word
        singular = _inflect().singular_noun(word)
        return singular if singular and singular in self.synonyms else word

    def mentions(self, caption: str) -> list[Mention]:
        """Every object mention of a caption, in order, with its character span (repeats included)."""
        words = [(m.group(0).removesuffix("'s"), m.start(), m.end()) for m in _WORD.finditer(caption.lower())]
        tokens = [(self.singular(word), start, end) for word, start, end in words]
        joined, i = [], 0
        while i < len(tokens):
            pair = next((p for p in self._pairs(tokens[i][0], words[i + 1][0], tokens[i + 1][0])
                         if p in self.phrases), None) if i + 1 < len(tokens) else None
            if pair is not None:
                joined.append((self.phrases[pair], tokens[i][1], tokens[i + 1][2]))
                i += 2
            else:
                joined.append(tokens[i])
                i += 1
        if any(word == "toilet" for word, _, _ in joined):
            joined = [token for token in joined if token[0] != "seat"]
        return [Mention(word, self.synonyms[word], start, end, caption[start:end])
                for word, start, end in joined if word in self.synonyms]

    @staticmethod
    def _pairs(first: str, second: str, second_singular: str) -> list[str]:
        """Two words as a two-word name may be written: as read, and with the second in the singular (the plural of
        "traffic light" is not a plural of an object word on its own)."""
        plain = _inflect().singular_noun(second) or second
        return [f"{first} {second_singular}", f"{first} {plain}"]

    def object_words(self, caption: str) -> list[str]:
        """The object words and phrases a caption mentions, in order, each distinct word once."""
        return list(dict.fromkeys(mention.word for mention in self.mentions(caption)))

    def categories(self, caption: str) -> set[str]:
        return {self.synonyms[word] for word in self.object_words(caption)}


@dataclass(frozen=True)
class CaptionChair:
    """One caption's objects: every mentioned object word with its category, and the hallucinated ones."""

    mentioned: tuple[tuple[str, str], ...]
    hallucinated: tuple[tuple[str, str], ...]


def caption_chair(vocabulary: ObjectVocabulary, caption: str, truth: Iterable[str]) -> CaptionChair:
    truth = set(truth)
    mentioned = tuple((word, vocabulary.synonyms[word]) for word in vocabulary.object_words(caption))
    return CaptionChair(mentioned, tuple(pair for pair in mentioned if pair[1] not in truth))


def ground_truth(vocabulary: ObjectVocabulary, instance_categories: Iterable[str],
                 reference_captions: Sequence[str]) -> set[str]:
    """An image's objects: its annotated instance categories and those its reference captions name."""
    truth = {vocabulary.synonyms.get(name.lower(), name.lower()) for name in instance_categories}
    for caption in reference_captions:
        truth |= vocabulary.categories(caption)
    return truth


def chair_scores(results: Sequence[CaptionChair]) -> dict[str, float | int]:
    """CHAIR_s, CHAIR_i and the counts behind them."""
    mentioned = sum(len(r.mentioned) for r in results)
    hallucinated = sum(len(r.hallucinated) for r in results)
    with_hallucination = sum(bool(r.hallucinated) for r in results)
    return {"chair_s": with_hallucination / len(results) if results else 0.0,
            "chair_i": hallucinated / mentioned if mentioned else 0.0,
            "n_captions": len(results), "n_mentioned": mentioned, "n_hallucinated": hallucinated}


def weighted_chair(weights: np.ndarray, results: Sequence[CaptionChair]) -> dict[str, np.ndarray]:
    """CHAIR_s and CHAIR_i with each caption counted ``weights[b, i]`` times, per row ``b`` (a bootstrap resample
    of images). CHAIR_i stays a ratio of sums, hallucinated over mentioned words of the drawn captions, not a mean
    of per-caption ratios: ``chair_scores`` of the repeated captions, for every row at once."""
    weights = np.asarray(weights, dtype=float)
    mentioned = weights @ np.array([len(r.mentioned) for r in results], dtype=float)
    hallucinated = weights @ np.array([len(r.hallucinated) for r in results], dtype=float)
    with_hallucination = weights @ np.array([bool(r.hallucinated) for r in results], dtype=float)
    captions = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"chair_s": np.where(captions > 0, with_hallucination / np.where(captions > 0, captions, 1), 0.0),
                "chair_i": np.where(mentioned > 0, hallucinated / np.where(mentioned > 0, mentioned, 1), 0.0),
                "n_captions": captions, "n_mentioned": mentioned, "n_hallucinated": hallucinated}
