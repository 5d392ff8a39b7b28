"""VQAv2 (Goyal et al. 2017): open-ended questions on COCO, ten annotator answers each, VQA accuracy.

Release layout (visualqa.org, the val2014 split): ``v2_OpenEnded_mscoco_val2014_questions.json`` (``questions``:
``question_id, image_id, question``), ``v2_mscoco_val2014_annotations.json`` (``annotations``: ``question_id,
answers`` (ten ``{answer, answer_confidence, answer_id}``), ``answer_type``, ``question_type``,
``multiple_choice_answer``) and the COCO images ``val2014/COCO_val2014_<image_id, 12 digits>.jpg``.
Scores: VQA accuracy (``eval.vqa_accuracy``), overall and per answer type (yes/no, number, other).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.release import Drawn, accuracy_by, check_max_samples, draw, draw_scene, field, image_file, read_json
from eval.vqa_accuracy import vqa_accuracy
from unlearning.data.examples import DataError, Example
from unlearning.evaluation.general import GENERAL_EVALS, GeneralEval
from unlearning.runs.io import atomic_write_text

QUESTIONS = "v2_OpenEnded_mscoco_val2014_questions.json"
ANNOTATIONS = "v2_mscoco_val2014_annotations.json"
SHORT_ANSWER = "\nAnswer the question using a single word or phrase."  # LLaVA-1.5's VQAv2 prompt
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VQAItem:
    question_id: int
    image: Path
    question: str
    answers: tuple[str, ...]
    answer_type: str


def image_name(image_id: int, split: str = "val2014") -> str:
    return f"COCO_{split}_{image_id:012d}.jpg"


def load_vqav2(data_dir: str | Path, image_dir: str | Path | None = None, questions_file: str = QUESTIONS,
               annotations_file: str = ANNOTATIONS) -> list[VQAItem]:
    """The questions with their annotations, in the questions file's order; every question needs its annotation
    and its image."""
    data_dir = Path(data_dir)
    images = Path(image_dir) if image_dir else data_dir / "val2014"
    questions_path, annotations_path = data_dir / questions_file, data_dir / annotations_file
    questions = field(read_json(questions_path, "VQAv2 questions"), "questions", str(questions_path), list)
    annotations = field(read_json(annotations_path, "VQAv2 annotations"), "annotations", str(annotations_path), list)
    by_id = {}
    for index, record in enumerate(annotations):
        where = f"{annotations_path}: annotation {index}"
        answers = field(record, "answers", where, list)
        texts = tuple(field(a, "answer", f"{where}, answer {j}") for j, a in enumerate(answers))
        if not texts:
            raise DataError(f"{where}: field 'answers' is empty")
        by_id[field(record, "question_id", where, int)] = (texts, field(record, "answer_type", where))
    items = []
    for index, record in enumerate(questions):
        where = f"{questions_path}: question {index}"
        question_id = field(record, "question_id", where, int)
        if question_id not in by_id:
            raise DataError(f"{where}: question_id {question_id} has no annotation in {annotations_path}")
        image = image_file(images / image_name(field(record, "image_id", where, int)), where)
        answers, answer_type = by_id[question_id]
        items.append(VQAItem(question_id, image, field(record, "question", where), answers, answer_type))
    if not items:
        raise DataError(f"no VQAv2 questions in {questions_path}")
    return items


def score_vqa(items: Sequence[VQAItem], predictions: Sequence[str]) -> dict:
    """VQA accuracy (0-1) overall and per answer type, with the question count and the subset drawn, if any."""
    scores = [vqa_accuracy(prediction, item.answers) for item, prediction in zip(items, predictions, strict=True)]
    return accuracy_by(items, scores, [item.answer_type for item in items], "answer_types")


def write_vqav2(out_dir: str | Path, n_images: int = 8, image_size: int = 112, seed: int = 0) -> Path:
    """VQAv2's val2014 files over drawn shapes: per image a colour, a count and a yes/no question, ten annotator
    answers each (one dissenter, so the cleaning of disagreeing answers is exercised)."""
    out_dir = Path(out_dir)
    (out_dir / "val2014").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{seed}-vqav2")
    questions, annotations = [], []
    for index in range(n_images):
        scene = draw_scene(rng, image_size)
        image_id = 100 + index
        scene.image.save(out_dir / "val2014" / image_name(image_id))
        asked = [(scene.colour_question(), "other"), (scene.count_question(), "number"),
                 (scene.yes_no_question(rng), "yes/no")]
        for k, ((question, answer), answer_type) in enumerate(asked):
            question_id = image_id * 1000 + k
            dissent = str(int(answer) + 1) if answer_type == "number" else f"dark {answer}" if answer_type == "other" \
                else "maybe"
            answers = [answer] * 9 + [dissent]
            questions.append({"image_id": image_id, "question": question, "question_id": question_id})
            annotations.append({"question_type": question.split()[0].lower(), "multiple_choice_answer": answer,
                                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                                            for j, a in enumerate(answers)],
                                "image_id": image_id, "answer_type": answer_type, "question_id": question_id})
    info = {"description": "built-in VQAv2 (drawn shapes)", "data_subtype": "val2014"}
    atomic_write_text(out_dir / QUESTIONS, json.dumps({"info": info, "task_type": "Open-Ended", "data_type": "mscoco",
                                                  "data_subtype": "val2014", "questions": questions}))
    atomic_write_text(out_dir / ANNOTATIONS, json.dumps({"info": info, "data_type": "mscoco", "data_subtype": "val2014",
                                                    "annotations": annotations}))
    log.info("wrote synthetic VQAv2 (%d images) to %s", n_images, out_dir)
    return out_dir


@dataclass(frozen=True)
class VQAv2Settings:
    data_dir: str  # the release: dataset/VQAv2 (the two val2014 JSON files)
    builtin_dir: str | None = None  # generated offline when data_dir is this folder
    image_dir: str | None = None  # COCO val2014 images; None: data_dir/val2014
    questions_file: str = QUESTIONS
    annotations_file: str = ANNOTATIONS
    max_samples: int | None = None  # a seeded subset for quick runs (214k questions in val2014); None: all
    seed: int = 0
    prompt_suffix: str = SHORT_ANSWER
    max_new_tokens: int = 10

    def __post_init__(self) -> None:
        check_max_samples(self.max_samples)


def vqav2_questions(settings: VQAv2Settings) -> tuple[Drawn, list[Example]]:
    items = draw(load_vqav2(settings.data_dir, settings.image_dir, settings.questions_file,
                            settings.annotations_file), settings.max_samples, settings.seed)
    return items, [Example(item.question + settings.prompt_suffix, item.answers[0], item.image,
                           uid=f"vqav2/{item.question_id}") for item in items]


GENERAL_EVALS.register("vqav2")(GeneralEval(VQAv2Settings, write_vqav2, vqav2_questions, score_vqa))
