"""MM-Vet (Yu et al. 2023): open-ended questions needing several capabilities at once (recognition, OCR,
knowledge, language generation, spatial awareness, math), graded 0-1 by an LLM judge against the ground truth.

Release layout (github.com/yuweihao/MM-Vet, ``mm-vet.zip``): ``mm-vet.json``, an object keyed by question id
(``v1_0`` ...) with ``{imagename, capability: [...], question, answer}``, and the pictures in ``images/``.
Ground truths may combine elements with ``<AND>`` (all needed) or ``<OR>`` (any one is enough).

Grading goes through the engine's judge (``eval.judge``): a few-shot table prompt in the official evaluator's
shape (question | ground truth | prediction | correctness, scores 0.0-1.0 in steps of 0.1), written for this
toolkit; ``judge_prompt_file`` replaces it (``{question}``, ``{answer}``, ``{prediction}`` are filled in), e.g.
with the official evaluator's wording for exact comparability. The reply's first word is the score; a reply that
is not a number in [0, 1] scores 0.0, as in the official evaluator after its retries. Without a judge the
evaluation's accuracy is None (the table shows n/a) and the result says why (``judge_needed``).
Scores: the mean grade (0-1) overall and per capability.
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.release import check_max_samples, draw, draw_scene, field, image_file, read_json, subset_of
from unlearning.data.examples import DataError, Example
from unlearning.evaluation.general import GENERAL_EVALS, GeneralEval
from unlearning.evaluation.judge.judgments import judge_all, judge_counts
from unlearning.runs.io import atomic_write_text

CAPABILITIES = ("rec", "ocr", "know", "gen", "spat", "math")
JUDGE_NEEDED = ("MM-Vet is graded by an LLM judge and none is configured (set OPENAI_API_KEY, or OPENAI_BASE_URL for "
                "a compatible server; eval.judge): its accuracy is n/a")
GRADING_PROMPT = """\
Grade how correct a model's prediction is against the ground truth of a question about an image. In the ground \
truth, <AND> joins elements that must all appear in the prediction for it to be fully correct, and <OR> joins \
alternatives any one of which is enough. Give a correctness score between 0.0 (wrong) and 1.0 (correct) in steps \
of 0.1, and reply with that number only: complete the last row.

Question | Ground truth | Prediction | Correctness
--- | --- | --- | ---
How many apples are in the bowl? | 3 | There are three apples in the bowl. | 1.0
Which two cities are named on the signs? | Paris <AND> Lyon | Paris | 0.5
Which two cities are named on the signs? | Paris <AND> Lyon | The signs say Lyon and Paris. | 1.0
What weight is printed on the bag? | 500 g <OR> 0.5 kg | half a kilogram | 1.0
What color is the bus? | red | The bus is blue. | 0.0
Why is this cartoon funny? | A dog reads the morning paper at the breakfast table like a person, which no dog \
does; the joke is the human habit on an animal. | It shows a dog. | 0.2
Why is this cartoon funny? | A dog reads the morning paper at the breakfast table like a person, which no dog \
does; the joke is the human habit on an animal. | The dog is sitting at the table reading a newspaper as if it \
were a person, and that absurd human behaviour is what makes it funny. | 1.0
{question} | {answer} | {prediction} |"""
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MMVetItem:
    question_id: str
    image: Path
    question: str
    answer: str
    capabilities: tuple[str, ...]


class Grading(list):
    """The items, and the prompt template the judge grades them with."""

    template: str = GRADING_PROMPT
    subset: Any = None


def load_mmvet(data_dir: str | Path, image_dir: str | Path | None = None) -> list[MMVetItem]:
    data_dir = Path(data_dir)
    path = data_dir / "mm-vet.json"
    images = Path(image_dir) if image_dir else data_dir / "images"
    records = read_json(path, "MM-Vet")
    if not isinstance(records, dict):
        raise DataError(f"{path}: expected an object keyed by question id, got {type(records).__name__}")
    items = []
    for question_id, record in records.items():
        where = f"{path}: question {question_id!r}"
        capabilities = field(record, "capability", where, list)
        image = image_file(images / field(record, "imagename", where), where)
        items.append(MMVetItem(str(question_id), image, field(record, "question", where),
                               field(record, "answer", where), tuple(str(c) for c in capabilities)))
    if not items:
        raise DataError(f"no MM-Vet questions in {path}")
    return items


def grading_prompt(template: str, item: MMVetItem, prediction: str) -> str:
    """The judge's prompt for one answer (``<AND>``/``<OR>`` spaced apart as the official evaluator does)."""
    answer = item.answer.replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
    return template.replace("{question}", item.question).replace("{answer}", answer).replace(
        "{prediction}", prediction.replace("\n", " "))


def parse_grade(reply: str) -> float | None:
    """The score the judge gave: its reply's first word as a number in [0, 1]; None otherwise."""
    words = reply.split()
    try:
        value = float(words[0]) if words else None
    except ValueError:
        return None
    return value if value is not None and 0.0 <= value <= 1.0 else None


