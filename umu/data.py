"""UMU-Bench's release layout (HF ``linbojunzi/UMU-bench``) read into profiles and training examples.

A data folder holds one sub-folder per split, each with its parquet file(s) (the authors read
``<split>/train-00000-of-00001.parquet``; any ``*.parquet`` shards are read here, in name order):
``forget_{5,10,15}``, ``retain_{95,90,85}``, ``full_data`` (what the vanilla model learnt) and ``Real_Person_Set``
(the 153 real people; ``real_person``, the name ``eval.py:712`` reads, is accepted too). One row per profile:

- ``ID`` (a string, or an integer, read as its decimal text), ``image`` (an HF image struct ``{bytes, path}``),
  ``Biography`` (text, unused by the authors' code; optional);
- ``MM_QA`` / ``UM_QA``: the training QAs asked with / without the image, a stringified Python dict
  ``{'question': {k: q}, 'answer': {k: a}}`` (``unlearn/unlearn_dataset.py:55-59``, ``:290-294``);
- ``Classify`` / ``Cloze`` / ``Generation``: the evaluation questions, a stringified dict
  ``{'unimodal': {k: entry}, 'muitimodal': {k: entry}}`` (the release's spelling, ``eval.py:127-128``;
  ``multimodal`` is accepted too), paired by key: the unimodal keys are the questions asked (``eval.py:129``)
  and each must have its multimodal twin. An entry has ``question`` and ``answer``; a Classify entry also has
  ``options`` {A, B, C, D} and an answer whose text before its first '.' is the letter (``eval.py:142``).

Dicts are parsed with ``ast.literal_eval`` as the authors parse them (JSON text is accepted too); a column that
already holds a struct is used as it is. Every error names the file, the row (and ID) and the field.
"""

from __future__ import annotations

import ast
import functools
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllmu.data import FORGET_SPLITS, LETTERS, MODALITIES, RETAIN_OF, Item, image_bytes, read_rows
from mllmu.data import _text as mllmu_text
from unlearning.data.examples import DataError, Example

FULL_SPLIT = "full_data"
REAL_SETS = ("Real_Person_Set", "real_person")  # the release's folder, then the one eval.py:712 reads
TASK_COLUMNS = {"classification": "Classify", "cloze": "Cloze", "generation": "Generation"}
QA_COLUMNS = {"image_text": "MM_QA", "text": "UM_QA"}  # trained with the image / as text only
MODALITY_KEYS = {"text": ("unimodal",), "image_text": ("muitimodal", "multimodal")}  # the release's spelling first
TRAIN_QA = ("both", "multimodal", "unimodal")
RETAIN_POOLS = ("all", "subsample")
SUBSAMPLE_SEED = 42  # unlearn_dataset.py:70 (random.seed(42) before random.sample)


@dataclass(frozen=True)
class QA:
    """One training QA of a profile: asked with its image (``image_text``) or as text only (``text``)."""

    modality: str
    key: str
    question: str
    answer: str


@dataclass(frozen=True)
class Profile:
    """One person: an image, the evaluation questions (paired across modalities by ``Item.index``) and, where
    the split has them, the training QAs; ``None`` for a column the file lacks (an error only when it is used)."""

    id: str
    where: str = field(metadata={"fingerprint": False})  # "<file>: row <n> (ID x)", for messages only
    image: bytes
    items: tuple[Item, ...] | None
    qas: tuple[QA, ...] | None
    missing: tuple[str, ...] = field(default=(), metadata={"fingerprint": False})  # absent columns, for messages

    def items_of(self, task: str, modality: str) -> list[Item]:
        return [item for item in self.evaluation_items() if item.task == task and item.modality == modality]

    def evaluation_items(self) -> tuple[Item, ...]:
        if self.items is None:
            raise DataError(f"{self.where}: missing field(s) {', '.join(map(repr, self.missing))}, needed to "
                            "evaluate this profile")
        return self.items

    def training_qas(self, modality: str) -> list[QA]:
        column = QA_COLUMNS[modality]
        if self.qas is None or column in self.missing:
            raise DataError(f"{self.where}: missing field {column!r}, needed to train on this profile")
        return [qa for qa in self.qas if qa.modality == modality]


