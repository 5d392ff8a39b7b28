"""Shared set-up of the benchmark scripts: a tiny LLaVA (16 or 576 image tokens) on built-in FIUBench data, built
offline in a temporary folder, and a timer that reports min and median over repetitions.

Scripts print ratios measured in one process on the same model and data; absolute times depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fiubench.benchmark import FiuBenchTask
from fiubench.synthetic import write_fiubench
from unlearning.data.collator import ChatCollator
from unlearning.data.pixel_cache import PIXEL_CACHE_MB, CachedImageProcessor
from unlearning.models.loading import load_model, load_processor
from unlearning.models.tiny import build_tiny_model
from unlearning.recipes.common import make_collator

# image tokens -> the tiny LLaVA's vision settings (LLaVA-1.5 has 576 image tokens: 336 px at patch 14)
VARIANTS = {16: {"image_size": 112, "patch_size": 28}, 576: {"image_size": 336, "patch_size": 14}}


@dataclass
class World:
    task: FiuBenchTask
    model: torch.nn.Module
    collator: object
    folder: Path


def build_world(image_tokens: int, n_identities: int = 8, n_perturbed: int = 3, text_hidden: int = 256,
                text_layers: int = 4) -> World:
    """Built-in FIUBench data and the tiny LLaVA (language model ``text_hidden`` wide, ``text_layers`` deep)."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench{image_tokens}-"))
    data = folder / "data"
    write_fiubench(data, n_identities=n_identities, qa_per_identity=5, image_size=112, n_perturbed=n_perturbed)
    task = FiuBenchTask(data)
    model_dir = folder / "model"
    build_tiny_model("llava", model_dir, task.texts(), text_hidden=text_hidden, text_layers=text_layers,
                     text_ffn=4 * text_hidden, text_heads=8,
                     vision_hidden=128, vision_layers=2, **VARIANTS[image_tokens])
    processor = load_processor(model_dir)
    model = load_model(model_dir)
    return World(task, model, make_collator(processor, model.generation_config, None), folder)


def timed(work: Callable[[], object], repeats: int = 5, warmup: int = 1) -> tuple[float, float]:
    """(min, median) seconds of ``work`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        work()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - start)
    return min(seconds), statistics.median(seconds)


def ratio_line(name: str, ours: tuple[float, float], baseline: tuple[float, float],
               baseline_is_slower: bool = False) -> str:
    """Times in ms and their ratio: ours / baseline (an overhead), or baseline / ours with ``baseline_is_slower``
    (a speed-up)."""
    ratio = (f"speed-up (min) {baseline[0] / ours[0]:.2f}x" if baseline_is_slower
             else f"ratio (min) {ours[0] / baseline[0]:.3f}")
    return (f"{name:<28} ours min {ours[0] * 1000:8.1f} ms, median {ours[1] * 1000:8.1f} ms | baseline min "
            f"{baseline[0] * 1000:8.1f} ms, median {baseline[1] * 1000:8.1f} ms | {ratio}")


def run_variants(doc: str, measure: Callable[[int, int], None], repeats: int = 5) -> None:
    """A script's command line (``--repeats``, ``--variants``): ``measure(image_tokens, repeats)`` per variant."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--variants", type=int, nargs="+", default=sorted(VARIANTS))
    args = parser.parse_args()
    torch.manual_seed(0)
    for image_tokens in args.variants:
        measure(image_tokens, args.repeats)


def fresh_collator(collator: ChatCollator, remember_images: bool = True) -> ChatCollator:
    """A new collator like ``collator`` with nothing remembered: a run's first evaluation (processed images kept
    from then on), or with ``remember_images=False`` the originals' loops, which processed every image each time."""
    return ChatCollator(collator.processor, sorted(collator.stop_ids), collator.system_prompt, collator.label_scope,
                        collator.original, CachedImageProcessor(PIXEL_CACHE_MB if remember_images else 0))