def score_mmvet(items: Sequence[MMVetItem], predictions: Sequence[str], judge: Any = None,
                accelerator: Any = None) -> dict:
    """Mean grade (0-1) overall and per capability; None with ``judge_needed`` when no judge is configured,
    None with the ``partial`` mean when judge requests failed (asked again on the next run)."""
    base = {"n": len(items), "subset": subset_of(items)}
    if judge is None:
        log.warning(JUDGE_NEEDED)
        return {"accuracy": None, "judge_needed": JUDGE_NEEDED, **base}
    template = getattr(items, "template", GRADING_PROMPT)
    judgments = judge_all(judge, [grading_prompt(template, i, p) for i, p in zip(items, predictions, strict=True)],
                          parse_grade, accelerator)
    records = []
    for judgment in judgments:
        records.append({"grade": judgment.value, "judge_reply": judgment.reply, "judge_failed": judgment.failed,
                        **({"judge_error": judgment.error_kind or "unknown"} if judgment.failed else {})})
    counts = judge_counts(records, "grade", judge.settings.max_failed)
    # an unparseable reply scores 0.0 (the official evaluator's outcome after its retries); a failed request none
    grades = [None if j.failed else (j.value if j.value is not None else 0.0) for j in judgments]
    by_capability: dict[str, list[float]] = defaultdict(list)
    for item, grade in zip(items, grades, strict=True):
        for capability in item.capabilities:
            if grade is not None:
                by_capability[capability].append(grade)
    scored = [g for g in grades if g is not None]
    mean = sum(scored) / len(scored) if scored else None
    return {"accuracy": mean if counts["complete"] else None, **({} if counts["complete"] else {"partial": mean}),
            "capabilities": {k: {"accuracy": sum(v) / len(v), "n": len(v)} for k, v in sorted(by_capability.items())},
            "grades": grades, "judge": counts, **base}


def write_mmvet(out_dir: str | Path, n_images: int = 6, image_size: int = 112, seed: int = 0) -> Path:
    """MM-Vet's files over drawn shapes: per image a recognition question, an <AND> counting-and-colour one or an
    <OR> one, with their capabilities."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{seed}-mmvet")
    records = {}
    for index in range(n_images):
        scene = draw_scene(rng, image_size)
        name = f"v1_{index}.png"
        scene.image.save(out_dir / "images" / name)
        colour_q, colour = scene.colour_question()
        count_q, count = scene.count_question()
        asked = [(colour_q, colour, ["rec"]),
                 ("How many shapes are there, and what color is the first one?", f"{count}<AND>{colour}",
                  ["rec", "math"]),
                 (count_q, f"{count}<OR>{['zero', 'one', 'two', 'three', 'four'][int(count)]}", ["rec", "spat"])]
        question, answer, capability = asked[index % 3]
        records[f"v1_{index}"] = {"imagename": name, "capability": capability, "question": question,
                                  "answer": answer}
    atomic_write_text(out_dir / "mm-vet.json", json.dumps(records, indent=1))
    log.info("wrote synthetic MM-Vet (%d images) to %s", n_images, out_dir)
    return out_dir


@dataclass(frozen=True)
class MMVetSettings:
    data_dir: str  # the release: dataset/mm-vet (mm-vet.json and images/)
    builtin_dir: str | None = None  # generated offline when data_dir is this folder
    image_dir: str | None = None  # None: data_dir/images
    judge_prompt_file: str | None = None  # a grading prompt with {question} {answer} {prediction}; None: built in
    max_samples: int | None = None  # a seeded subset for quick runs (218 questions); None: all
    seed: int = 0
    prompt_suffix: str = ""  # LLaVA-1.5 asks MM-Vet's questions as they are
    max_new_tokens: int = 128

    def __post_init__(self) -> None:
        check_max_samples(self.max_samples)


def mmvet_questions(settings: MMVetSettings) -> tuple[Grading, list[Example]]:
    """The questions and the grading template (read here, so a bad prompt file stops before any model loads)."""
    drawn = draw(load_mmvet(settings.data_dir, settings.image_dir), settings.max_samples, settings.seed)
    items = Grading(drawn)
    items.subset = drawn.subset
    if settings.judge_prompt_file:
        template = Path(settings.judge_prompt_file).read_text(encoding="utf-8")
        missing = [k for k in ("{question}", "{answer}", "{prediction}") if k not in template]
        if missing:
            raise DataError(f"{settings.judge_prompt_file}: the grading prompt lacks {', '.join(missing)}")
        items.template = template
    return items, [Example(item.question + settings.prompt_suffix, item.answer, item.image,
                           uid=f"mmvet/{item.question_id}") for item in items]


GENERAL_EVALS.register("mmvet")(GeneralEval(MMVetSettings, write_mmvet, mmvet_questions, score_mmvet, judged=True))