def literal_dict(value: Any, where: str, name: str) -> dict[str, Any]:
    """A stringified dict cell parsed as the authors parse it (``ast.literal_eval``); JSON and structs accepted."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name!r} must be a stringified dict, got {type(value).__name__}")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as error:
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(f"{where}: field {name!r} is not a stringified dict ({type(error).__name__}: "
                            f"{error}; text begins {value[:60]!r})") from error
    if not isinstance(parsed, dict):
        raise DataError(f"{where}: field {name!r} must be a dict, got {type(parsed).__name__}")
    return parsed


def _text(entry: Any, key: str, where: str) -> str:
    """MLLMU-Bench's field check, after checking the parsed entry is a dict at all (a stringified dict may hold
    anything)."""
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected a dict, got {type(entry).__name__}")
    return mllmu_text(entry, key, where)


def profile_id(row: dict[str, Any], where: str) -> str:
    """The ``ID`` column as text (an integer ID as its decimal digits; a string kept as it is)."""
    value = row.get("ID")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{where}: field 'ID' must be a non-empty string or an integer, got "
                        f"{type(value).__name__} {value!r}")
    return str(value)


def parse_qas(value: Any, where: str, name: str, modality: str) -> list[QA]:
    """``MM_QA`` / ``UM_QA``: {'question': {k: q}, 'answer': {k: a}}, one QA per question key."""
    qa = literal_dict(value, where, name)
    questions, answers = qa.get("question"), qa.get("answer")
    if not isinstance(questions, dict) or not isinstance(answers, dict):
        raise DataError(f"{where}: field {name!r} must hold dicts 'question' and 'answer' keyed alike")
    out = []
    for key in questions:
        here = f"{where} {name}[{key!r}]"
        if key not in answers:
            raise DataError(f"{here}: question without an answer (keys: {sorted(map(str, answers))[:5]})")
        out.append(QA(modality, str(key), _text(questions, key, here), _text(answers, key, here)))
    if not out:
        raise DataError(f"{where}: field {name!r} has no questions")
    return out


def classify_letter(answer: str, letters: list[str], where: str) -> str:
    """The option letter of a Classify answer ("B. Paris" or "B"): its text before the first '.'."""
    letter = answer.split(".")[0].strip()
    if letter not in letters:
        raise DataError(f"{where}: 'answer' {answer!r} does not start with an option letter {letters}")
    return letter


def _task_items(value: Any, where: str, name: str, task: str) -> list[Item]:
    """One column's question pairs: the unimodal key order, each key asked in both modalities."""
    data = literal_dict(value, where, name)
    sides = {}
    for modality, spellings in MODALITY_KEYS.items():
        found = next((data[s] for s in spellings if s in data), None)
        if not isinstance(found, dict):
            raise DataError(f"{where}: field {name!r} needs a dict {spellings[0]!r} (keys present: "
                            f"{sorted(map(str, data))})")
        sides[modality] = found
    items = []
    for index, key in enumerate(sides["text"]):
        if key not in sides["image_text"]:
            raise DataError(f"{where} {name}[{key!r}]: no multimodal question with this key")
        for modality in MODALITIES:
            entry = sides[modality][key]
            here = f"{where} {name}.{MODALITY_KEYS[modality][0]}[{key!r}]"
            question, answer = _text(entry, "question", here), _text(entry, "answer", here)
            options: tuple[tuple[str, str], ...] = ()
            if task == "classification":
                raw = entry.get("options")
                if not isinstance(raw, dict):
                    raise DataError(f"{here}: missing field 'options'")
                missing = [letter for letter in LETTERS if letter not in raw]
                if missing:
                    raise DataError(f"{here}: 'options' lacks {missing} (eval.py:136-139 reads A, B, C and D)")
                options = tuple((letter, _text(raw, letter, f"{here} options")) for letter in LETTERS)
                answer = classify_letter(answer, list(LETTERS), here)
            items.append(Item(task, modality, index, question, answer, options))
    return items


def parse_profile(row: dict[str, Any], where: str) -> Profile:
    """One row; absent optional columns are recorded, and only an error where they are needed."""
    where = f"{where} (ID {profile_id(row, where)})"
    if row.get("image") is None:
        raise DataError(f"{where}: missing field 'image'")
    image = image_bytes(row["image"], where)
    missing = tuple(column for column in (*TASK_COLUMNS.values(), *QA_COLUMNS.values()) if row.get(column) is None)
    items = None
    if not any(column in missing for column in TASK_COLUMNS.values()):
        items = tuple(item for task, column in TASK_COLUMNS.items()
                      for item in _task_items(row[column], where, column, task))
    qas = tuple(qa for modality, column in QA_COLUMNS.items() if column not in missing
                for qa in parse_qas(row[column], where, column, modality))
    return Profile(profile_id(row, where), where, image, items, qas, missing)


