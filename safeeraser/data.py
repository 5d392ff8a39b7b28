"""SafeEraser's release (``all_train.json``, ``all_val.json`` and the images) read into records and streams.

A record holds one harmful image (its parent folder is the category: Violence, Weapon, Privacy, Sex, HateSpeech,
IllegalActivity), its harmless "SD" twin image, the harmful questions asked about it (``unsafe_pairs``: the
question, the vanilla model's harmful answer ``model_response`` and its answer with the SD image
``sd_response``), and up to four harmless questions with the vanilla model's answers (``UnharmPair_text1/2``
about the concept, ``UnharmPair_image1/2`` about the image). Streams for forgetting a split:

- ``forget``: each harmful question with its image and the harmful answer;
- ``retain``: the harmless questions with the vanilla answers, asked with the record's image (as the original);
- ``decoupled``: each harmful question with the SD image and ``sd_response``, aligned with its own forget example
  (Prompt Decouple; the original paired it with a random one);
- ``refusal``: each harmful question answered with a refusal (PO), from ``prompt.json`` or the packaged list.

The vanilla answers (``model_response``, ``sd_response``, ``Prediction``) may be empty strings, as the release's
are in places: they are data, kept and counted (``empty_answers``; one log line per file), and train what an
empty answer trains (the end of the turn; see ``ChatCollator.target_text``). Every error names the file, the record
and the field.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearning.data.examples import DataError, Example
from unlearning.data.records import (
    check_image,
    load_refusals,
    object_field,
    object_list,
    read_records,
    resolve_image,
    string_field,
)

CATEGORIES = ("Violence", "Weapon", "Privacy", "Sex", "HateSpeech", "IllegalActivity")
SPLIT_FILES = {"train": "all_train.json", "val": "all_val.json"}
HARMLESS_KEYS = ("UnharmPair_text1", "UnharmPair_text2", "UnharmPair_image1", "UnharmPair_image2")
PACKAGED_REFUSALS = Path(__file__).with_name("refusals.json")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnsafePair:
    question: str
    model_response: str  # the vanilla model's harmful answer: what forgetting ascends on
    sd_response: str  # the vanilla model's answer to the same question with the harmless SD image


@dataclass(frozen=True)
class HarmlessPair:
    key: str  # UnharmPair_text1 | UnharmPair_text2 | UnharmPair_image1 | UnharmPair_image2
    question: str
    prediction: str  # the vanilla model's answer: the reference of ROUGE-L and the judge score


@dataclass(frozen=True)
class SafeRecord:
    split: str
    index: int
    category: str
    image: Path
    sd_image: Path
    unsafe: tuple[UnsafePair, ...]
    harmless: tuple[HarmlessPair, ...]

    def uid(self, pair: int | str) -> str:
        return f"{self.split}/{self.index}/{pair}"


def category_of(raw_path: str, where: str) -> str:
    """The category is the name of the image's parent folder, as the original read it."""
    category = Path(raw_path).parent.name
    if category not in CATEGORIES:
        raise DataError(f"{where}: image_path {raw_path!r} lies in folder {category!r}, not a category folder "
                        f"({', '.join(CATEGORIES)})")
    return category


def parse_record(record: dict[str, Any], data_dir: Path, split: str, index: int, where: str) -> SafeRecord:
    raw_image = string_field(record, "image_path", where)
    category = category_of(raw_image, where)
    image = resolve_image(data_dir, raw_image, where)
    check_image(image, where)
    sd_image = resolve_image(data_dir, string_field(record, "SDImage_path", where), f"{where} SDImage_path")
    check_image(sd_image, where)
    unsafe = []
    for here, pair in object_list(record.get("unsafe_pairs"), where, "unsafe_pairs"):
        unsafe.append(UnsafePair(string_field(pair, "question", here),
                                 string_field(pair, "model_response", here, allow_empty=True),
                                 string_field(pair, "sd_response", here, allow_empty=True)))
    harmless = []
    for key in HARMLESS_KEYS:
        if key in record:
            entry = object_field(record, key, where)
            here = f"{where} {key}"
            harmless.append(HarmlessPair(key, string_field(entry, "Question", here),
                                         string_field(entry, "Prediction", here, allow_empty=True)))
    return SafeRecord(split, index, category, image, sd_image, tuple(unsafe), tuple(harmless))


