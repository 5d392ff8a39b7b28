"""VizWiz-VQA (Gurari et al. 2018): questions blind people asked about their photos, ten crowd answers each, many of
them "unanswerable"; VQA accuracy as VQAv2's (``eval.vqa_accuracy``), where "unanswerable" is one more answer.

Release layout (vizwiz.org, VQA task, val split): ``Annotations/val.json`` (or ``val.json`` at the top), a list
of ``{image, question, answers: [{answer, answer_confidence}] x 10, answer_type, answerable}``, and the images in
``val/`` (``VizWiz_val_<8 digits>.jpg``). The prompt is LLaVA-1.5's, which tells the model to say "Unanswerable".
Scores: VQA accuracy overall and per answer type (``unanswerable`` is one), and how often the model said
unanswerable on the answerable questions and on the others.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.release import Drawn, accuracy_by, check_max_samples, draw, draw_scene, field, image_file, read_json
from eval.vqa_accuracy import normalize_answer, vqa_accuracy
from unlearning.data.examples import DataError, Example
from unlearning.evaluation.general import GENERAL_EVALS, GeneralEval
from unlearning.runs.io import atomic_write_text

UNANSWERABLE = "unanswerable"
PROMPT_SUFFIX = ("\nWhen the provided information is insufficient, respond with 'Unanswerable'.\n"
                 "Answer the question using a single word or phrase.")  # LLaVA-1.5's VizWiz prompt
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VizWizItem:
    image: Path
    question: str
    answers: tuple[str, ...]
    answer_type: str
    answerable: bool


def annotation_file(data_dir: Path, split: str) -> Path:
    """``Annotations/<split>.json`` as the release unpacks, else ``<split>.json`` beside the image folder."""
    nested = data_dir / "Annotations" / f"{split}.json"
    return nested if nested.is_file() else data_dir / f"{split}.json"


def load_vizwiz(data_dir: str | Path, image_dir: str | Path | None = None, split: str = "val") -> list[VizWizItem]:
    data_dir = Path(data_dir)
    path = annotation_file(data_dir, split)
    images = Path(image_dir) if image_dir else data_dir / split
    records = read_json(path, "VizWiz annotations")
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a list of questions, got {type(records).__name__}")
    items = []
    for index, record in enumerate(records):
        where = f"{path}: record {index}"
        answers = field(record, "answers", where, list)
        texts = tuple(field(a, "answer", f"{where}, answer {j}") for j, a in enumerate(answers))
        if not texts:
            raise DataError(f"{where}: field 'answers' is empty (the test split has no answers: use val)")
        answerable = field(record, "answerable", where, int)
        image = image_file(images / field(record, "image", where), where)
        items.append(VizWizItem(image, field(record, "question", where), texts, field(record, "answer_type", where),
                                bool(answerable)))
    if not items:
        raise DataError(f"no VizWiz questions in {path}")
    return items


def score_vizwiz(items: Sequence[VizWizItem], predictions: Sequence[str]) -> dict:
    """VQA accuracy (0-1) overall and per answer type; the share of "unanswerable" replies on answerable and on
    unanswerable questions."""
    scores = [vqa_accuracy(prediction, item.answers) for item, prediction in zip(items, predictions, strict=True)]
    said = {True: [], False: []}
    for item, prediction in zip(items, predictions, strict=True):
        said[item.answerable].append(normalize_answer(prediction) == UNANSWERABLE)
    return {**accuracy_by(items, scores, [item.answer_type for item in items], "answer_types"),
            "said_unanswerable": {"answerable": _rate(said[True]), "unanswerable": _rate(said[False])}}


def _rate(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def write_vizwiz(out_dir: str | Path, n_images: int = 8, image_size: int = 112, seed: int = 0) -> Path:
    """VizWiz's val files over drawn shapes: answerable colour and count questions, and per image one about
    something the drawing cannot show, which the crowd called unanswerable."""
    out_dir = Path(out_dir)
    (out_dir / "val").mkdir(parents=True, exist_ok=True)
    (out_dir / "Annotations").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{seed}-vizwiz")
    records = []
    for index in range(n_images):
        scene = draw_scene(rng, image_size)
        name = f"VizWiz_val_{index:08d}.jpg"
        scene.image.save(out_dir / "val" / name, quality=95)
        colour, count = scene.colour_question(), scene.count_question()
        asked = [(colour, "other", 1), (count, "number", 1),
                 (("What is the expiry date on this can?", UNANSWERABLE), UNANSWERABLE, 0)]
        question, answer, answer_type, answerable = *asked[index % 3][0], *asked[index % 3][1:]
        crowd = [answer] * 8 + ([UNANSWERABLE, "unsuitable"] if answerable else ["no idea", "unsuitable"])
        records.append({"image": name, "question": question, "answer_type": answer_type, "answerable": answerable,
                        "answers": [{"answer": a, "answer_confidence": "yes"} for a in crowd]})
    atomic_write_text(out_dir / "Annotations" / "val.json", json.dumps(records))
    log.info("wrote synthetic VizWiz (%d images) to %s", n_images, out_dir)
    return out_dir


@dataclass(frozen=True)
class VizWizSettings:
    data_dir: str  # the release: dataset/VizWiz (Annotations/val.json and val/)
    builtin_dir: str | None = None  # generated offline when data_dir is this folder
    image_dir: str | None = None  # None: data_dir/val
    max_samples: int | None = None  # a seeded subset for quick runs (4,319 val questions); None: all
    seed: int = 0
    prompt_suffix: str = PROMPT_SUFFIX
    max_new_tokens: int = 10

    def __post_init__(self) -> None:
        check_max_samples(self.max_samples)


def vizwiz_questions(settings: VizWizSettings) -> tuple[Drawn, list[Example]]:
    items = draw(load_vizwiz(settings.data_dir, settings.image_dir), settings.max_samples, settings.seed)
    return items, [Example(item.question + settings.prompt_suffix, item.answers[0], item.image,
                           uid=f"vizwiz/{item.image.stem}") for item in items]


GENERAL_EVALS.register("vizwiz")(GeneralEval(VizWizSettings, write_vizwiz, vizwiz_questions, score_vizwiz))
