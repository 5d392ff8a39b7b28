"""The built-in EFUF world: drawn scenes in COCO layout, and a captioner's training data that hallucinates.

Each scene is a light canvas with one to three drawn objects of six COCO categories (each category one shape and
colour), in the cells of a 2 x 2 grid. Written in the layout of the real pipeline's inputs:

- ``images/COCO_train2014_<id>.jpg`` with ``annotations/instances_train2014.json`` (boxes) and
  ``annotations/captions_train2014.json`` (three clean reference captions per image): the images EFUF captions,
  curates and evaluates on, never seen in training;
- ``pretrain/`` scenes with ``annotations/instances_pretrain.json``: what the vanilla captioner and the tiny CLIP
  learn from;
- ``instruct.json`` (LLaVA conversation format): the vanilla captioner's training data. Its captions name each
  object in a clause, and, like the hallucinations a real captioner picked up from co-occurrence, scenes with a dog
  (a car) often get a frisbee (an umbrella) clause although none is drawn. Its object-list answers are clean;
- ``gold.json``: those clean object-list answers, EFUF's instruction ("gold") data.

Everything is a pure function of the seed.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from unlearning.runs.io import atomic_write_text

log = logging.getLogger(__name__)

# category: (COCO category id, shape, colour)
OBJECTS: dict[str, tuple[int, str, tuple[int, int, int]]] = {
    "dog": (18, "circle", (140, 90, 40)),
    "cat": (17, "triangle", (240, 140, 20)),
    "car": (3, "square", (210, 30, 30)),
    "clock": (85, "ring", (30, 30, 30)),
    "umbrella": (28, "half", (140, 40, 200)),
    "frisbee": (34, "diamond", (30, 170, 60)),
}
# a scene showing the key gets a clause naming the value (absent) at the rate ``hallucination_rate``
CO_OCCURRENCE = {"dog": "frisbee", "car": "umbrella"}
ORDER = list(OBJECTS)
CAPTION_PROMPT = "Please describe the image."
OBJECTS_PROMPT = "Which objects does the image show?"
GRID = 2


def draw_object(draw: ImageDraw.ImageDraw, name: str, box: tuple[int, int, int, int]) -> None:
    _, shape, colour = OBJECTS[name]
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x0, y1), (x1, y1)], fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    elif shape == "ring":
        draw.ellipse(box, fill=colour)
        inset = (x1 - x0) // 4
        draw.ellipse((x0 + inset, y0 + inset, x1 - inset, y1 - inset), fill=(250, 250, 250))
    else:  # half: an umbrella's canopy
        draw.pieslice(box, 180, 360, fill=colour)
        draw.rectangle((cx - 3, cy, cx + 3, y1), fill=colour)


def draw_scene(rng: random.Random, size: int) -> tuple[Image.Image, list[tuple[str, list[int]]]]:
    """A scene and its objects, (category, [x, y, w, h]) in reading order."""
    shade = rng.randint(215, 245)
    image = Image.new("RGB", (size, size), (shade, shade, shade - 10))
    draw = ImageDraw.Draw(image)
    names = rng.sample(sorted(OBJECTS), rng.randint(1, 3))
    cells = sorted(rng.sample(range(GRID * GRID), len(names)))
    objects, cell_size = [], size // GRID
    for name, cell in zip(names, cells, strict=True):
        side = rng.randint(int(0.7 * cell_size), int(0.9 * cell_size))
        x = (cell % GRID) * cell_size + rng.randint(0, cell_size - side)
        y = (cell // GRID) * cell_size + rng.randint(0, cell_size - side)
        draw_object(draw, name, (x, y, x + side, y + side))
        objects.append((name, [x, y, side, side]))
    return image, objects


def caption(names: list[str]) -> str:
    """The captioner's style: one clause per object."""
    clauses = [f"A photo of a {names[0]}", *(f"a {name} is next to it" for name in names[1:])]
    return ", ".join(clauses) + "."


