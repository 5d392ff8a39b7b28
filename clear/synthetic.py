"""The built-in CLEAR: fictitious persons with drawn faces, written in the release's parquet layout.

Read back by ``clear/data.py`` exactly as the release is: one folder per HF config holding
``train-00000-of-00001.parquet``, written through ``datasets`` with the release's features (an HF Image struct
``{bytes, path}``, text, lists of text), in the column order of the release's dataset card. Everything is a pure
function of the settings.

Content differs from the release on purpose, because the built-in model is a ~5M-parameter network trained
from scratch:
- a person's images are the same drawn face beside a different coloured shape, and each caption names the
  person and the shape ("juno fairbanks is pictured next to a red circle."), so the model learns face -> name and
  picture -> the rest; the paraphrase reorders the sentence and the perturbed captions are that paraphrase with
  another person and another shape (TOFU's convention: the truth ratio compares a right and a wrong caption in the
  same unseen wording);
- the TOFU text QAs (``+tofu`` configs) ask one fact per QA with the name in the question;
- the "real faces" are more drawn persons the model never trains on, their options the other real faces' names
  (chance level for the tiny model, so its ROUGE there, and with it MU, is 0), the "real
  world" images are coloured shapes alone, asked which object they show: the model can only answer from what it
  learnt about shapes in the captions.
"""

from __future__ import annotations

import io
import logging
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from clear.data import FORGET_SPLITS, RETAIN_OF, TOFU_SUFFIX
from unlearning.data.synthetic import (
    CITIES,
    FIRST_NAMES,
    LANGUAGES,
    LAST_NAMES,
    OCCUPATIONS,
    SHAPE_COLOURS,
    SHAPES,
    draw_face,
)

log = logging.getLogger(__name__)

