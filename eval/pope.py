"""POPE (Li et al. 2023): "Is there a <object> in the image?" over COCO, in random/popular/adversarial splits.

Two layouts are read: the official JSON-lines files ``coco_pope_<split>.json`` (``question_id, image, text,
label``) with the COCO images in ``image_dir``, and the lmms-lab/POPE parquet shards (``question, answer,
category, image``) that FIUBench used. Scores: accuracy, precision, recall, F1 (yes is positive), yes-ratio.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from eval.yesno import parse_yes_no
from unlearning.data import DataError

SPLITS = ("random", "popular", "adversarial")


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
