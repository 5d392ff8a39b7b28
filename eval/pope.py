"""POPE (Li et al. 2023): "Is there a <object> in the image?" over COCO, in random/popular/adversarial splits.

Two layouts are read: the official JSON-lines files ``coco_pope_<split>.json`` (``question_id, image, text,
label``) with the COCO images in ``image_dir``, and the lmms-lab/POPE parquet shards (``question, answer,
category, image``) that FIUBench used. Scores: accuracy, precision, recall, F1 (yes is positive), yes-ratio.
"""

from __future__ import annotations

import io
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from eval.yesno import parse_yes_no
from unlearning.data.examples import DataError, Example
from unlearning.data.synthetic import SHAPE_COLOURS, SHAPES, draw_shapes
from unlearning.evaluation.general import GENERAL_EVALS, GeneralEval
from unlearning.runs.io import atomic_write_text

SPLITS = ("random", "popular", "adversarial")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PopeItem:
    split: str
    image: Any  # a Path, or a PIL image from the parquet shards
    question: str
    label: str  # "yes" | "no"


def load_pope(data_dir: str | Path, image_dir: str | Path | None = None,
              splits: Sequence[str] = SPLITS) -> list[PopeItem]:
    data_dir = Path(data_dir)
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise DataError(f"unknown POPE splits {sorted(unknown)}; known: {', '.join(SPLITS)}")
    shards = sorted(data_dir.glob("**/*.parquet"))
    items = _load_parquet(shards, splits) if shards else _load_json_lines(data_dir, image_dir, splits)
    if not items:
        raise DataError(f"no POPE questions for splits {list(splits)} in {data_dir}")
    return items


def _load_json_lines(data_dir: Path, image_dir: str | Path | None, splits: Sequence[str]) -> list[PopeItem]:
    images = Path(image_dir) if image_dir else data_dir / "images"
    items = []
    for split in splits:
        path = data_dir / f"coco_pope_{split}.json"
        if not path.is_file():
            raise DataError(f"POPE file {path} not found")
        for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                image, text, label = record["image"], record["text"], str(record["label"]).lower()
            except (json.JSONDecodeError, KeyError) as error:
                raise DataError(f"{path}: line {line_number}: {error!r}") from error
            if label not in ("yes", "no"):
                raise DataError(f"{path}: line {line_number}: label {label!r} is not yes/no")
            if not (images / image).is_file():
                raise DataError(f"{path}: line {line_number}: image {images / image} not found")
            items.append(PopeItem(split, images / image, text, label))
    return items


def _load_parquet(shards: Sequence[Path], splits: Sequence[str]) -> list[PopeItem]:
    import pyarrow.parquet as pq

    items = []
    for shard in shards:
        table = pq.read_table(shard).to_pylist()
        for row_number, row in enumerate(table):
            try:
                split, question, label, image = row["category"], row["question"], row["answer"].lower(), row["image"]
            except (KeyError, AttributeError) as error:
                raise DataError(f"{shard}: row {row_number}: {error!r}") from error
            if split in splits:
                items.append(PopeItem(split, Image.open(io.BytesIO(image["bytes"])).convert("RGB"), question, label))
    return items


def score_pope(items: Sequence[PopeItem], predictions: Sequence[str]) -> dict:
    """Per split: accuracy, precision, recall, F1, yes-ratio, unparsed count; and their mean accuracy."""
    results: dict[str, dict] = {}
    for split in sorted({item.split for item in items}):
        pairs = [(item.label, parse_yes_no(p)) for item, p in zip(items, predictions, strict=True)
                 if item.split == split]
        true_yes = sum(label == "yes" and pred == "yes" for label, pred in pairs)
        said_yes = sum(pred == "yes" for _, pred in pairs)
        label_yes = sum(label == "yes" for label, _ in pairs)
        precision = true_yes / said_yes if said_yes else 0.0
        recall = true_yes / label_yes if label_yes else 0.0
        results[split] = {
            "accuracy": sum(label == pred for label, pred in pairs) / len(pairs),
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "yes_ratio": said_yes / len(pairs),
            "n": len(pairs),
            "n_unparsed": sum(pred is None for _, pred in pairs),
        }
    return {"splits": results, "accuracy": sum(r["accuracy"] for r in results.values()) / len(results)}


def write_pope(out_dir: str | Path, n_images: int = 10, image_size: int = 112, seed: int = 0) -> Path:
    """POPE's official files (``coco_pope_<split>.json`` lines + ``images/``) over drawn shapes: per image one
    present object (yes) and one absent one (no), absent ones drawn at random, by frequency (popular) or
    sharing a present object's shape (adversarial, POPE's co-occurrence)."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{seed}-pope")
    scenes = []
    for index in range(n_images):
        image, objects = draw_shapes(rng, image_size)
        name = f"synthetic_{index:04d}.png"
        image.save(out_dir / "images" / name)
        scenes.append((name, [f"{c} {s}" for c, s, _ in objects]))
    vocabulary = [f"{c} {s}" for c in SHAPE_COLOURS for s in SHAPES]
    frequency = {word: sum(word in present for _, present in scenes) for word in vocabulary}
    question_id = 0
    for split in ("random", "popular", "adversarial"):
        lines = []
        for name, present in scenes:
            absent = [w for w in vocabulary if w not in present]
            if split == "popular":
                negative = max(absent, key=lambda w: (frequency[w], w))
            elif split == "adversarial":
                shapes = {p.split()[1] for p in present}
                negative = next((w for w in absent if w.split()[1] in shapes), absent[0])
            else:
                negative = rng.choice(absent)
            for word, label in ((rng.choice(present), "yes"), (negative, "no")):
                question_id += 1
                lines.append(json.dumps({"question_id": question_id, "image": name,
                                         "text": f"Is there a {word} in the image?", "label": label}))
        atomic_write_text(out_dir / f"coco_pope_{split}.json", "\n".join(lines) + "\n")
    log.info("wrote synthetic POPE (%d images) to %s", n_images, out_dir)
    return out_dir


@dataclass(frozen=True)
class PopeSettings:
    data_dir: str  # the release: dataset/POPE (coco_pope_*.json or the lmms-lab parquet shards)
    builtin_dir: str | None = None  # generated offline when data_dir is this folder
    image_dir: str | None = None  # COCO val2014 for the official files; None: data_dir/images
    splits: tuple[str, ...] = SPLITS
    prompt_suffix: str = ""
    max_new_tokens: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "splits", tuple(self.splits or SPLITS))


def pope_questions(settings: PopeSettings) -> tuple[list[PopeItem], list[Example]]:
    items = load_pope(settings.data_dir, settings.image_dir, settings.splits)
    suffix = settings.prompt_suffix or ""
    return items, [Example(item.question + suffix, "yes", item.image, uid=f"pope/{i}")
                   for i, item in enumerate(items)]


GENERAL_EVALS.register("pope")(GeneralEval(PopeSettings, write_pope, pope_questions, score_pope))
