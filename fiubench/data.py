"""FIUBench's release format (``full.json`` + ``split.json``) read into Examples, with the original's split rules.

- ``full.json`` is JSON or JSON lines, one identity per record; only the first ``max_identities`` (400) are used.
- A split named in ``split.json`` keeps the QAs of its unique_ids; ``retain`` is every used identity outside
  forget1 ∪ forget5 ∪ forget10; ``full`` is every used identity.
- ``holdout`` holds identities never trained on, the non-members of the membership-inference AUC: those after
  the first ``max_identities`` (173 in the release), or the ids a ``holdout`` entry of ``split.json`` names
  (the built-in benchmark's way), which then leave ``full`` and ``retain``.
- Image paths are resolved inside the data folder (the release writes them relative to the original repo root,
  as ``./dataset/SFHQ/...``); a path that leaves the folder is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from unlearning.data import DataError, Example

IDENTITY_FIELDS = ("unique_id", "image_path", "qa_list")
QA_FIELDS = ("question", "answer", "paraphrased_question", "paraphrased_answer", "perturbed_answer", "keywords")
FORGET_SPLITS = ("forget1", "forget5", "forget10")
COMPUTED_SPLITS = ("full", "retain", "holdout")


@dataclass(frozen=True)
class FiuQA:
    """One question about one identity, with everything the metrics need."""

    unique_id: str
    qa_index: int
    image: Path
    question: str
    answer: str
    paraphrased_questions: tuple[str, ...]
    paraphrased_answer: str
    perturbed_answers: tuple[str, ...]
    keywords: tuple[str, ...]

    @property
    def uid(self) -> str:
        return f"{self.unique_id}/{self.qa_index}"

    def example(self, answer: str | None = None, question: str | None = None) -> Example:
        """The QA as an Example; ``answer``/``question`` swap in a candidate (perturbed, refusal, paraphrase)."""
        return Example(
            question=self.question if question is None else question,
            answer=self.answer if answer is None else answer,
            image=self.image,
            uid=self.uid,
        )


def read_records(path: Path) -> list[dict[str, Any]]:
    """A JSON list or JSON-lines file of objects."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8")
    try:
        records = json.loads(text)
        records = records if isinstance(records, list) else [records]
    except json.JSONDecodeError:
        records = []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DataError(f"{path}: line {line_number} is not valid JSON ({error.msg})") from error
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path}: record {index} is a {type(record).__name__}, expected an object")
    return records


def resolve_image(data_dir: Path, raw: str, where: str) -> Path:
    """Find ``raw`` inside ``data_dir``; the release's ``./dataset/`` prefix is tried stripped too."""
    root = data_dir.resolve()
    candidates = [Path(raw)]
    stripped = raw.removeprefix("./").removeprefix("dataset/")
    if stripped != raw.removeprefix("./"):
        candidates.append(Path(stripped))
    for candidate in candidates:
        path = (root / candidate).resolve()
        if not path.is_relative_to(root):
            raise DataError(f"{where}: image_path {raw!r} points outside the data folder {root}")
        if path.is_file():
            return path
    raise DataError(f"{where}: image {raw!r} not found under {root}")


def _check_image(path: Path, where: str) -> None:
    """Decode the whole image once (``verify()`` lets a truncated JPEG through)."""
    try:
        with Image.open(path) as image:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{where}: image {path} cannot be read ({error})") from error


def _require(record: dict[str, Any], fields: tuple[str, ...], where: str) -> None:
    for name in fields:
        if name not in record:
            raise DataError(f"{where}: missing field {name!r}")


def _string(record: dict[str, Any], name: str, where: str) -> str:
    """A field that must hold a non-empty string: a number or null is an error, never coerced."""
    value = record[name]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field {name!r} must be a non-empty string, got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {str(value)[:40]!r}"


def _string_list(value: Any, where: str, name: str, min_len: int = 1) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or len(value) < min_len or not all(isinstance(v, str) for v in value):
        raise DataError(f"{where}: field {name!r} must be a list of at least {min_len} strings, got {_shown(value)}")
    return tuple(value)


