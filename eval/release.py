"""What the general evaluations share: reading a release file with errors that name file, record and field, the
seeded subset of ``max_samples`` questions, and the scene questions their built-in sets ask about drawn shapes."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from unlearning.data.examples import DataError
from unlearning.data.synthetic import SHAPE_COLOURS, SHAPES, draw_shapes

T = TypeVar("T")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def read_json(path: Path, what: str) -> Any:
    """A release's JSON file; a missing or broken one is a DataError naming it (and where JSON broke)."""
    if not path.is_file():
        raise DataError(f"{what} file {path} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not JSON ({error})") from error


def field(record: Any, key: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    """``record[key]`` of the expected type; otherwise a DataError naming the place (file and record) and field."""
    if not isinstance(record, Mapping):
        raise DataError(f"{where}: a record must be an object, got {type(record).__name__}")
    if key not in record:
        raise DataError(f"{where}: missing field {key!r}")
    value = record[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise DataError(f"{where}: field {key!r} must be {names}, got {value!r}"[:300])
    return value


def image_file(path: Path, where: str) -> Path:
    """An image the release names, checked to exist before any model loads."""
    if not path.is_file():
        raise DataError(f"{where}: image {path} not found")
    return path


@dataclass(frozen=True)
class Subset:
    """Which questions a quick run kept: ``n`` of ``of``, drawn with ``seed`` (the summary reports it)."""

    n: int
    of: int
    seed: int


class Drawn(list):
    """A release's items, perhaps a seeded subset of them; ``subset`` is None when all were kept."""

    subset: Subset | None = None


def draw(items: Sequence[T], max_samples: int | None, seed: int) -> Drawn:
    """At most ``max_samples`` of ``items``, drawn with ``seed`` and kept in release order (None: all of them);
    a quick run's numbers then say how many questions they rest on."""
    out = Drawn(items)
    if max_samples is None or max_samples >= len(items):
        return out
    if max_samples < 1:
        raise ValueError(f"max_samples must be positive or null, got {max_samples}")
    kept = sorted(random.Random(seed).sample(range(len(items)), max_samples))
    out = Drawn(items[i] for i in kept)
    out.subset = Subset(max_samples, len(items), seed)
    return out


def accuracy_by(items: Sequence[Any], scores: Sequence[float], groups: Sequence[str], name: str) -> dict[str, Any]:
    """The mean score (0-1) over all questions and per group (under ``name``), with their counts and the subset
    drawn: every scorer's summary."""
    by_group: dict[str, list[float]] = {}
    for group, score in zip(groups, scores, strict=True):
        by_group.setdefault(group, []).append(float(score))
    return {"accuracy": sum(scores) / len(scores), "n": len(scores),
            name: {k: {"accuracy": sum(v) / len(v), "n": len(v)} for k, v in sorted(by_group.items())},
            "subset": subset_of(items)}


def subset_of(items: Sequence[Any]) -> dict[str, int] | None:
    """The summary's note of a subset (None: every question of the release was asked)."""
    subset = getattr(items, "subset", None)
    return None if subset is None else {"n": subset.n, "of": subset.of, "seed": subset.seed}


def check_max_samples(max_samples: int | None) -> None:
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)
                                    or max_samples < 1):
        raise ValueError(f"max_samples must be a positive whole number or null, got {max_samples!r}")


@dataclass(frozen=True)
class Scene:
    """A drawn image and short questions about it with their one-word answers (the built-in sets' material)."""

    image: Image.Image
    objects: list[tuple[str, str, str]]  # (colour, shape, side)

    def colour_question(self) -> tuple[str, str]:
        colour, shape, side = self.objects[0]
        return f"What color is the {shape} on the {side}?", colour

    def count_question(self) -> tuple[str, str]:
        return "How many shapes are there in the image?", str(len(self.objects))

    def shape_question(self) -> tuple[str, str]:
        colour, shape, _ = self.objects[-1]
        return f"What shape is {colour}?", shape

    def yes_no_question(self, rng: random.Random) -> tuple[str, str]:
        present = {(c, s) for c, s, _ in self.objects}
        colour, shape = rng.choice([(c, s) for c in SHAPE_COLOURS for s in SHAPES])
        return f"Is there a {colour} {shape}?", "yes" if (colour, shape) in present else "no"


def draw_scene(rng: random.Random, size: int) -> Scene:
    image, objects = draw_shapes(rng, size)
    return Scene(image, objects)
