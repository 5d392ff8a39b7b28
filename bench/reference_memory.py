"""Peak memory of a KL step's reference: the adapter-disabled model (ours) against a deep-copied reference model.

    python bench/reference_memory.py [--repeats 3]

Each variant runs in its own process (peak RSS is a high-water mark): ``none`` takes a policy-only step, ``adapter``
a KL step whose reference is the same weights with the LoRA adapter disabled, ``copy`` a KL step whose reference is
a deep copy of the model made before the adapter was attached (what FIUBench and MLLMU-Bench did). The reference's
memory is each variant's peak minus ``none``'s; the printed ratio is ours over the copy's. The reference runs on
the rows KL reads (the retain rows), as ``forget.py`` runs it.

Models: the tiny LLaVA (language model 256 wide, 4 layers) with 16 and 576 image tokens, whose 20 MB of weights
the activations outweigh, and wider ones (1024 and 2048 wide, 8 layers; their weights printed) where, as on real
models, the weights a copy adds dominate. Peak RSS moves by tens of MB between identical processes (the allocator),
so each variant runs ``--repeats`` times and the median is used.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import build_world
from bench.forget_step import BATCH, LEAVES, MODULES
from unlearning.data.streams import StreamCollator, StreamSet
from unlearning.inference.scoring import forward_answer_logits
from unlearning.models.loading import apply_lora, load_model, load_processor
from unlearning.recipes.common import make_collator
from unlearning.recipes.forget import reference_rows
from unlearning.training.methods import StreamScores, build_method
from unlearning.training.progress import Progress


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(folder: Path, variant: str) -> dict[str, float]:
    from fiubench.benchmark import FiuBenchTask

    model = load_model(folder / "model")
    collator = make_collator(load_processor(folder / "model"), model.generation_config, None)
    reference_model = copy.deepcopy(model).eval() if variant == "copy" else None
    model = apply_lora(model, MODULES, {"language_model": True, "projector": True}, 32, 64, 0.0, LEAVES)
    method = build_method({"name": "kl"})
    uses = method.streams()
    task = FiuBenchTask(folder / "data")
    dataset = StreamSet({use.name: task.stream(use.name, "forget10") for use in uses}, uses, seed=0)
    batch = StreamCollator(collator, uses, reference_rows(method))([dataset[i] for i in range(BATCH)])
    rows = batch.get("reference", batch)  # the rows whose reference the loss reads
    before = peak_mb()
    for _ in range(2):
        policy = StreamScores(forward_answer_logits(model, batch), batch["streams"])
        if variant == "none":
            loss = -policy.answer.token_logprobs().mean()
        else:
            with torch.no_grad():
                if variant == "copy":
                    reference = StreamScores(forward_answer_logits(reference_model, rows), rows["streams"])
                else:
                    with model.disable_adapter():
                        reference = StreamScores(forward_answer_logits(model, rows), rows["streams"])
            loss, _ = method.loss(policy, reference, Progress(0, 10))
        loss.backward()
        model.zero_grad(set_to_none=True)
    return {"before_mb": before, "peak_mb": peak_mb()}


def main() -> None:
    if len(sys.argv) == 3 and not sys.argv[1].startswith("-"):  # a variant, in its own process
        print(json.dumps(run_variant(Path(sys.argv[1]), sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="processes per variant; the median peak is used")
    args = parser.parse_args()
    for image_tokens, hidden, layers in ((16, 256, 4), (576, 256, 4), (16, 1024, 8), (16, 2048, 8)):
        world = build_world(image_tokens, n_identities=20, text_hidden=hidden, text_layers=layers)
        weights = sum(p.numel() * p.element_size() for p in world.model.parameters()) / 2**20
        del world.model
        results = {}
        for variant in ("none", "adapter", "copy"):
            peaks = [json.loads(subprocess.run([sys.executable, __file__, str(world.folder), variant],
                                               capture_output=True, text=True, check=True
                                               ).stdout.strip().splitlines()[-1])["peak_mb"]
                     for _ in range(args.repeats)]
            results[variant] = statistics.median(peaks)
        ours, theirs = results["adapter"] - results["none"], results["copy"] - results["none"]
        print(f"{image_tokens} img tokens, language model {hidden} x {layers} ({weights:.0f} MB of weights): median "
              f"peak RSS of {args.repeats}: none {results['none']:.1f} MB, adapter-disabled reference "
              f"{results['adapter']:.1f} MB ({ours:+.1f}), deep-copied reference {results['copy']:.1f} MB "
              f"({theirs:+.1f}); reference memory ratio {ours / theirs if theirs > 0 else float('nan'):.3f}",
              flush=True)


if __name__ == "__main__":
    main()