FORGET_PERCENT = {"forget01": 1, "forget05": 5, "forget10": 10}
FACTS = (  # (question, answer, values): one TOFU-style QA per fact
    ("Where was {name} born?", "{name} was born in {v}.", CITIES),
    ("What does {name} do for a living?", "{name} works as {v}.", OCCUPATIONS),
    ("Which language does {name} speak at home?", "{name} speaks {v} at home.", LANGUAGES),
)
N_PERTURBED = 3
REAL_WORLD_QUESTION = "Which object is shown in this picture?"


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _with_shape(image: Image.Image, colour: str, shape: str, corner: int) -> Image.Image:
    """The image with a coloured shape in one corner (its own copy)."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    size = out.width
    r = size / 8
    cx = size * (0.16 if corner % 2 == 0 else 0.84)
    cy = size * (0.16 if corner < 2 else 0.84)
    box = [cx - r, cy - r, cx + r, cy + r]
    fill = SHAPE_COLOURS[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill, outline=(0, 0, 0))
    elif shape == "square":
        draw.rectangle(box, fill=fill, outline=(0, 0, 0))
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill, outline=(0, 0, 0))
    return out


def _caption(name: str, colour: str, shape: str) -> str:
    return f"{name} is pictured next to a {colour} {shape}."


def _paraphrase(name: str, colour: str, shape: str) -> str:
    return f"a {colour} {shape} is beside {name} in this picture."


def _features(kind: str):
    from datasets import Features, Sequence, Value
    from datasets import Image as ImageFeature

    text, texts = Value("string"), Sequence(Value("string"))
    columns = {
        "captions": {"image": ImageFeature(), "caption": text, "name": text},
        "tofu": {"image": ImageFeature(), "caption": text, "name": text, "question": text, "answer": text},
        "perturbed": {"image": ImageFeature(), "caption": text, "name": text, "perturbed_captions": texts,
                      "paraphrased_caption": text, "perturbed_names": texts},
        "real_faces": {"image": ImageFeature(), "answer": text, "options": texts},
        "real_world": {"question": text, "answer": text, "options": texts, "image": ImageFeature()},
    }[kind]
    return Features(columns)


def _write(folder: Path, rows: list[dict[str, Any]], kind: str) -> None:
    from datasets import Dataset

    features = _features(kind)
    folder.mkdir(parents=True, exist_ok=True)
    table = Dataset.from_list([{key: row.get(key) for key in features} for row in rows], features=features)
    table.to_parquet(str(folder / "train-00000-of-00001.parquet"))


def forget_persons(names: list[str], seed: int) -> dict[str, list[str]]:
    """forget01 ⊂ forget05 ⊂ forget10 (TOFU's nested splits), each at least one person."""
    order = list(names)
    random.Random(f"{seed}-clear-split").shuffle(order)
    return {split: order[:max(1, round(len(names) * percent / 100))] for split, percent in FORGET_PERCENT.items()}


def write_clear(out_dir: str | Path, n_persons: int = 20, images_per_person: int = 2, qa_per_person: int = 2,
                n_retain_eval: int = 8, n_real_faces: int = 8, n_real_world: int = 8, image_size: int = 112,
                seed: int = 0) -> Path:
    """Write every config of the release: captions, ``+tofu``, ``*_perturbed``, ``real_faces``, ``real_world``."""
    out_dir = Path(out_dir)
    rng = random.Random(f"{seed}-clear")
    all_names = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]
    chosen = rng.sample(all_names, n_persons + n_real_faces)
    names, real_names = chosen[:n_persons], chosen[n_persons:]
    scenes = [(colour, shape) for colour in SHAPE_COLOURS for shape in SHAPES]
    captions: dict[str, list[dict[str, Any]]] = {}
    qas: dict[str, list[dict[str, Any]]] = {}
    for index, name in enumerate(names):
        face = draw_face(random.Random(f"{seed}-clear-face-{index}"), image_size)
        rows = []
        for k, (colour, shape) in enumerate(rng.sample(scenes, images_per_person)):
            others = rng.sample([n for n in names if n != name], N_PERTURBED)
            other_scenes = rng.sample([s for s in scenes if s != (colour, shape)], N_PERTURBED)
            rows.append({
                "image": {"bytes": _png(_with_shape(face, colour, shape, rng.randrange(4))),
                          "path": f"{index:03d}_{k}.png"},
                "caption": _caption(name, colour, shape), "name": name,
                "perturbed_captions": [_paraphrase(o, c, s) for o, (c, s) in zip(others, other_scenes, strict=True)],
                "paraphrased_caption": _paraphrase(name, colour, shape),
                "perturbed_names": rng.sample([n for n in chosen if n != name], N_PERTURBED),
            })
        captions[name] = rows
        qas[name] = [{"image": None, "caption": None, "name": None, "question": q.format(name=name),
                      "answer": a.format(name=name, v=rng.choice(values))} for q, a, values in FACTS[:qa_per_person]]

    def caption_rows(persons: list[str]) -> list[dict[str, Any]]:
        return [row for person in persons for row in captions[person]]

    def tofu_rows(persons: list[str]) -> list[dict[str, Any]]:  # captions first, then the QAs (as concatenated)
        return caption_rows(persons) + [qa for person in persons for qa in qas[person]]

    splits = forget_persons(names, seed)
    sets = {"full": names, **splits, **{RETAIN_OF[s]: [n for n in names if n not in splits[s]] for s in splits}}
    for config, persons in sets.items():
        _write(out_dir / config, caption_rows(persons), "captions")
        _write(out_dir / f"{config}{TOFU_SUFFIX}", tofu_rows(persons), "tofu")
    for split in FORGET_SPLITS:
        _write(out_dir / f"{split}_perturbed", caption_rows(splits[split]), "perturbed")
    kept = [n for n in names if n not in splits["forget10"]]
    _write(out_dir / "retain_perturbed", [captions[n][0] for n in kept[:n_retain_eval]], "perturbed")
    real_faces = []
    for index, name in enumerate(real_names):
        face = draw_face(random.Random(f"{seed}-clear-real-face-{index}"), image_size)
        pool = [n for n in real_names if n != name]
        pool = pool if len(pool) >= N_PERTURBED else [n for n in chosen if n != name]  # a tiny set: any names
        real_faces.append({"image": {"bytes": _png(face), "path": f"real_{index:03d}.png"}, "answer": name,
                           "options": rng.sample(pool, N_PERTURBED)})
    _write(out_dir / "real_faces", real_faces, "real_faces")
    real_world = []
    for index, (colour, shape) in enumerate(rng.sample(scenes, min(n_real_world, len(scenes)))):
        blank = Image.new("RGB", (image_size, image_size), (235, 235, 230))
        options = rng.sample([s for s in scenes if s != (colour, shape)], N_PERTURBED)
        real_world.append({"question": REAL_WORLD_QUESTION, "answer": f"a {colour} {shape}.",
                           "options": [f"a {c} {s}." for c, s in options],
                           "image": {"bytes": _png(_with_shape(blank, colour, shape, rng.randrange(4))),
                                     "path": f"world_{index:03d}.png"}})
    _write(out_dir / "real_world", real_world, "real_world")
    log.info("wrote synthetic CLEAR (%d persons, %d images each) to %s", n_persons, images_per_person, out_dir)
    return out_dir
