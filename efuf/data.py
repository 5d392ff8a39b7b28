"""EFUF's files: captions, COCO annotations, and the curated ``pos_neg.json`` / ``sentences.json``.

- captions: one caption per line, ``{image file} ### {caption}`` (the original's captions.txt; a trailing ``*``
  or ``#`` rank mark on the image name is accepted and dropped);
- COCO annotations (``instances_*.json`` and ``captions_*.json``): each image's object categories and reference
  captions, the ground truth of CHAIR (and of ``labels=coco`` curation);
- ``pos_neg.json``: one entry per caption clause naming an object, ``{"image", "sentence": the caption up to the end of
  the clause, "position": where the clause starts, "score": its CLIP score}``; the clause is scored (ascended when
  hallucinated, descended when grounded) after the caption's text before it;
- ``sentences.json``: one entry per caption, ``{"image", "sentence", "mean", "min"}`` of its objects' scores.

Scores must be finite numbers: NaN or Infinity (which Python's json reads) is an error naming the record and field.

The released ``starreeze/efuf-unlearning-30k`` files read the same way. Every error names the file and the record.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearning.data.examples import DataError
from unlearning.data.records import read_records, shown, string_field

SEPARATOR = " ### "


@dataclass(frozen=True)
class Caption:
    image: str
    text: str


@dataclass(frozen=True)
class ClauseScore:
    """A ``pos_neg.json`` entry: the clause ``sentence[position:]`` after its context ``sentence[:position]``."""

    image: str
    sentence: str
    position: int
    score: float

    @property
    def context(self) -> str:
        return self.sentence[:self.position]

    @property
    def clause(self) -> str:
        return self.sentence[self.position:]


@dataclass(frozen=True)
class SentenceScore:
    image: str
    sentence: str
    mean: float
    min: float


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The file's non-blank lines with their numbers (from 1); a missing file is an error naming it."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            yield number, line


def read_captions(path: Path) -> list[Caption]:
    out = []
    for number, line in numbered_lines(path):
        if SEPARATOR.strip() not in line:
            raise DataError(f"{path}: line {number} has no '###' between the image and its caption")
        image, caption = (part.strip() for part in line.split(SEPARATOR.strip(), 1))
        image = image.rstrip("*#").strip()
        if not image or not caption:
            raise DataError(f"{path}: line {number}: empty image name or caption")
        out.append(Caption(image, caption))
    return out


def _number(record: dict[str, Any], name: str, where: str) -> float:
    """A finite number (Python's json reads NaN and Infinity, and a NaN score falls through every threshold, its
    clause silently dropped)."""
    value = record.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where}: field {name!r} must be a number, got {shown(value)}")
    if not math.isfinite(value):
        image = record.get("image")
        raise DataError(f"{where}{f' (image {image!r})' if isinstance(image, str) else ''}: field {name!r} must be a "
                        f"finite number, got {value}")
    return float(value)


def read_pos_neg(path: Path) -> list[ClauseScore]:
    out = []
    for index, record in enumerate(read_records(path)):
        where = f"{path}: record {index}"
        sentence = string_field(record, "sentence", where)
        position = record.get("position")
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < len(sentence):
            raise DataError(f"{where}: field 'position' must be a character index inside the sentence "
                            f"(0 to {len(sentence) - 1}), got {shown(position)}")
        out.append(ClauseScore(string_field(record, "image", where), sentence, position,
                               _number(record, "score", where)))
    return out


def read_sentences(path: Path) -> list[SentenceScore]:
    out = []
    for index, record in enumerate(read_records(path)):
        where = f"{path}: record {index}"
        out.append(SentenceScore(string_field(record, "image", where), string_field(record, "sentence", where),
                                 _number(record, "mean", where), _number(record, "min", where)))
    return out


@dataclass(frozen=True)
class CocoAnnotations:
    """Per image file name: its instance category names and its reference captions."""

    categories: dict[str, tuple[str, ...]]
    captions: dict[str, tuple[str, ...]]

    @classmethod
    def read(cls, instances: Path, captions: Path) -> CocoAnnotations:
        return cls(_instance_categories(instances), _reference_captions(captions))

    def images(self) -> list[str]:
        return sorted(set(self.categories) | set(self.captions))


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error.msg})") from error
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: missing list {key!r} (a COCO annotation file)")
    return data


def _file_names(data: dict[str, Any], path: Path) -> dict[Any, str]:
    names = {}
    for index, image in enumerate(data["images"]):
        where = f"{path}: images[{index}]"
        if not isinstance(image, dict) or "id" not in image:
            raise DataError(f"{where}: missing field 'id'")
        names[image["id"]] = string_field(image, "file_name", where)
    return names


def _instance_categories(path: Path) -> dict[str, tuple[str, ...]]:
    data = _load(path)
    names = _file_names(data, path)
    if not isinstance(data.get("categories"), list):
        raise DataError(f"{path}: missing list 'categories'")
    category = {c.get("id"): string_field(c, "name", f"{path}: categories[{i}]")
                for i, c in enumerate(data["categories"])}
    found: dict[str, set[str]] = defaultdict(set)
    for index, annotation in enumerate(data["annotations"]):
        where = f"{path}: annotations[{index}]"
        image, category_id = annotation.get("image_id"), annotation.get("category_id")
        if image not in names:
            raise DataError(f"{where}: image_id {image!r} is not in 'images'")
        if category_id not in category:
            raise DataError(f"{where}: category_id {category_id!r} is not in 'categories'")
        found[names[image]].add(category[category_id])
    return {name: tuple(sorted(found.get(name, ()))) for name in names.values()}


def _reference_captions(path: Path) -> dict[str, tuple[str, ...]]:
    data = _load(path)
    names = _file_names(data, path)
    found: dict[str, list[str]] = defaultdict(list)
    for index, annotation in enumerate(data["annotations"]):
        where = f"{path}: annotations[{index}]"
        if annotation.get("image_id") not in names:
            raise DataError(f"{where}: image_id {annotation.get('image_id')!r} is not in 'images'")
        found[names[annotation["image_id"]]].append(string_field(annotation, "caption", where))
    return {name: tuple(found.get(name, ())) for name in names.values()}


@dataclass(frozen=True)
class InstructTurn:
    """The first exchange of a LLaVA-format conversation (``llava_v1_5_mix665k.json``): EFUF's "gold" data."""

    image: str | None
    question: str
    answer: str


def read_instruct(path: Path, limit: int | None = None) -> list[InstructTurn]:
    """The first human/gpt turn of each conversation (the ``<image>`` tag stripped), the first ``limit`` ones."""
    out = []
    for index, record in enumerate(read_records(path)):
        if limit is not None and len(out) >= limit:
            break
        where = f"{path}: record {index}"
        turns = record.get("conversations")
        if not isinstance(turns, list) or len(turns) < 2 or not all(isinstance(t, dict) for t in turns[:2]):
            raise DataError(f"{where}: field 'conversations' must list at least a human and a gpt turn, got "
                            f"{shown(turns)}")
        if (turns[0].get("from"), turns[1].get("from")) != ("human", "gpt"):
            raise DataError(f"{where}: the first two turns must come from 'human' then 'gpt', got "
                            f"{turns[0].get('from')!r}, {turns[1].get('from')!r}")
        question = string_field(turns[0], "value", f"{where}: conversations[0]").replace("<image>", "").strip()
        answer = string_field(turns[1], "value", f"{where}: conversations[1]").strip()
        image = string_field(record, "image", where) if "image" in record else None
        if not question or not answer:
            raise DataError(f"{where}: empty question or answer in the first turn")
        out.append(InstructTurn(image, question, answer))
    return out
