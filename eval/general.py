"""Run the configured general-capability evaluations on a model and combine them into FIUBench's ACC."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from accelerate import Accelerator

from eval.mme import load_mme, score_mme
from eval.pope import load_pope, score_pope
from unlearning.data import ChatCollator, Example
from unlearning.evaluate import generate_answers

log = logging.getLogger(__name__)


def run_general(
    model: Any, collator: ChatCollator, settings: Mapping[str, Mapping[str, Any]], batch_size: int,
    accelerator: Accelerator | None = None,
) -> dict[str, Any]:
    """MME and/or POPE as configured; ``acc`` is the mean of their overall accuracies (0-1).

    FIUBench's paper reports an "ACC" from MME and POPE without saying how they are combined; this mean
    over all yes/no questions of each is our definition (docs/fidelity.md).
    """
    results: dict[str, Any] = {}
    if "mme" in settings:
        cfg = settings["mme"]
        items = load_mme(cfg["data_dir"], cfg.get("subtasks"))
        examples = [Example(item.question, "yes", item.image, uid=f"mme/{i}") for i, item in enumerate(items)]
        predictions = generate_answers(model, collator, examples, batch_size, cfg["max_new_tokens"], accelerator,
                                       desc="mme")
        results["mme"] = score_mme(items, predictions)
    if "pope" in settings:
        cfg = settings["pope"]
        items = load_pope(cfg["data_dir"], cfg.get("image_dir"), cfg.get("splits") or ("random", "popular",
                                                                                        "adversarial"))
        suffix = cfg.get("prompt_suffix") or ""
        examples = [Example(item.question + suffix, "yes", item.image, uid=f"pope/{i}") for i, item in
                    enumerate(items)]
        predictions = generate_answers(model, collator, examples, batch_size, cfg["max_new_tokens"], accelerator,
                                       desc="pope")
        results["pope"] = score_pope(items, predictions)
    accuracies = [results[name]["accuracy"] for name in ("mme", "pope") if name in results]
    results["acc"] = sum(accuracies) / len(accuracies) if accuracies else None
    return results
