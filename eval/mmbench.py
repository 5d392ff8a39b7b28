"""MMBench (Liu et al. 2023): multiple-choice questions over 20 abilities, scored by circular evaluation.

Release layout (OpenCompass, the dev split that carries answers): ``mmbench_dev_en_20231003.tsv`` (or any
``*.tsv`` given as ``tsv_file``), one row per question with the columns ``index, question, hint, A, B, C, D[, E],
answer, category, image[, source, l2-category, split]``; ``image`` is the base64 of the picture, or, in the
VLMEvalKit-style files, the ``index`` of an earlier row whose picture it shares. Options a question does not have
are empty cells.

Circular evaluation (the paper's CircularEval, as LLaVA's ``model_vqa_mmbench.py --all-rounds`` and VLMEvalKit
run it): a question with k options is asked k times, its options rotated one place each time, and it counts only
when every rotation is answered right. The letter is read by MMBench's own prefetch (``eval.choices``). Rows with
``index`` >= 1,000,000 (pre-rotated copies some files carry) are skipped: the rotations are made here.
Scores: circular accuracy overall and per category, and the single-pass accuracy of the unrotated question.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import logging
import random
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.choices import mmbench_letter, option_letters, options_text
from eval.release import Drawn, check_max_samples, draw, draw_scene, subset_of
from unlearning.data.examples import DataError, Example
from unlearning.data.synthetic import SHAPE_COLOURS, SHAPES
from unlearning.evaluation.general import GENERAL_EVALS, GeneralEval
from unlearning.runs.io import atomic_write_text

TSV = "mmbench_dev_en_20231003.tsv"
LETTER_ONLY = "\nAnswer with the option's letter from the given choices directly."
ROTATED = 1_000_000  # VLMEvalKit's offset of a pre-rotated copy's index
OPTION_COLUMNS = "ABCDE"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MMBenchItem:
    index: int
    image: bytes  # the encoded picture
    question: str
    hint: str
    options: tuple[str, ...]  # in the release's order, A first
    answer: int  # the right option's position
    category: str


@dataclass(frozen=True)
class MMBenchQuestion:
    """One rotation of an item: its options shifted ``shift`` places, the right letter after the shift."""

    item: MMBenchItem
    shift: int

    @property
    def options(self) -> tuple[str, ...]:
        return self.item.options[self.shift:] + self.item.options[:self.shift]

    @property
    def letters(self) -> str:
        return option_letters(len(self.item.options))

    @property
    def answer(self) -> str:
        return self.letters[(self.item.answer - self.shift) % len(self.item.options)]

    def prompt(self, suffix: str) -> str:
        question = f"{self.item.hint}\n{self.item.question}" if self.item.hint else self.item.question
        return f"{question}\n{options_text(self.letters, self.options)}{suffix}"


def _cell(row: dict[str, str | None], key: str) -> str:
    value = row.get(key)
    return "" if value is None or value.strip().lower() == "nan" else value.strip()


def load_mmbench(data_dir: str | Path, tsv_file: str = TSV) -> list[MMBenchItem]:
    path = Path(data_dir) / tsv_file
    if not path.is_file():
        raise DataError(f"MMBench file {path} not found")
    csv.field_size_limit(sys.maxsize)  # base64 pictures exceed the csv module's 128 kB default
    images: dict[str, bytes] = {}
    items = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"index", "question", "A", "B", "answer", "image"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path}: header lacks the column(s) {sorted(missing)}")
        for row_number, row in enumerate(reader, start=2):  # the header is line 1
            where = f"{path}: line {row_number}"
            try:
                index = int(float(_cell(row, "index")))
            except ValueError:
                raise DataError(f"{where}: field 'index' is not a number: {row.get('index')!r}") from None
            image = _image(_cell(row, "image"), images, where)
            images[str(index)] = image
            if index >= ROTATED:
                continue
            options = [_cell(row, letter) for letter in OPTION_COLUMNS if _cell(row, letter)]
            answer = _cell(row, "answer")
            if answer not in OPTION_COLUMNS[:len(options)] or not answer:
                raise DataError(f"{where}: field 'answer' {answer!r} is not one of its options' letters "
                                f"{OPTION_COLUMNS[:len(options)]}")
            if not _cell(row, "question"):
                raise DataError(f"{where}: field 'question' is empty")
            category = _cell(row, "category") or "unknown"
            items.append(MMBenchItem(index, image, _cell(row, "question"), _cell(row, "hint"), tuple(options),
                                     OPTION_COLUMNS.index(answer), category))
    if not items:
        raise DataError(f"no MMBench questions in {path}")
    return items


def _image(cell: str, seen: dict[str, bytes], where: str) -> bytes:
    """A row's picture: its base64, or the picture of the earlier row whose index it names."""
    if cell in seen:
        return seen[cell]
    if not cell or (len(cell) <= 64 and cell.isdigit()):
        raise DataError(f"{where}: field 'image' is {'empty' if not cell else f'index {cell} of no earlier row'}")
    try:
        return base64.b64decode(cell, validate=True)
    except (binascii.Error, ValueError) as error:
        raise DataError(f"{where}: field 'image' is not base64 ({error})") from error


