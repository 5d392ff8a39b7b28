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

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearning.data.examples import DataError, Example
from unlearning.data.records import check_image, read_records, require, resolve_image, string_field, string_list

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


def parse_identity(record: dict[str, Any], data_dir: Path, where: str) -> list[FiuQA]:
    require(record, IDENTITY_FIELDS, where)
    unique_id = string_field(record, "unique_id", where)
    where = f"{where} (unique_id {unique_id})"
    image = resolve_image(data_dir, string_field(record, "image_path", where), where)
    check_image(image, where)
    if not isinstance(record["qa_list"], list) or not record["qa_list"]:
        raise DataError(f"{where}: 'qa_list' must be a non-empty list")
    qas = []
    for qa_index, qa in enumerate(record["qa_list"]):
        qa_where = f"{where} qa_list[{qa_index}]"
        if not isinstance(qa, dict):
            raise DataError(f"{qa_where}: expected an object")
        require(qa, QA_FIELDS, qa_where)
        qas.append(FiuQA(
            unique_id=unique_id,
            qa_index=qa_index,
            image=image,
            question=string_field(qa, "question", qa_where),
            answer=string_field(qa, "answer", qa_where),
            paraphrased_questions=string_list(qa["paraphrased_question"], qa_where, "paraphrased_question"),
            paraphrased_answer=string_field(qa, "paraphrased_answer", qa_where),
            perturbed_answers=string_list(qa["perturbed_answer"], qa_where, "perturbed_answer"),
            keywords=string_list(qa["keywords"], qa_where, "keywords"),
        ))
    return qas


def capitalized(qa: FiuQA) -> FiuQA:
    """The original's ``str.capitalize()`` (first letter upper, every other lower: names and acronyms too) of the
    question, its paraphrases, the answer and the paraphrased answer; the perturbed answers (a list) stayed as they
    were (compat switch ``capitalize``)."""
    return dataclasses.replace(qa, question=qa.question.capitalize(), answer=qa.answer.capitalize(),
                               paraphrased_questions=tuple(q.capitalize() for q in qa.paraphrased_questions),
                               paraphrased_answer=qa.paraphrased_answer.capitalize())


class FiuBench:
    """A FIUBench data folder: ``full.json``, ``split.json`` and the images."""

    def __init__(self, data_dir: str | Path, max_identities: int = 400, full_file: str = "full.json",
                 split_file: str = "split.json", capitalize: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.full_path = self.data_dir / full_file
        self.split_path = self.data_dir / split_file
        self.qas_by_id: dict[str, list[FiuQA]] = {}
        for index, record in enumerate(read_records(self.full_path)):
            where = f"{self.full_path}: record {index}"
            qas = parse_identity(record, self.data_dir, where)
            if capitalize:
                qas = [capitalized(qa) for qa in qas]
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
            splits[name] = list(string_list(ids, str(self.split_path), name, min_len=0))
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
