"""CLEAR's release layout (HF ``therem/CLEAR``) read into training Examples and evaluation items.

A data folder holds one sub-folder per HF config, each with ``*.parquet`` shards (``train-00000-of-00001.parquet``):

- captions: ``full``, ``forget01|05|10``, ``retain99|95|90``: one row per image, columns ``image`` (an HF Image
  struct ``{bytes, path}``), ``caption``, ``name`` (optional here: training reads image and caption only);
- ``<config>+tofu``: the same rows plus the persons' TOFU text QAs, rows with a null ``image`` and ``question`` /
  ``answer`` set (the authors' mm/dataset.py:168-174 tells the two kinds apart by the null image);
- ``forget01|05|10_perturbed`` and ``retain_perturbed``: the evaluation rows, ``image``, ``caption``, ``name``,
  ``paraphrased_caption`` (text), ``perturbed_captions`` and ``perturbed_names`` (lists of text);
- ``real_faces`` (``image``, ``answer``: the person's name, ``options``: other names) and ``real_world``
  (``question``, ``answer``, ``options``, ``image``).

Every error names the file, the row and the field. Nothing is coerced: a number where text belongs is an error.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from clear.prompts import NAME_QUESTION, caption_question
from mllmu.data import image_bytes
from unlearning.data.examples import DataError, Example

log = logging.getLogger(__name__)

FORGET_SPLITS = ("forget01", "forget05", "forget10")
RETAIN_OF = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
TOFU_SUFFIX = "+tofu"
CAPTION_CONFIGS = ("full", *FORGET_SPLITS, *RETAIN_OF.values())
# Evaluation tasks: the authors' config/mm/eval.yaml:9-27 (eval_task, question_strategy, answer keys).
TASKS = ("forget", "retain", "forget_facerec", "retain_facerec", "real_faces", "real_world")
FORGET_TASKS = ("forget", "forget_facerec")  # their truth ratio is aggregated as forgetting (min(R, 1/R))
PERTURBED_FIELDS = ("image", "caption", "name", "paraphrased_caption", "perturbed_captions", "perturbed_names")


@dataclass(frozen=True)
class Item:
    """One evaluated row: an image, a question, the answer, the answer the truth ratio compares (the paraphrased
    caption, or the answer itself), the perturbed answers, and the unit the bootstrap resamples (the person)."""

    uid: str  # "<config>/<row>"
    unit: str
    image: bytes
    question: str
    answer: str
    base_answer: str
    perturbed: tuple[str, ...]
    where: str = field(default="", metadata={"fingerprint": False}, compare=False)

    def example(self, answer: str | None = None, with_image: bool = True) -> Example:
        return Example(self.question, self.answer if answer is None else answer,
                       self.image if with_image else None, uid=self.uid)


def config_name(split: str, tofu: bool) -> str:
    """The HF config a training split reads: ``forget10`` -> ``forget10+tofu`` when the text QAs are trained."""
    return split + TOFU_SUFFIX if tofu and not split.endswith(TOFU_SUFFIX) else split


def _text(row: dict[str, Any], name: str, where: str) -> str:
    if name not in row:
        raise DataError(f"{where}: missing field {name!r}")
    value = row[name]
    if not isinstance(value, str) or not value.strip():
        shown = "null" if value is None else f"{type(value).__name__} {str(value)[:40]!r}"
        raise DataError(f"{where}: field {name!r} must be a non-empty string, got {shown}")
    return value


def _texts(row: dict[str, Any], name: str, where: str) -> tuple[str, ...]:
    if name not in row:
        raise DataError(f"{where}: missing field {name!r}")
    value = row[name]
    if not isinstance(value, list | tuple) or not value:
        raise DataError(f"{where}: field {name!r} must be a non-empty list of strings, got "
                        f"{'null' if value is None else type(value).__name__}")
    for index, text in enumerate(value):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: field {name!r}[{index}] must be a non-empty string, got {text!r}")
    return tuple(value)


class Clear:
    """A CLEAR data folder: one sub-folder of parquet shards per HF config."""

    def __init__(self, data_dir: str | Path, seed: int = 0, max_rows: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise DataError(f"CLEAR data folder {self.data_dir} does not exist")
        self.seed = seed  # which caption question each caption gets
        self.max_rows = max_rows  # evaluation rows per task (the original's ds_size 300: compat first_300_rows)

    def configs(self) -> list[str]:
        return sorted(p.name for p in self.data_dir.iterdir() if p.is_dir() and any(p.glob("*.parquet")))

    @functools.lru_cache(maxsize=32)  # noqa: B019 (one instance per process; configs are re-read otherwise)
    def rows(self, config: str) -> tuple[tuple[str, dict[str, Any]], ...]:
        """Every row of a config, each with its "<file>: row <n>" label."""
        folder = self.data_dir / config
        files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
        if not files:
            raise DataError(f"unknown CLEAR split {config!r}: no parquet files in {folder} (present: "
                            f"{', '.join(self.configs()) or 'none'})")
        rows = []
        for path in files:
            try:
                table = pq.read_table(path)
            except Exception as error:  # pyarrow raises several types for a corrupt file
                raise DataError(f"{path}: cannot be read as parquet ({error})") from error
            rows += [(f"{path}: row {index}", row) for index, row in enumerate(table.to_pylist())]
        return tuple(rows)

    def train_examples(self, config: str) -> list[Example]:
        """A training config's rows: captions (image -> caption, a seeded caption question) and, in ``+tofu``
        configs, text QAs (no image), as the authors' MMMixedDataset reads them (mm/dataset.py:165-180).

        Each uid is ``<person>/<row>``: the row's ``name``; for a text QA, the one person of the config whose full
        name its question or answer holds. A row with no person found is its own unit (``<config>#<row>``)."""
        rows, examples, qa_rows = self.rows(config), [], []
        for index, (where, row) in enumerate(rows):
            image = row.get("image")
            if image is not None:
                caption, name = _text(row, "caption", where), row.get("name")
                unit = name if isinstance(name, str) and name.strip() else f"{config}#{index}"
                examples.append(Example(caption_question(caption, self.seed), caption, image_bytes(image, where),
                                        uid=f"{unit}/{index}"))
            elif row.get("question") is not None or row.get("answer") is not None:
                qa_rows.append((index, _text(row, "question", where), _text(row, "answer", where)))
            else:
                raise DataError(f"{where}: field 'image' is null and the row has no 'question'/'answer' (a TOFU "
                                "QA row needs both)")
        names = sorted({row["name"] for _, row in rows if isinstance(row.get("name"), str) and row["name"].strip()})
        for index, question, answer in qa_rows:
            found = [name for name in names if name.casefold() in f"{question} {answer}".casefold()]
            unit = found[0] if len(found) == 1 else f"{config}#{index}"
            examples.append(Example(question, answer, uid=f"{unit}/{index}"))
        if not examples:
            raise DataError(f"{self.data_dir / config}: no rows")
        return examples

    def items(self, task: str, forget_split: str) -> list[Item]:
        """One evaluation task's rows (config/mm/eval.yaml of the authors: split, question, answer, base and
        perturbed answer keys per task)."""
        if task not in TASKS:
            raise ValueError(f"CLEAR has no evaluation task {task!r}; it has {', '.join(TASKS)}")
        if forget_split not in FORGET_SPLITS:
            raise DataError(f"unknown CLEAR forget split {forget_split!r}; known: {', '.join(FORGET_SPLITS)}")
        config = {"forget": f"{forget_split}_perturbed", "forget_facerec": f"{forget_split}_perturbed",
                  "retain": "retain_perturbed", "retain_facerec": "retain_perturbed"}.get(task, task)
        rows = self.rows(config)[: self.max_rows]
        items = []
        for index, (where, row) in enumerate(rows):
            uid, image = f"{config}/{index}", image_bytes(row.get("image"), where)
            if task in ("forget", "retain"):
                caption, name = _text(row, "caption", where), _text(row, "name", where)
                items.append(Item(uid, name, image, caption_question(caption, self.seed), caption,
                                  _text(row, "paraphrased_caption", where), _texts(row, "perturbed_captions", where),
                                  where))
            elif task in ("forget_facerec", "retain_facerec"):
                name = _text(row, "name", where)
                items.append(Item(uid, name, image, NAME_QUESTION, name, name, _texts(row, "perturbed_names", where),
                                  where))
            elif task == "real_faces":
                name = _text(row, "answer", where)
                items.append(Item(uid, name, image, NAME_QUESTION, name, name, _texts(row, "options", where), where))
            else:  # real_world: each row its own unit
                answer = _text(row, "answer", where)
                items.append(Item(uid, uid, image, _text(row, "question", where), answer, answer,
                                  _texts(row, "options", where), where))
        if not items:
            raise DataError(f"{self.data_dir / config}: no rows")
        return items

    def check_disjoint(self, forget_split: str) -> None:
        """A warning when the retain evaluation rows show a person of the forget split (retain metrics would
        measure forgotten persons)."""
        forgotten = {item.unit for item in self.items("forget", forget_split)}
        shared = sorted(forgotten & {item.unit for item in self.items("retain", forget_split)})
        if shared:
            log.warning("%s: retain_perturbed shows %d persons of %s (%s): their retain numbers measure forgotten "
                        "persons", self.data_dir, len(shared), forget_split, ", ".join(shared[:5]))

    def texts(self) -> list[str]:
        """Every caption, QA and evaluation text, for training an offline tokenizer on this data."""
        out = [text for ex in self.train_examples("full" + TOFU_SUFFIX if (self.data_dir / "full+tofu").is_dir()
                                                  else "full") for text in (ex.question, ex.answer)]
        for task in TASKS:
            for item in self.items(task, self._some_forget_split()):
                out += [item.question, item.answer, item.base_answer, *item.perturbed]
        return out

    def _some_forget_split(self) -> str:
        present = [s for s in FORGET_SPLITS if (self.data_dir / f"{s}_perturbed").is_dir()]
        if not present:
            raise DataError(f"{self.data_dir}: no forgetXX_perturbed folder (expected one of "
                            f"{', '.join(s + '_perturbed' for s in FORGET_SPLITS)})")
        return present[-1]
