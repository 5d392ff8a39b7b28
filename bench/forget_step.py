"""A GD / KL / NPO forget step against the bare passes it needs, on the tiny LLaVA with 16 and 576 image tokens.

    python bench/forget_step.py            # prints, per method and variant, min and median ms and the ratio

Ours: the engine's step (answer logits of every stream in one forward pass, the reference pass with the adapter
disabled on the rows the loss reads (KL: retain, NPO: forget), the method's loss, backward). Bare: the same batch
through the model with its own loss (``labels=``) and backward, plus one no-grad forward of the whole batch with the
adapter disabled when the method needs a reference (what the originals ran).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import build_world, ratio_line, timed
from unlearning.data.streams import StreamCollator, StreamSet
from unlearning.inference.scoring import forward_answer_logits, prepare_inputs
from unlearning.models.loading import apply_lora
from unlearning.recipes.forget import reference_rows
from unlearning.training.methods import StreamScores, build_method
from unlearning.training.progress import Progress

MODULES = {"language_model": ["model.language_model", "lm_head"], "projector": ["model.multi_modal_projector"],
           "vision_tower": ["model.vision_tower"]}
LEAVES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BATCH = 4


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for image_tokens in (16, 576):
        world = build_world(image_tokens, n_identities=20)
        model = apply_lora(world.model, MODULES, {"language_model": True, "projector": True}, 32, 64, 0.0, LEAVES)
        model.train()
        for name in ("gd", "kl", "npo"):
            method = build_method({"name": name})
            uses = method.streams()
            streams = {use.name: world.task.stream(use.name, "forget10") for use in uses}
            dataset = StreamSet(streams, uses, seed=0)
            batch = StreamCollator(world.collator, uses, reference_rows(method))([dataset[i] for i in range(BATCH)])

            def reference_pass(model=model, batch=batch, method=method):
                if not method.needs_reference:
                    return None
                rows = batch.get("reference", batch)  # the rows whose reference the loss reads, as forget.py
                with torch.no_grad(), model.disable_adapter():
                    return StreamScores(forward_answer_logits(model, rows), rows["streams"])

            def ours(model=model, batch=batch, method=method, reference_pass=reference_pass):
                policy = StreamScores(forward_answer_logits(model, batch), batch["streams"])
                loss, _ = method.loss(policy, reference_pass(), Progress(0, 10))
                loss.backward()
                model.zero_grad(set_to_none=True)

            def bare(model=model, batch=batch, method=method):
                if method.needs_reference:
                    with torch.no_grad(), model.disable_adapter():
                        model(**prepare_inputs(model, batch["inputs"]), use_cache=False)
                outputs = model(**prepare_inputs(model, batch["inputs"]), labels=batch["labels"], use_cache=False)
                outputs.loss.backward()
                model.zero_grad(set_to_none=True)

            print(ratio_line(f"{name} step, {image_tokens} img tokens", timed(ours), timed(bare)), flush=True)


if __name__ == "__main__":
    main()