def subsample(examples: list[Example], retain_split: str) -> list[Example]:
    """The authors' retain pool: ``int(n (1 - r) / r)`` examples of each modality drawn with seed 42, r the
    retain fraction (``unlearn_dataset.py:66-71``), about as many as the forget split has."""
    ratio = int(retain_split.split("_")[1]) / 100
    n = int(len(examples) * (1 - ratio) / ratio)
    return random.Random(SUBSAMPLE_SEED).sample(examples, n)


class UmuBench:
    """A UMU-Bench data folder: its splits as profiles, their training examples, the split rules."""

    def __init__(self, data_dir: str | Path, train_qa: str = "both", retain_pool: str = "all") -> None:
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise DataError(f"UMU-Bench data folder {self.data_dir} does not exist")
        if train_qa not in TRAIN_QA:
            raise ValueError(f"benchmark.options.train_qa must be one of {TRAIN_QA}, got {train_qa!r}")
        if retain_pool not in RETAIN_POOLS:
            raise ValueError(f"benchmark.options.retain_pool must be one of {RETAIN_POOLS}, got {retain_pool!r}")
        self.train_qa, self.retain_pool = train_qa, retain_pool

    def folder(self, split: str) -> Path:
        """The split's folder; an unknown split names the known ones and the folders present."""
        known = [*FORGET_SPLITS, *RETAIN_OF.values(), FULL_SPLIT, REAL_SETS[0]]
        if split not in known and split not in REAL_SETS:
            raise DataError(f"unknown UMU-Bench split {split!r}; known: {', '.join(known)}")
        names = REAL_SETS if split in REAL_SETS else (split,)
        for name in names:
            if (self.data_dir / name).is_dir():
                folder = self.data_dir / name
                if not any(folder.glob("*.parquet")):
                    raise DataError(f"{folder}: no parquet files (expected {name}/train-00000-of-00001.parquet)")
                return folder
        present = sorted(p.name for p in self.data_dir.iterdir() if p.is_dir())
        raise DataError(f"UMU-Bench split {split!r}: no folder {self.data_dir / names[0]} "
                        f"(present: {', '.join(present) or 'none'})")

    @functools.lru_cache(maxsize=16)  # noqa: B019 (one instance per process; splits are re-read otherwise)
    def profiles(self, split: str) -> tuple[Profile, ...]:
        """A split's rows as profiles, in file order; IDs must be unique."""
        profiles = tuple(parse_profile(row, where) for where, row in read_rows(self.folder(split)))
        seen: dict[str, str] = {}
        for profile in profiles:
            if profile.id in seen:
                raise DataError(f"{profile.where}: duplicate ID (also {seen[profile.id]})")
            seen[profile.id] = profile.where
        return profiles

    @staticmethod
    def retain_split(forget_split: str) -> str:
        if forget_split not in RETAIN_OF:
            raise DataError(f"unknown UMU-Bench forget split {forget_split!r}; known: {', '.join(FORGET_SPLITS)}")
        return RETAIN_OF[forget_split]

    def _modalities(self) -> tuple[str, ...]:
        return {"both": MODALITIES, "multimodal": ("image_text",), "unimodal": ("text",)}[self.train_qa]

    def train_examples(self, split: str) -> list[Example]:
        """The split's MM_QA (with the image) then UM_QA (text only) examples, as the authors train on both
        (``info_pre.py:43-44``; ``unlearn/*.py`` step on one batch of each); ``train_qa`` keeps one of them."""
        split = FULL_SPLIT if split == "full" else split
        profiles = self.profiles(split)
        out = []
        for modality in self._modalities():
            tag = "mm" if modality == "image_text" else "um"
            out += [Example(qa.question, qa.answer, p.image if modality == "image_text" else None,
                            uid=f"{p.id}/{tag}/{qa.key}") for p in profiles for qa in p.training_qas(modality)]
        return out

    def retain_examples(self, forget_split: str) -> list[Example]:
        """The retain stream: every QA of ``retain_{100-r}``, or the authors' subsample per modality."""
        retain = self.retain_split(forget_split)
        if self.retain_pool == "all":
            return self.train_examples(retain)
        out = []
        for modality in self._modalities():
            tag = "/mm/" if modality == "image_text" else "/um/"
            out += subsample([ex for ex in self.train_examples(retain) if tag in ex.uid], retain)
        return out

    def texts(self) -> list[str]:
        """Every training QA and evaluation question/answer/option, for an offline tokenizer."""
        out = []
        for split in (FULL_SPLIT, REAL_SETS[0]):
            for profile in self.profiles(split):
                out += [text for qa in profile.qas or () for text in (qa.question, qa.answer)]
                for item in profile.items or ():
                    out += [item.question, item.answer, *(text for _, text in item.options)]
        return out