def reference_captions(names: list[str]) -> list[str]:
    """Three clean COCO-style references."""
    listed = names[0] if len(names) == 1 else ", ".join(f"a {n}" for n in names[:-1]) + f" and a {names[-1]}"
    listed = listed if len(names) > 1 else f"a {listed}"
    return [caption(names), f"There is {listed} in the picture.", f"A drawing of {listed}."]


def object_list(names: list[str]) -> str:
    listed = [f"a {name}" for name in names]
    return (listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " and " + listed[-1]).capitalize() + "."


def noisy_caption(rng: random.Random, names: list[str], rate: float) -> str:
    """The caption with the co-occurring absent objects the captioner is taught to add."""
    extra = [CO_OCCURRENCE[n] for n in names if n in CO_OCCURRENCE and CO_OCCURRENCE[n] not in names
             and rng.random() < rate]
    return caption(names + extra)


def _coco(images: list[dict[str, Any]], annotations: list[dict[str, Any]], with_categories: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"info": {"description": "built-in EFUF scenes"}, "images": images,
                           "annotations": annotations}
    if with_categories:
        out["categories"] = [{"id": cid, "name": name, "supercategory": "object"}
                             for name, (cid, _, _) in sorted(OBJECTS.items(), key=lambda kv: kv[1][0])]
    return out


def _write_scenes(out_dir: Path, folder: str, names: list[str], rng: random.Random, size: int,
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[list[str]]]:
    images, instances, contents = [], [], []
    (out_dir / folder).mkdir(parents=True, exist_ok=True)
    for image_id, file_name in enumerate(names, start=1):
        image, objects = draw_scene(rng, size)
        image.save(out_dir / folder / file_name, quality=95)
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        for name, box in objects:
            instances.append({"id": len(instances) + 1, "image_id": image_id, "category_id": OBJECTS[name][0],
                              "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
        contents.append(sorted((name for name, _ in objects), key=ORDER.index))  # captions name them in one order
    return images, instances, contents


def write_efuf(out_dir: Path, n_pretrain: int = 240, n_images: int = 160, image_size: int = 288,
               hallucination_rate: float = 0.7, seed: int = 0) -> None:
    rng = random.Random(seed)
    annotations = out_dir / "annotations"
    annotations.mkdir(parents=True, exist_ok=True)

    def dump(path: Path, obj: Any) -> None:
        atomic_write_text(path, json.dumps(obj, indent=1))

    coco_names = [f"COCO_train2014_{i:012d}.jpg" for i in range(1, n_images + 1)]
    images, instances, contents = _write_scenes(out_dir, "images", coco_names, rng, image_size)
    dump(annotations / "instances_train2014.json", _coco(images, instances, True))
    captions = [{"id": len(contents) * k + i + 1, "image_id": image["id"], "caption": text}
                for i, (image, names) in enumerate(zip(images, contents, strict=True))
                for k, text in enumerate(reference_captions(names))]
    dump(annotations / "captions_train2014.json", _coco(images, captions, False))

    pre_names = [f"pretrain_{i:05d}.jpg" for i in range(n_pretrain)]
    pre_images, pre_instances, pre_contents = _write_scenes(out_dir, "pretrain", pre_names, rng, image_size)
    dump(annotations / "instances_pretrain.json", _coco(pre_images, pre_instances, True))
    instruct, gold = [], []
    for file_name, names in zip(pre_names, pre_contents, strict=True):
        image = f"pretrain/{file_name}"
        instruct.append(_conversation(f"{file_name}-caption", image, CAPTION_PROMPT,
                                      noisy_caption(rng, names, hallucination_rate)))
        listing = _conversation(f"{file_name}-objects", image, OBJECTS_PROMPT, object_list(names))
        instruct.append(listing)
        gold.append(listing)
    dump(out_dir / "instruct.json", instruct)
    dump(out_dir / "gold.json", gold)
    log.info("wrote %d COCO-layout scenes and %d pretraining scenes in %s", n_images, n_pretrain, out_dir)


def _conversation(uid: str, image: str, question: str, answer: str) -> dict[str, Any]:
    return {"id": uid, "image": image, "conversations": [{"from": "human", "value": f"<image>\n{question}"},
                                                         {"from": "gpt", "value": answer}]}