def parse_identity(record: dict[str, Any], data_dir: Path, where: str) -> list[FiuQA]:
    _require(record, IDENTITY_FIELDS, where)
    unique_id = _string(record, "unique_id", where)
    where = f"{where} (unique_id {unique_id})"
    image = resolve_image(data_dir, _string(record, "image_path", where), where)
    _check_image(image, where)
    if not isinstance(record["qa_list"], list) or not record["qa_list"]:
        raise DataError(f"{where}: 'qa_list' must be a non-empty list")
    qas = []
    for qa_index, qa in enumerate(record["qa_list"]):
        qa_where = f"{where} qa_list[{qa_index}]"
        if not isinstance(qa, dict):
            raise DataError(f"{qa_where}: expected an object")
        _require(qa, QA_FIELDS, qa_where)
        qas.append(FiuQA(
            unique_id=unique_id,
            qa_index=qa_index,
            image=image,
            question=_string(qa, "question", qa_where),
            answer=_string(qa, "answer", qa_where),
            paraphrased_questions=_string_list(qa["paraphrased_question"], qa_where, "paraphrased_question"),
            paraphrased_answer=_string(qa, "paraphrased_answer", qa_where),
            perturbed_answers=_string_list(qa["perturbed_answer"], qa_where, "perturbed_answer"),
            keywords=_string_list(qa["keywords"], qa_where, "keywords"),
        ))
    return qas


class FiuBench:
    """A FIUBench data folder: ``full.json``, ``split.json`` and the images."""

    def __init__(self, data_dir: str | Path, max_identities: int = 400, full_file: str = "full.json",
                 split_file: str = "split.json") -> None:
        self.data_dir = Path(data_dir)
        self.full_path = self.data_dir / full_file
        self.split_path = self.data_dir / split_file
        self.qas_by_id: dict[str, list[FiuQA]] = {}
        for index, record in enumerate(read_records(self.full_path)):
            where = f"{self.full_path}: record {index}"
            qas = parse_identity(record, self.data_dir, where)
            if qas[0].unique_id in self.qas_by_id:
                raise DataError(f"{where}: duplicate unique_id {qas[0].unique_id}")
            self.qas_by_id[qas[0].unique_id] = qas
        self.n_used = min(max_identities, len(self.qas_by_id))
        self.splits = self._read_splits()
        named_holdout = set(self.splits.get("holdout", []))
        ids = list(self.qas_by_id)
        self.used_ids = [i for i in ids[: self.n_used] if i not in named_holdout]
        self.holdout_ids = [i for position, i in enumerate(ids) if i in named_holdout or position >= self.n_used]

    def _read_splits(self) -> dict[str, list[str]]:
        raw = read_records(self.split_path)
        if len(raw) != 1:
            raise DataError(f"{self.split_path}: expected one object mapping split names to unique_id lists")
        splits = {}
        for name, ids in raw[0].items():
            splits[name] = list(_string_list(ids, str(self.split_path), name, min_len=0))
            known = set(self.qas_by_id) if name == "holdout" else set(list(self.qas_by_id)[: self.n_used])
            unknown = [i for i in splits[name] if i not in known]
            if unknown:
                raise DataError(f"{self.split_path}: split {name!r} names unique_ids not in {self.full_path.name} "
                                f"(first {self.n_used} identities): {unknown[:5]}")
        return splits

    @property
    def split_names(self) -> list[str]:
        return sorted({*self.splits, *COMPUTED_SPLITS})

    def identity_ids(self, split: str) -> list[str]:
        if split == "full":
            return list(self.used_ids)
        if split == "retain":
            forgotten = {i for name in FORGET_SPLITS for i in self.splits.get(name, [])}
            return [i for i in self.used_ids if i not in forgotten]
        if split == "holdout":
            return list(self.holdout_ids)
        if split not in self.splits:
            raise DataError(f"unknown split {split!r} for {self.split_path}; known: {', '.join(self.split_names)}")
        return list(self.splits[split])

    def qas(self, split: str) -> list[FiuQA]:
        return [qa for unique_id in self.identity_ids(split) for qa in self.qas_by_id[unique_id]]

    def texts(self) -> list[str]:
        """Every question and answer string, for training an offline tokenizer on this data."""
        out = []
        for qas in self.qas_by_id.values():
            for qa in qas:
                out += [qa.question, qa.answer, qa.paraphrased_answer, *qa.paraphrased_questions,
                        *qa.perturbed_answers]
        return out
