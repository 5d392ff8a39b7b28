"""How well an image region shows an object, by CLIP (EFUF's insight/clip.py, restated).

The image is cut into square windows (``window`` px, every ``stride`` px); each window is scored against the
text "A photo containing {object}." as CLIP's ``logits_per_image`` (100 x cosine for the released CLIP). The image
is divided into ``stride``-px patches; a patch's score is the mean of the windows covering it, and the object's
score is the mean of its ``top_k`` best patches. By default only whole windows are scored, so the last patch row
and column of an image whose sides are not ``stride`` multiples past a window are covered by none; the original
(insight/clip.py:105-121) counted ceil(side / stride) patches and started a window at each patch that leaves
room for ``window / stride`` patches, cropping the last ones short at the image's edge (a 640x427 image: 66
windows, 11 x 6, against 50, 10 x 5): ``partial_edges`` (compat switch ``clip_windows_as_original``). An image
smaller than a window is scored whole (the original skipped it when no window started: no score).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TEXT_TEMPLATE = "A photo containing {}."


@dataclass(frozen=True)
class WindowSettings:
    window: int = 192  # 4 patches of 48 px
    stride: int = 48
    top_k: int = 4
    partial_edges: bool = False  # the original's windows, cropped short at the image's edge

    def __post_init__(self) -> None:
        if self.stride < 1 or self.window < self.stride or self.window % self.stride or self.top_k < 1:
            raise ValueError(f"windows need 1 <= stride <= window, window a multiple of stride, top_k >= 1; got "
                             f"{self}")


def window_boxes(width: int, height: int, settings: WindowSettings) -> list[tuple[int, int, int, int]]:
    """(left, top, right, bottom) of every window, or the whole image when no window fits (starts)."""
    if settings.partial_edges:
        span = settings.window // settings.stride  # patches per window side
        xs = [k * settings.stride for k in range(math.ceil(width / settings.stride) - span + 1)]
        ys = [k * settings.stride for k in range(math.ceil(height / settings.stride) - span + 1)]
        boxes = [(x, y, min(x + settings.window, width), min(y + settings.window, height)) for y in ys for x in xs]
        return boxes or [(0, 0, width, height)]
    if width < settings.window or height < settings.window:
        return [(0, 0, width, height)]
    return [(x, y, x + settings.window, y + settings.window)
            for y in range(0, height - settings.window + 1, settings.stride)
            for x in range(0, width - settings.window + 1, settings.stride)]


def patch_scores(width: int, height: int, boxes: Sequence[tuple[int, int, int, int]], scores: Sequence[float],
                 settings: WindowSettings) -> np.ndarray:
    """Per ``stride``-px patch, the mean score of the windows covering it (NaN where none does)."""
    rows, cols = max(1, math.ceil(height / settings.stride)), max(1, math.ceil(width / settings.stride))
    total, count = np.zeros((rows, cols)), np.zeros((rows, cols))
    for (left, top, right, bottom), score in zip(boxes, scores, strict=True):
        r0, r1 = top // settings.stride, max(top // settings.stride + 1, math.ceil(bottom / settings.stride))
        c0, c1 = left // settings.stride, max(left // settings.stride + 1, math.ceil(right / settings.stride))
        total[r0:r1, c0:c1] += score
        count[r0:r1, c0:c1] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def object_score(patches: np.ndarray, top_k: int) -> float:
    """The mean of the ``top_k`` best covered patches."""
    covered = np.sort(patches[~np.isnan(patches)])[::-1]
    if covered.size == 0:
        raise ValueError("no patch is covered by a window")
    return float(covered[:top_k].mean())


WindowScorer = Callable[[Sequence[Image.Image], Sequence[str]], np.ndarray]  # (windows x texts) scores


def score_objects(image: Image.Image, objects: Sequence[str], scorer: WindowScorer,
                  settings: WindowSettings) -> dict[str, float]:
    """Each object's score in one image (all windows and all objects in one scorer call)."""
    if not objects:
        return {}
    boxes = window_boxes(image.width, image.height, settings)
    crops = [image.crop(box) for box in boxes]
    table = scorer(crops, [TEXT_TEMPLATE.format(name) for name in objects])
    return {name: object_score(patch_scores(image.width, image.height, boxes, table[:, j], settings), settings.top_k)
            for j, name in enumerate(objects)}


class ClipScorer:
    """``logits_per_image`` of a transformers CLIP model (a hub name or a folder), in batches of windows."""

    def __init__(self, model_path: str | Path, batch_size: int = 64, device: str | None = None) -> None:
        from transformers import CLIPModel, CLIPProcessor

        self.processor = CLIPProcessor.from_pretrained(str(model_path))
        self.model = CLIPModel.from_pretrained(str(model_path)).eval()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, crops: Sequence[Image.Image], texts: Sequence[str]) -> np.ndarray:
        text = self.processor(text=list(texts), return_tensors="pt", padding=True)
        text = {k: v.to(self.device) for k, v in text.items()}
        rows = []
        for start in range(0, len(crops), self.batch_size):
            pixels = self.processor(images=list(crops[start:start + self.batch_size]), return_tensors="pt")
            outputs = self.model(pixel_values=pixels["pixel_values"].to(self.device), **text)
            rows.append(outputs.logits_per_image.float().cpu().numpy())
        return np.concatenate(rows, axis=0)