def mmbench_rotations(items: Sequence[MMBenchItem]) -> list[MMBenchQuestion]:
    return [MMBenchQuestion(item, shift) for item in items for shift in range(len(item.options))]


def score_mmbench(questions: Sequence[MMBenchQuestion], predictions: Sequence[str]) -> dict:
    """Circular accuracy (0-1: items whose every rotation was answered right) overall and per category, the
    unrotated questions' accuracy, and how many answers named no option."""
    right: dict[int, list[bool]] = defaultdict(list)
    category: dict[int, str] = {}
    first: dict[int, bool] = {}
    unparsed = 0
    for question, prediction in zip(questions, predictions, strict=True):
        options = dict(zip(question.letters, question.options, strict=True))
        letter = mmbench_letter(prediction, options)
        unparsed += letter is None
        right[question.item.index].append(letter == question.answer)
        category[question.item.index] = question.item.category
        if question.shift == 0:
            first[question.item.index] = letter == question.answer
    circular = {index: all(results) for index, results in right.items()}
    by_category: dict[str, list[bool]] = defaultdict(list)
    for index, correct in circular.items():
        by_category[category[index]].append(correct)
    return {"accuracy": sum(circular.values()) / len(circular), "n": len(circular),
            "single_pass_accuracy": sum(first.values()) / len(first), "n_questions": len(questions),
            "n_unparsed": unparsed,
            "categories": {k: {"accuracy": sum(v) / len(v), "n": len(v)} for k, v in sorted(by_category.items())},
            "subset": subset_of(questions)}


def write_mmbench(out_dir: str | Path, n_images: int = 8, image_size: int = 112, seed: int = 0) -> Path:
    """MMBench's dev TSV over drawn shapes: colour questions with four options and shape questions with three
    (the empty D cell), a hint on some, base64 pictures, one row sharing an earlier row's picture by index."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{seed}-mmbench")
    header = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source",
              "l2-category", "comment", "split"]
    lines = ["\t".join(header)]
    for index in range(n_images):
        scene = draw_scene(rng, image_size)
        buffer = io.BytesIO()
        scene.image.save(buffer, format="PNG")
        picture = base64.b64encode(buffer.getvalue()).decode("ascii")
        for k, (question, answer) in enumerate((scene.colour_question(), scene.shape_question())):
            pool = list(SHAPE_COLOURS) if k == 0 else list(SHAPES)
            options = [answer, *[p for p in pool if p != answer]]
            rng.shuffle(options)
            options += [""] * (4 - len(options))
            row_index = 2 * index + k
            row = [str(row_index), question, "Look at the shapes." if index % 3 == 0 else "nan", *options,
                   "ABCD"[options.index(answer)], "attribute_recognition" if k == 0 else "object_localization",
                   picture if k == 0 else str(row_index - 1), "built-in", "fine-grained perception (instance)",
                   "nan", "dev"]
            lines.append("\t".join(row))
    atomic_write_text(out_dir / TSV, "\n".join(lines) + "\n")
    log.info("wrote synthetic MMBench (%d images) to %s", n_images, out_dir)
    return out_dir


@dataclass(frozen=True)
class MMBenchSettings:
    data_dir: str  # the release: dataset/MMBench (mmbench_dev_en_20231003.tsv)
    builtin_dir: str | None = None  # generated offline when data_dir is this folder
    tsv_file: str = TSV
    max_samples: int | None = None  # a seeded subset of questions (each then asked in every rotation); None: all
    seed: int = 0
    prompt_suffix: str = LETTER_ONLY
    max_new_tokens: int = 5

    def __post_init__(self) -> None:
        check_max_samples(self.max_samples)


def mmbench_questions(settings: MMBenchSettings) -> tuple[Drawn, list[Example]]:
    items = draw(load_mmbench(settings.data_dir, settings.tsv_file), settings.max_samples, settings.seed)
    questions = Drawn(mmbench_rotations(items))
    questions.subset = items.subset
    return questions, [Example(q.prompt(settings.prompt_suffix), q.answer, q.item.image,
                               uid=f"mmbench/{q.item.index}/{q.shift}") for q in questions]


GENERAL_EVALS.register("mmbench")(GeneralEval(MMBenchSettings, write_mmbench, mmbench_questions, score_mmbench))
