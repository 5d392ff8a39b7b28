"""MME (Fu et al. 2023): yes/no questions, two per image, over 14 subtasks.

Release layout (``MME_Benchmark_release_version/``): one folder per subtask, holding either
``images/`` + ``questions_answers_YN/`` (artwork, celebrity, landmark, posters, scene) or images and
same-named ``.txt`` files side by side; each ``.txt`` line is ``question<TAB>Yes|No``.
Scores follow the official calculation: per subtask acc (questions) + acc+ (images with both right), each
in percent; perception and cognition are sums over their subtasks.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.yesno import parse_yes_no
from unlearning.data.examples import DataError, Example
from unlearning.data.synthetic import SHAPE_COLOURS, SHAPES, draw_shapes
from unlearning.evaluation.general import GENERAL_EVALS, GeneralEval

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork",
              "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MMEItem:
    subtask: str
    image: Path
    question: str
    answer: str  # "yes" | "no"


def _find_image(folder: Path, stem: str, where: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    raise DataError(f"{where}: no image {stem}.png/.jpg in {folder}")


def load_mme(data_dir: str | Path, subtasks: Sequence[str] | None = None) -> list[MMEItem]:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"MME folder {data_dir} not found")
    known = set(PERCEPTION) | set(COGNITION)
    present = sorted(p.name for p in data_dir.iterdir() if p.is_dir() and p.name in known)
    chosen = list(subtasks) if subtasks else present
    items = []
    for subtask in chosen:
        folder = data_dir / subtask
        if subtask not in known or not folder.is_dir():
            raise DataError(f"unknown or missing MME subtask {subtask!r} in {data_dir}; present: {present}")
        split_layout = (folder / "questions_answers_YN").is_dir()
        text_dir = folder / "questions_answers_YN" if split_layout else folder
        image_dir = folder / "images" if split_layout else folder
        for text_file in sorted(text_dir.glob("*.txt")):
            image = _find_image(image_dir, text_file.stem, text_file)
            for line_number, line in enumerate(text_file.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                parts = line.rsplit("\t", 1)
                answer = parts[-1].strip().lower() if len(parts) == 2 else ""
                if answer not in ("yes", "no"):
                    raise DataError(f"{text_file}: line {line_number} is not 'question<TAB>Yes|No'")
                items.append(MMEItem(subtask, image, parts[0].strip(), answer))
    if not items:
        raise DataError(f"no MME questions found in {data_dir}")
    return items


def score_mme(items: Sequence[MMEItem], predictions: Sequence[str]) -> dict:
    """Per-subtask acc, acc+ and score (percent), perception/cognition totals, overall accuracy (0-1)."""
    by_image: dict[tuple[str, Path], list[bool]] = defaultdict(list)
    by_subtask: dict[str, list[bool]] = defaultdict(list)
    unknown = 0
    for item, prediction in zip(items, predictions, strict=True):
        parsed = parse_yes_no(prediction)
        unknown += parsed is None
        correct = parsed == item.answer
        by_image[(item.subtask, item.image)].append(correct)
        by_subtask[item.subtask].append(correct)
    subtasks = {}
    for subtask, results in sorted(by_subtask.items()):
        images = [all(r) for (s, _), r in by_image.items() if s == subtask]
        acc, acc_plus = 100 * sum(results) / len(results), 100 * sum(images) / len(images)
        subtasks[subtask] = {"acc": acc, "acc_plus": acc_plus, "score": acc + acc_plus, "n": len(results)}
    every = [r for results in by_subtask.values() for r in results]
    return {
        "subtasks": subtasks,
        "perception": sum(v["score"] for k, v in subtasks.items() if k in PERCEPTION),
        "cognition": sum(v["score"] for k, v in subtasks.items() if k in COGNITION),
        "accuracy": sum(every) / len(every),
        "n": len(every),
        "n_unparsed": unknown,
    }


def _yes_no(flag: bool) -> str:
    return "Yes" if flag else "No"


def write_mme(out_dir: str | Path, n_images: int = 8, image_size: int = 112, seed: int = 0) -> Path:
    """MME's release layout over drawn shapes: four perception subtasks (flat layout, and ``scene`` in the
    images/ + questions_answers_YN/ layout) and one cognition subtask; two questions per image, one yes, one no."""
    out_dir = Path(out_dir)
    rng = random.Random(f"{seed}-mme")
    suffix = " Please answer yes or no."
    for subtask in ("existence", "count", "color", "position", "scene", "numerical_calculation"):
        split_layout = subtask == "scene"
        image_dir = out_dir / subtask / ("images" if split_layout else "")
        text_dir = out_dir / subtask / ("questions_answers_YN" if split_layout else "")
        image_dir.mkdir(parents=True, exist_ok=True)
        text_dir.mkdir(parents=True, exist_ok=True)
        for index in range(n_images):
            image, objects = draw_shapes(rng, image_size)
            colour, shape, side = objects[0]
            absent = next((c, s) for c in SHAPE_COLOURS for s in SHAPES if (c, s) not in [o[:2] for o in objects])
            other = next(c for c in SHAPE_COLOURS if c != colour)
            a, b = rng.randint(1, 5), rng.randint(1, 5)
            pairs = {
                "existence": [(f"Is there a {colour} {shape} in the image?", True),
                              (f"Is there a {absent[0]} {absent[1]} in the image?", False)],
                "count": [(f"Are there {len(objects)} shapes in the image?", True),
                          (f"Are there {len(objects) + 2} shapes in the image?", False)],
                "color": [(f"Is the {shape} on the {side} {colour}?", True),
                          (f"Is the {shape} on the {side} {other}?", False)],
                "position": [(f"Is the {colour} {shape} on the {side} side of the image?", True),
                             (f"Is the {colour} {shape} on the {'right' if side == 'left' else 'left'} side of the "
                              "image?", False)],
                "scene": [("Is the background of the image light?", True),
                          ("Is the background of the image dark?", False)],
                "numerical_calculation": [(f"Is {a} plus {b} equal to {a + b}?", True),
                                          (f"Is {a} plus {b} equal to {a + b + 1}?", False)],
            }[subtask]
            stem = f"{subtask}_{index:03d}"
            image.save(image_dir / f"{stem}.png")
            (text_dir / f"{stem}.txt").write_text(
                "".join(f"{question}{suffix}\t{_yes_no(answer)}\n" for question, answer in pairs), encoding="utf-8")
    log.info("wrote synthetic MME (%d images per subtask) to %s", n_images, out_dir)
    return out_dir


@dataclass(frozen=True)
class MMESettings:
    data_dir: str  # the release: dataset/MME_Benchmark_release_version
    builtin_dir: str | None = None  # generated offline when data_dir is this folder
    subtasks: tuple[str, ...] | None = None  # None: every subtask present
    max_new_tokens: int = 3

    def __post_init__(self) -> None:
        if self.subtasks is not None:
            object.__setattr__(self, "subtasks", tuple(self.subtasks))


def mme_questions(settings: MMESettings) -> tuple[list[MMEItem], list[Example]]:
    items = load_mme(settings.data_dir, settings.subtasks)
    return items, [Example(item.question, "yes", item.image, uid=f"mme/{i}") for i, item in enumerate(items)]


GENERAL_EVALS.register("mme")(GeneralEval(MMESettings, write_mme, mme_questions, score_mme))
