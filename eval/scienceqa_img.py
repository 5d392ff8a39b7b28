"""ScienceQA-IMG (Lu et al. 2022): the test questions of ScienceQA that come with an image (2,017 of 4,241),
multiple choice; the model answers with the option's letter.

Release layout (scienceqa.github.io, the ``ScienceQA`` data folder): ``problems.json``, an object keyed by
problem id with ``{question, choices, answer (index), hint, image ("image.png" or null), subject, grade, ...}``,
``pid_splits.json`` (``{train, val, test, ...: [problem ids]}``) and the images ``images/<split>/<pid>/image.png``.
The prompt is LLaVA-1.5's / lmms-eval's ("Context: <hint>" when there is one, the question, "A. ..." per option,
"Answer with the option's letter from the given choices directly."); the letter is read as LLaVA's
``eval_science_qa.py`` reads it (``eval.choices.scienceqa_letter``). Scores: accuracy overall and per subject.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.choices import option_letters, options_text, scienceqa_letter
from eval.release import Drawn, accuracy_by, check_max_samples, draw, draw_scene, field, image_file, read_json
from unlearning.data.examples import DataError, Example
from unlearning.data.synthetic import SHAPE_COLOURS, SHAPES
from unlearning.evaluation.general import GENERAL_EVALS, GeneralEval
from unlearning.runs.io import atomic_write_text

LETTER_ONLY = "\nAnswer with the option's letter from the given choices directly."
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SQAItem:
    pid: str
    image: Path
    question: str
    hint: str
    choices: tuple[str, ...]
    answer: str  # the right option's letter
    subject: str

    def prompt(self, suffix: str) -> str:
        context = f"Context: {self.hint}\n" if self.hint else ""
        return f"{context}{self.question}\n{options_text(option_letters(len(self.choices)), self.choices)}{suffix}"


def load_scienceqa(data_dir: str | Path, split: str = "test") -> list[SQAItem]:
    """The split's problems that have an image (ScienceQA-IMG), in ``pid_splits.json`` order."""
    data_dir = Path(data_dir)
    problems_path, splits_path = data_dir / "problems.json", data_dir / "pid_splits.json"
    problems = read_json(problems_path, "ScienceQA problems")
    splits = read_json(splits_path, "ScienceQA splits")
    if not isinstance(problems, dict):
        raise DataError(f"{problems_path}: expected an object keyed by problem id")
    pids = field(splits, split, str(splits_path), list)
    items = []
    for pid in pids:
        where = f"{problems_path}: problem {pid!r}"
        if pid not in problems:
            raise DataError(f"{splits_path}: {split} lists problem {pid!r}, which {problems_path} lacks")
        record = problems[pid]
        image_name = field(record, "image", where, (str, type(None)))
        if not image_name:
            continue
        choices = tuple(field(record, "choices", where, list))
        answer = field(record, "answer", where, int)
        if not all(isinstance(c, str) for c in choices) or not 2 <= len(choices) <= 5:
            raise DataError(f"{where}: field 'choices' must list 2 to 5 texts, got {choices!r}"[:300])
        if not 0 <= answer < len(choices):
            raise DataError(f"{where}: field 'answer' {answer} is not an index into its {len(choices)} choices")
        image = image_file(data_dir / "images" / split / str(pid) / image_name, where)
        hint = record.get("hint") or ""
        items.append(SQAItem(str(pid), image, field(record, "question", where), hint if isinstance(hint, str) else "",
                             choices, option_letters(len(choices))[answer], str(record.get("subject") or "unknown")))
    if not items:
        raise DataError(f"no {split} problems with an image in {problems_path}")
    return items


def score_scienceqa(items: Sequence[SQAItem], predictions: Sequence[str]) -> dict:
    """Accuracy (0-1) overall and per subject; answers whose letter cannot be read count as wrong."""
    letters = [scienceqa_letter(prediction, len(item.choices)) for item, prediction in zip(items, predictions,
                                                                                            strict=True)]
    scores = [float(letter == item.answer) for item, letter in zip(items, letters, strict=True)]
    return {**accuracy_by(items, scores, [item.subject for item in items], "subjects"),
            "n_unparsed": sum(letter is None for letter in letters)}


def write_scienceqa(out_dir: str | Path, n_images: int = 8, image_size: int = 112, seed: int = 0) -> Path:
    """ScienceQA's files over drawn shapes: per image a test problem with an image (colour or shape, three or four
    options), plus a text-only test problem and a train problem that ScienceQA-IMG leaves out."""
    out_dir = Path(out_dir)
    rng = random.Random(f"{seed}-scienceqa")
    problems, splits = {}, {"train": [], "val": [], "test": [], "minival": []}
    for index in range(n_images):
        scene = draw_scene(rng, image_size)
        pid = str(1000 + index)
        question, answer = scene.colour_question() if index % 2 == 0 else scene.shape_question()
        pool = list(SHAPE_COLOURS) if index % 2 == 0 else list(SHAPES)
        choices = [answer, *rng.sample([c for c in pool if c != answer], min(len(pool) - 1, 3 - index % 2))]
        rng.shuffle(choices)
        (out_dir / "images" / "test" / pid).mkdir(parents=True, exist_ok=True)
        scene.image.save(out_dir / "images" / "test" / pid / "image.png")
        problems[pid] = _problem(question, choices, choices.index(answer), "image.png", "test",
                                 "Look at the picture." if index % 3 == 0 else "")
        splits["test"].append(pid)
    problems["1"] = _problem("Which word is a noun?", ["run", "table"], 1, None, "test", "")
    problems["2"] = _problem("Which is a colour?", ["red", "seven"], 0, None, "train", "")
    splits["test"].insert(1, "1")
    splits["train"].append("2")
    atomic_write_text(out_dir / "problems.json", json.dumps(problems))
    atomic_write_text(out_dir / "pid_splits.json", json.dumps(splits))
    log.info("wrote synthetic ScienceQA (%d problems with images) to %s", n_images, out_dir)
    return out_dir


def _problem(question: str, choices: list[str], answer: int, image: str | None, split: str, hint: str) -> dict:
    return {"question": question, "choices": choices, "answer": answer, "hint": hint, "image": image,
            "task": "closed choice", "grade": "grade2", "subject": "natural science" if image else "language science",
            "topic": "colors", "category": "Shapes", "skill": "Identify shapes", "lecture": "", "solution": "",
            "split": split}


@dataclass(frozen=True)
class ScienceQASettings:
    data_dir: str  # the release: dataset/ScienceQA (problems.json, pid_splits.json, images/)
    builtin_dir: str | None = None  # generated offline when data_dir is this folder
    split: str = "test"
    max_samples: int | None = None  # a seeded subset for quick runs (2,017 test problems with images); None: all
    seed: int = 0
    prompt_suffix: str = LETTER_ONLY
    max_new_tokens: int = 5

    def __post_init__(self) -> None:
        check_max_samples(self.max_samples)


def scienceqa_questions(settings: ScienceQASettings) -> tuple[Drawn, list[Example]]:
    items = draw(load_scienceqa(settings.data_dir, settings.split), settings.max_samples, settings.seed)
    return items, [Example(item.prompt(settings.prompt_suffix), item.answer, item.image, uid=f"scienceqa/{item.pid}")
                   for item in items]


GENERAL_EVALS.register("scienceqa_img")(GeneralEval(ScienceQASettings, write_scienceqa, scienceqa_questions,
                                                    score_scienceqa))
