"""MLLMU-Bench's release layout (HF ``MLLMMU/MLLMU-Bench`` + ``MLLMMU/baseline_train_split``) read into profiles.

A data folder holds one sub-folder per HF config, each with ``*.parquet`` shards (read with pyarrow):

- evaluation sets, one row per profile: ``Full_Set`` (500 fictitious), ``Retain_Set`` (153 real celebrities),
  ``Test_Set`` (the fictitious profiles with transformed images in ``images``), and ``forget_{5,10,15}`` /
  ``retain_{95,90,85}``. Columns ``image`` ({bytes, path}), ``ID``, ``Classification_Task``,
  ``Generation_Task``, ``Mask_Task`` (nested structs, or JSON strings).
- training sets, one row per profile with ``metadata``, a JSON string of ``[{"ID", "Question", "Answer"}]``
  (an optional ``"Type": "Pure_Text"`` trains that QA without the image):
  ``ft_Data`` (every fictitious profile: the vanilla finetune) and, under ``baseline_train_split/``, the
  unlearning splits ``forget_r`` / ``retain_{100-r}``. Without that folder a split's training QAs are taken
  from ``ft_Data`` rows whose ID is in the evaluation split of the same name.

Every error names the file and the row.
"""

from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image

from unlearning.data.examples import DataError, Example
from unlearning.data.images import UNREADABLE, open_checked, too_large
from unlearning.data.records import object_list

FORGET_SPLITS = ("forget_5", "forget_10", "forget_15")
RETAIN_OF = {"forget_5": "retain_95", "forget_10": "retain_90", "forget_15": "retain_85"}
TRAIN_SPLIT_DIR = "baseline_train_split"
TASKS = ("classification", "cloze", "generation")
MODALITIES = ("image_text", "text")
TYPE_TO_MODALITY = {"Image_Textual": "image_text", "Pure_Text": "text"}
CLASSIFICATION_KEYS = {"Image_Textual_Questions": "image_text", "Pure_Text_Questions": "text"}
LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Item:
    """One evaluation question of a profile."""

    task: str  # classification | cloze | generation
    modality: str  # image_text | text
    index: int  # position within the profile's (task, modality) list
    question: str
    answer: str  # the correct letter for classification, the ground truth otherwise
    options: tuple[tuple[str, str], ...] = ()  # (letter, text), classification only


@dataclass(frozen=True)
class Profile:
    """One person: an image (or the Test_Set's transformed images) and the evaluation questions about them."""

    id: str
    where: str = field(metadata={"fingerprint": False})  # "<file>: row <n>", for messages only
    image: bytes | None
    images: tuple[bytes, ...]  # Test_Set's transformed images; empty elsewhere
    items: tuple[Item, ...]

    def items_of(self, task: str, modality: str) -> list[Item]:
        return [item for item in self.items if item.task == task and item.modality == modality]


def parquet_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise DataError(f"{folder}: no parquet files (expected an MLLMU-Bench set such as "
                        f"{folder.name}/train-00000-of-00001.parquet)")
    return files


def read_rows(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every row of every shard in ``folder``, each with a "<file>: row <n>" label."""
    rows = []
    for path in parquet_files(folder):
        try:
            table = pq.read_table(path)
        except Exception as error:  # pyarrow raises several types for a corrupt file
            raise DataError(f"{path}: cannot be read as parquet ({error})") from error
        rows += [(f"{path}: row {index}", row) for index, row in enumerate(table.to_pylist())]
    return rows


def _field(row: dict[str, Any], name: str, where: str) -> Any:
    if name not in row or row[name] is None:
        raise DataError(f"{where}: missing field {name!r}")
    return row[name]


def _profile_id(row: dict[str, Any], where: str) -> str:
    """The ``ID`` column: a string such as "001" (a number would lose its leading zeros; never coerced)."""
    value = _field(row, "ID", where)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field 'ID' must be a non-empty string, got {type(value).__name__} {value!r}")
    return value


def _nested(value: Any, where: str, name: str) -> Any:
    """Task columns are nested structs in the release; accept them JSON-encoded too."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: field {name!r} is not valid JSON ({error.msg})") from error
    return value