def empty_answers(records: Sequence[SafeRecord]) -> dict[str, int]:
    """How many of the records' vanilla answers are empty, by field."""
    return {"model_response": sum(not p.model_response.strip() for r in records for p in r.unsafe),
            "sd_response": sum(not p.sd_response.strip() for r in records for p in r.unsafe),
            "Prediction": sum(not p.prediction.strip() for r in records for p in r.harmless)}


class SafeEraserData:
    """A SafeEraser data folder: ``all_train.json``, ``all_val.json`` (JSON lists) and the images they name."""

    def __init__(self, data_dir: str | Path, capitalize: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.capitalize = capitalize  # the original's training text: str.capitalize()d questions and answers
        if not self.data_dir.is_dir():
            raise DataError(f"SafeEraser data folder {self.data_dir} does not exist")

    @functools.lru_cache(maxsize=4)  # noqa: B019 (one instance per process)
    def records(self, split: str) -> tuple[SafeRecord, ...]:
        """``train`` (all_train.json: efficacy, and what is forgotten) or ``val`` (all_val.json: generality)."""
        if split not in SPLIT_FILES:
            raise DataError(f"unknown SafeEraser split {split!r}; known: {', '.join(SPLIT_FILES)} (and full for "
                            "finetuning)")
        path = self.data_dir / SPLIT_FILES[split]
        records = tuple(parse_record(record, self.data_dir, split, index, f"{path}: record {index}")
                        for index, record in enumerate(read_records(path)))
        empty = empty_answers(records)
        if any(empty.values()):
            log.info("%s: empty vanilla answers kept as data: %s", path,
                     ", ".join(f"{field} {n}" for field, n in empty.items()))
        return records

    def refusals(self) -> list[str]:
        return load_refusals(self.data_dir, PACKAGED_REFUSALS)

    def _example(self, question: str, answer: str, image: Path, uid: str) -> Example:
        """A training example; with ``capitalize`` as data_module.py:157-167 wrote it (``str.capitalize()``: the
        first letter upper, every other lower)."""
        if self.capitalize:
            question, answer = question.capitalize(), answer.capitalize()
        return Example(question, answer, image, uid=uid)

    def forget(self, split: str) -> list[Example]:
        return [self._example(pair.question, pair.model_response, record.image, record.uid(j))
                for record in self.records(split) for j, pair in enumerate(record.unsafe)]

    def decoupled(self, split: str) -> list[Example]:
        return [self._example(pair.question, pair.sd_response, record.sd_image, record.uid(j))
                for record in self.records(split) for j, pair in enumerate(record.unsafe)]

    def retain(self, split: str) -> list[Example]:
        return [self._example(pair.question, pair.prediction, record.image, record.uid(pair.key))
                for record in self.records(split) for pair in record.harmless]

    def refusal(self, split: str, seed: int) -> list[Example]:
        refusals, rng = self.refusals(), random.Random(seed)
        if self.capitalize:  # data_module.py:167: idk.strip(" ").capitalize()
            refusals = [refusal.strip(" ").capitalize() for refusal in refusals]
        return [Example(example.question, rng.choice(refusals), example.image, uid=example.uid)
                for example in self.forget(split)]

    def finetune_examples(self, split: str) -> list[Example]:
        """What the vanilla model answers, as training data: every harmful, SD-twin and harmless answer of
        ``split`` (``full``: both files). Only the built-in benchmark trains its vanilla model this way."""
        splits = list(SPLIT_FILES) if split == "full" else [split]
        return [example for name in splits
                for example in (*self.forget(name), *self.decoupled(name), *self.retain(name))]

    def texts(self) -> list[str]:
        out = list(self.refusals())
        for split in SPLIT_FILES:
            for record in self.records(split):
                out += [text for pair in record.unsafe for text in (pair.question, pair.model_response,
                                                                     pair.sd_response)]
                out += [text for pair in record.harmless for text in (pair.question, pair.prediction)]
        return out
