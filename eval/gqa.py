"""GQA (Hudson & Manning 2019): compositional questions on scene graphs; the test-dev balanced split papers report.

Release layout (cs.stanford.edu/people/dorarad/gqa): ``testdev_balanced_questions.json``, an object keyed by
question id with ``{imageId, question, answer, fullAnswer, types: {structural, semantic, detailed}, ...}``, and the
images ``images/<imageId>.jpg``. Scoring follows LLaVA-1.5's route, the one the papers that report GQA with LLaVA
take: its ``convert_gqa_for_eval.py`` strips trailing periods and lower-cases the model's answer, then GQA's
``eval.py`` counts exact matches with the answer. (lmms-eval's gqa task instead removes every punctuation mark
before matching; the two differ only on answers with inner punctuation.) Scores: accuracy overall and per
structural type (verify, query, choose, logical, compare).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.release import Drawn, accuracy_by, check_max_samples, draw, draw_scene, field, image_file, read_json
from unlearning.data.examples import DataError, Example
from unlearning.evaluation.general import GENERAL_EVALS, GeneralEval
from unlearning.runs.io import atomic_write_text

QUESTIONS = "testdev_balanced_questions.json"
SHORT_ANSWER = "\nAnswer the question using a single word or phrase."  # LLaVA-1.5's GQA prompt
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GQAItem:
    question_id: str
    image: Path
    question: str
    answer: str
    structural: str | None


def gqa_match(prediction: str, answer: str) -> bool:
    """LLaVA's cleaning (trailing periods off, lower case; whitespace trimmed) then exact match."""
    return prediction.strip().rstrip(".").lower() == answer.strip().lower()


def load_gqa(data_dir: str | Path, image_dir: str | Path | None = None, questions_file: str = QUESTIONS
             ) -> list[GQAItem]:
    data_dir = Path(data_dir)
    path = data_dir / questions_file
    images = Path(image_dir) if image_dir else data_dir / "images"
    records = read_json(path, "GQA questions")
    if not isinstance(records, dict):
        raise DataError(f"{path}: expected an object keyed by question id, got {type(records).__name__}")
    items = []
    for question_id, record in records.items():
        where = f"{path}: question {question_id!r}"
        types = record.get("types") if isinstance(record, dict) else None
        structural = types.get("structural") if isinstance(types, dict) else None
        image = image_file(images / f"{field(record, 'imageId', where)}.jpg", where)
        items.append(GQAItem(str(question_id), image, field(record, "question", where), field(record, "answer", where),
                             structural))
    if not items:
        raise DataError(f"no GQA questions in {path}")
    return items


def score_gqa(items: Sequence[GQAItem], predictions: Sequence[str]) -> dict:
    """Exact-match accuracy (0-1) overall and per structural type."""
    scores = [float(gqa_match(prediction, item.answer)) for item, prediction in zip(items, predictions, strict=True)]
    return accuracy_by(items, scores, [item.structural or "unknown" for item in items], "structural")


def write_gqa(out_dir: str | Path, n_images: int = 8, image_size: int = 112, seed: int = 0) -> Path:
    """GQA's test-dev balanced file over drawn shapes: a query (colour), a verify (yes/no) and a query (shape)
    question per image, with their full answers and types."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{seed}-gqa")
    records = {}
    for index in range(n_images):
        scene = draw_scene(rng, image_size)
        image_id = f"n{index:06d}"
        scene.image.save(out_dir / "images" / f"{image_id}.jpg", quality=95)
        for k, ((question, answer), structural) in enumerate(
                [(scene.colour_question(), "query"), (scene.yes_no_question(rng), "verify"),
                 (scene.shape_question(), "query")]):
            records[f"{index:05d}{k}"] = {
                "imageId": image_id, "question": question, "answer": answer, "isBalanced": True,
                "fullAnswer": f"The answer is {answer}.", "groups": {"global": None, "local": None},
                "types": {"structural": structural, "semantic": "attr", "detailed": "built-in"},
            }
    atomic_write_text(out_dir / QUESTIONS, json.dumps(records))
    log.info("wrote synthetic GQA (%d images) to %s", n_images, out_dir)
    return out_dir


@dataclass(frozen=True)
class GQASettings:
    data_dir: str  # the release: dataset/GQA (testdev_balanced_questions.json and images/)
    builtin_dir: str | None = None  # generated offline when data_dir is this folder
    image_dir: str | None = None  # None: data_dir/images
    questions_file: str = QUESTIONS
    max_samples: int | None = None  # a seeded subset for quick runs (12,578 test-dev questions); None: all
    seed: int = 0
    prompt_suffix: str = SHORT_ANSWER
    max_new_tokens: int = 10

    def __post_init__(self) -> None:
        check_max_samples(self.max_samples)


def gqa_questions(settings: GQASettings) -> tuple[Drawn, list[Example]]:
    items = draw(load_gqa(settings.data_dir, settings.image_dir, settings.questions_file), settings.max_samples,
                 settings.seed)
    return items, [Example(item.question + settings.prompt_suffix, item.answer, item.image,
                           uid=f"gqa/{item.question_id}") for item in items]


GENERAL_EVALS.register("gqa")(GeneralEval(GQASettings, write_gqa, gqa_questions, score_gqa))