def image_bytes(value: Any, where: str, name: str = "image") -> bytes:
    """The bytes of an HF Image cell ({bytes, path}), checked to decode."""
    data = value.get("bytes") if isinstance(value, dict) else value
    if not isinstance(data, bytes) or not data:
        raise DataError(f"{where}: field {name!r} has no image bytes")
    try:
        with open_checked(io.BytesIO(data)) as image:
            image.load()  # a full decode: verify() lets a truncated JPEG through
    except Image.DecompressionBombError as error:
        raise DataError(f"{where}: field {name!r}: the image is {too_large(error)}") from error
    except UNREADABLE as error:
        raise DataError(f"{where}: field {name!r} is not a readable image ({error})") from error
    return data


def _text(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if value is None:
        raise DataError(f"{where}: missing field {key!r}")
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field {key!r} must be a non-empty string, got {type(value).__name__} {value!r}")
    return value


def _classification(task: Any, where: str) -> list[Item]:
    if not isinstance(task, dict):
        raise DataError(f"{where}: 'Classification_Task' must map question kinds to lists")
    items = []
    for key, modality in CLASSIFICATION_KEYS.items():
        for index, entry in enumerate(task.get(key) or []):
            here = f"{where} Classification_Task.{key}[{index}]"
            options = entry.get("Options")
            if not isinstance(options, dict):
                raise DataError(f"{here}: missing field 'Options'")
            pairs = tuple((letter, _text(options, letter, f"{here} Options")) for letter in LETTERS
                          if options.get(letter) is not None)
            if len(pairs) < 2:
                raise DataError(f"{here}: 'Options' needs at least two of {', '.join(LETTERS)}")
            answer = _text(entry, "Correct_Answer", here).strip()
            letters = [letter for letter, _ in pairs]
            if answer not in letters and answer[:1].upper() in letters:
                answer = answer[:1].upper()  # "B" written as "B." or "B: ..."
            if answer not in letters:
                raise DataError(f"{here}: 'Correct_Answer' {answer!r} is not one of the options {letters}")
            items.append(Item("classification", modality, index, _text(entry, "Question", here), answer, pairs))
    return items


def _typed_list(task: Any, name: str, kind: str, where: str) -> list[Item]:
    if not isinstance(task, list):
        raise DataError(f"{where}: {name!r} must be a list of questions")
    items, counts = [], {modality: 0 for modality in MODALITIES}
    for position, entry in enumerate(task):
        here = f"{where} {name}[{position}]"
        if not isinstance(entry, dict):
            raise DataError(f"{here}: expected an object")
        kind_name = _text(entry, "Type", here)
        if kind_name not in TYPE_TO_MODALITY:
            raise DataError(f"{here}: 'Type' {kind_name!r} is not one of {sorted(TYPE_TO_MODALITY)}")
        modality = TYPE_TO_MODALITY[kind_name]
        question = _text(entry, "Question", here)
        if kind == "cloze" and "__" not in question:
            raise DataError(f"{here}: a Mask_Task question needs a '__' blank")
        items.append(Item(kind, modality, counts[modality], question, _text(entry, "Ground_Truth", here)))
        counts[modality] += 1
    return items


def parse_profile(row: dict[str, Any], where: str, image_column: str = "image") -> Profile:
    profile_id = _profile_id(row, where)
    where = f"{where} (ID {profile_id})"
    if image_column == "images":
        raw = _field(row, "images", where)
        if not isinstance(raw, list) or not raw:
            raise DataError(f"{where}: field 'images' must be a non-empty list of images")
        image, images = None, tuple(image_bytes(v, where, f"images[{i}]") for i, v in enumerate(raw))
    else:
        image, images = image_bytes(_field(row, "image", where), where), ()
    items = _classification(_nested(_field(row, "Classification_Task", where), where, "Classification_Task"), where)
    items += _typed_list(_nested(_field(row, "Generation_Task", where), where, "Generation_Task"),
                         "Generation_Task", "generation", where)
    items += _typed_list(_nested(_field(row, "Mask_Task", where), where, "Mask_Task"), "Mask_Task", "cloze", where)
    return Profile(profile_id, where, image, images, tuple(items))


def parse_train_row(row: dict[str, Any], where: str) -> list[Example]:
    """One ``ft_Data`` / ``baseline_train_split`` row: its image and the QAs of its ``metadata`` JSON string.

    A QA may carry ``"Type": "Pure_Text"`` (the evaluation tasks' field; the release's QAs have none and are
    all image+text): it is then trained without the image.
    """
    profile_id = _profile_id(row, where)
    where = f"{where} (ID {profile_id})"
    image = image_bytes(_field(row, "image", where), where)
    metadata = _field(row, "metadata", where)
    try:
        qas = json.loads(metadata) if isinstance(metadata, str) else metadata
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: 'metadata' is not valid JSON ({error.msg})") from error
    examples = []
    for index, (here, qa) in enumerate(object_list(qas, where, "metadata", min_len=1)):
        kind = qa.get("Type", "Image_Textual")
        if kind not in TYPE_TO_MODALITY:
            raise DataError(f"{here}: 'Type' {kind!r} is not one of {sorted(TYPE_TO_MODALITY)}")
        examples.append(Example(_text(qa, "Question", here), _text(qa, "Answer", here),
                                image if kind == "Image_Textual" else None, uid=f"{profile_id}/{index}"))
    return examples


class MllmuBench:
    """An MLLMU-Bench data folder: the evaluation sets, the training sets, and the split rules."""

    def __init__(self, data_dir: str | Path, train_split_dir: str | Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise DataError(f"MLLMU-Bench data folder {self.data_dir} does not exist")
        self.train_split_dir = Path(train_split_dir) if train_split_dir else self.data_dir / TRAIN_SPLIT_DIR

    def _folder(self, name: str) -> Path:
        folder = self.data_dir / name
        if not folder.is_dir():
            known = sorted(p.name for p in self.data_dir.iterdir() if p.is_dir())
            raise DataError(f"unknown MLLMU-Bench set {name!r}: no folder {folder} (present: {', '.join(known)})")
        return folder

    @functools.lru_cache(maxsize=16)  # noqa: B019 (one instance per process; sets are re-read otherwise)
    def profiles(self, name: str) -> tuple[Profile, ...]:
        """An evaluation set (Full_Set, Retain_Set, Test_Set, forget_r, retain_r), one profile per row."""
        column = "images" if name == "Test_Set" else "image"
        profiles = tuple(parse_profile(row, where, column) for where, row in read_rows(self._folder(name)))
        seen: dict[str, str] = {}
        for profile in profiles:
            if profile.id in seen:
                raise DataError(f"{profile.where}: duplicate ID (also {seen[profile.id]})")
            seen[profile.id] = profile.where
        return profiles

    def split_ids(self, split: str) -> list[str]:
        if split not in FORGET_SPLITS and split not in RETAIN_OF.values():
            raise DataError(f"unknown MLLMU-Bench split {split!r}; known: full, "
                            f"{', '.join([*FORGET_SPLITS, *RETAIN_OF.values()])}")
        return [profile.id for profile in self.profiles(split)]

    @staticmethod
    def retain_split(forget_split: str) -> str:
        if forget_split not in RETAIN_OF:
            raise DataError(f"unknown MLLMU-Bench forget split {forget_split!r}; known: {', '.join(FORGET_SPLITS)}")
        return RETAIN_OF[forget_split]

    @functools.lru_cache(maxsize=8)  # noqa: B019
    def _train_rows(self, folder: Path) -> tuple[tuple[str, tuple[Example, ...]], ...]:
        return tuple((_profile_id(row, where), tuple(parse_train_row(row, where)))
                     for where, row in read_rows(folder))

    def train_examples(self, split: str) -> list[Example]:
        """``full``: ft_Data (the vanilla finetune); a forget/retain split: its baseline_train_split rows,
        else the ft_Data rows of the profiles in the evaluation split of that name."""
        if split == "full":
            return [ex for _, examples in self._train_rows(self._folder("ft_Data")) for ex in examples]
        ids = set(self.split_ids(split))
        own = self.train_split_dir / split
        rows = self._train_rows(own if own.is_dir() else self._folder("ft_Data"))
        found = {profile_id for profile_id, _ in rows if profile_id in ids}
        if found != ids:
            missing = sorted(ids - found)[:5]
            raise DataError(f"{own if own.is_dir() else self.data_dir / 'ft_Data'}: no training QAs for "
                            f"{len(ids - found)} profiles of {split} (e.g. {missing})")
        return [ex for profile_id, examples in rows if profile_id in ids for ex in examples]

    def texts(self) -> list[str]:
        """Every training QA and evaluation question/answer/option, for an offline tokenizer."""
        out = [text for ex in self.train_examples("full") for text in (ex.question, ex.answer)]
        for name in ("Full_Set", "Retain_Set"):
            for profile in self.profiles(name):
                for item in profile.items:
                    out += [item.question, item.answer, *(text for _, text in item.options)]
        return out
