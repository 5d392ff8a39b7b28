"""MME (Fu et al. 2023): yes/no questions, two per image, over 14 subtasks.

Release layout (``MME_Benchmark_release_version/``): one folder per subtask, holding either
``images/`` + ``questions_answers_YN/`` (artwork, celebrity, landmark, posters, scene) or images and
same-named ``.txt`` files side by side; each ``.txt`` line is ``question<TAB>Yes|No``.
Scores follow the official calculation: per subtask acc (questions) + acc+ (images with both right), each
in percent; perception and cognition are sums over their subtasks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.yesno import parse_yes_no
from unlearning.data import DataError

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork",
              "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


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
