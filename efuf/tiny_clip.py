"""A tiny CLIP built offline (random weights, a tokenizer trained on the given text), saved like a released one.

It runs the same ``ClipScorer`` path as ``openai/clip-vit-base-patch32``; the built-in benchmark trains it to tell
its drawn objects apart before it scores captions. The trained model is built and trained in a temporary folder
and moved to its path only once trained, with ``tiny_clip.json`` (the training's record) written last: an
interrupted training leaves no folder a later curation could take for a trained CLIP.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

from efuf.clip_scores import TEXT_TEMPLATE, WindowSettings, window_boxes
from unlearning.data.images import load_image
from unlearning.models.tiny import train_tokenizer
from unlearning.runs.io import atomic_write_dir, atomic_write_json

TRAINED_RECORD = "tiny_clip.json"  # written last into a trained tiny CLIP's folder: its absence means untrained


def build_tiny_clip(out_dir: str | Path, texts: Iterable[str], image_size: int = 64, patch_size: int = 16,
                    hidden: int = 64, layers: int = 2, projection: int = 32, vocab_size: int = 400,
                    seed: int = 0) -> Path:
    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(texts, [], vocab_size=vocab_size)
    text = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                num_attention_heads=4, max_position_embeddings=32, eos_token_id=tokenizer.eos_token_id,
                bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=4,
                  image_size=image_size, patch_size=patch_size)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection))
    images = CLIPImageProcessor(size={"shortest_edge": image_size},
                                crop_size={"height": image_size, "width": image_size})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


MIDPOINT, SPREAD, SMOOTHING = 27.5, 3.0, 0.05


def _window_crops(images_dir: Path, boxes: dict[str, list[tuple[str, list[float]]]],
                  settings: WindowSettings) -> tuple[list[Image.Image], list[set[str]]]:
    crops, labels = [], []
    for name, objects in sorted(boxes.items()):
        image = load_image(images_dir / name)
        for left, top, right, bottom in window_boxes(image.width, image.height, settings):
            inside = set()
            for category, (x, y, w, h) in objects:
                overlap = max(0.0, min(right, x + w) - max(left, x)) * max(0.0, min(bottom, y + h) - max(top, y))
                if overlap >= 0.5 * w * h:
                    inside.add(category)
            crops.append(image.crop((left, top, right, bottom)))
            labels.append(inside)
    return crops, labels


def train_tiny_clip(out_dir: str | Path, images_dir: Path, instances: Path, settings: WindowSettings, steps: int = 300,
                    batch_size: int = 64, lr: float = 2e-3, seed: int = 0, **sizes: int) -> dict[str, float]:
    """Build a tiny CLIP and teach it which annotated objects each window shows.

    Every window of every annotated image is a training crop; an object is in it when half its box is. With CLIP's
    logit scale fixed at 100 (the released model's), each window's score for every category's text is trained by a
    binary cross-entropy on ``(score - 27.5) / 3`` against 0.95 when the object is in it and 0.05 otherwise: the
    optimum is 27.5 +- 8.8, so scores settle on either side of the original's thresholds (23 and 32), in the
    released CLIP's range. Built and trained in a temporary folder beside ``out_dir``, moved there when trained.
    Returns the training loss at the start and the end.
    """
    info: dict[str, float] = {}

    def fill(folder: Path) -> None:
        info.update(_train(folder, images_dir, instances, settings, steps, batch_size, lr, seed, **sizes))
        atomic_write_json(folder / TRAINED_RECORD, {**info, "steps": steps, "batch_size": batch_size, "lr": lr,
                                                    "seed": seed, **sizes})

    atomic_write_dir(out_dir, fill)
    return info


def is_trained(folder: str | Path) -> bool:
    """Whether ``folder`` holds a tiny CLIP whose training finished (its record is there)."""
    return (Path(folder) / TRAINED_RECORD).is_file()


def _train(out_dir: Path, images_dir: Path, instances: Path, settings: WindowSettings, steps: int, batch_size: int,
           lr: float, seed: int, **sizes: int) -> dict[str, float]:
    boxes = read_boxes(instances)
    categories = sorted({category for objects in boxes.values() for category, _ in objects})
    build_tiny_clip(out_dir, [TEXT_TEMPLATE.format(c) for c in categories], seed=seed, **sizes)
    processor = CLIPProcessor.from_pretrained(out_dir)
    model = CLIPModel.from_pretrained(out_dir)
    model.logit_scale.data.fill_(math.log(100.0))
    model.logit_scale.requires_grad_(False)
    crops, labels = _window_crops(images_dir, boxes, settings)
    pixels = processor(images=crops, return_tensors="pt")["pixel_values"]
    text = processor(text=[TEXT_TEMPLATE.format(c) for c in categories], return_tensors="pt", padding=True)
    targets = torch.tensor([[float(c in inside) for c in categories] for inside in labels])
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    model.train()
    for _ in tqdm(range(steps), desc="tiny CLIP", leave=False, disable=None):
        index = torch.randint(len(crops), (batch_size,), generator=generator)
        logits = model(pixel_values=pixels[index], **text).logits_per_image
        soft = SMOOTHING + (1 - 2 * SMOOTHING) * targets[index]
        loss = torch.nn.functional.binary_cross_entropy_with_logits((logits - MIDPOINT) / SPREAD, soft)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    model.save_pretrained(out_dir)
    return {"loss_start": sum(losses[:10]) / min(10, len(losses)), "loss_end": sum(losses[-10:]) / min(10, len(losses)),
            "crops": len(crops), "categories": len(categories)}


def read_boxes(path: Path) -> dict[str, list[tuple[str, list[float]]]]:
    """Per image file name: (category name, [x, y, w, h]) of each annotated instance."""
    data = json.loads(path.read_text(encoding="utf-8"))
    names = {image["id"]: image["file_name"] for image in data["images"]}
    category = {c["id"]: c["name"] for c in data["categories"]}
    out: dict[str, list[tuple[str, list[float]]]] = {name: [] for name in names.values()}
    for annotation in data["annotations"]:
        out[names[annotation["image_id"]]].append((category[annotation["category_id"]],
                                                   [float(v) for v in annotation["bbox"]]))
    return out
