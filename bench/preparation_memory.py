"""Peak memory of a preparation pass (MMUnlearner's two Fisher diagonals over the LoRA adapters and the projector),
against a forward-and-backward pass over one batch of the same model: the pass streams batches, so what it adds is
its running sums (one float32 per trainable parameter and stream), never the gradients of every example.

    python bench/preparation_memory.py [--image-tokens 576] [--repeats 3]

Each variant runs in its own process (peak RSS is a high-water mark): ``step`` runs the forget10 and retain
streams' batches through forward and backward keeping nothing, ``prepare`` is the preparation pass over the same
batches. The pass's cost is ``prepare``'s
peak minus ``step``'s; it is compared with the size of the statistics it keeps, and the estimate for a 7B model
(LLaVA-1.5-7B, LoRA r 32 on every linear layer of the language model, projector trained) is printed from the same
count: two float32 sums per trainable parameter.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import build_world
from bench.forget_step import BATCH, LEAVES, MODULES
from unlearning.inference.scoring import forward_answer_logits, mean_nll
from unlearning.models.loading import apply_lora, load_model, load_processor
from unlearning.recipes.common import make_collator
from unlearning.training.methods import build_method
from unlearning.training.preparation import Preparation

# LLaVA-1.5-7B: 32 layers of width 4096 (MLP 11008), projector 1024 -> 4096 -> 4096
LLAVA_7B_LORA_32 = 32 * 32 * (4 * (4096 + 4096) + 2 * (4096 + 11008) + (11008 + 4096))
LLAVA_7B_PROJECTOR = 1024 * 4096 + 4096 + 4096 * 4096 + 4096


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(folder: Path, variant: str) -> dict[str, float]:
    from fiubench.benchmark import FiuBenchTask

    model = load_model(folder / "model")
    collator = make_collator(load_processor(folder / "model"), model.generation_config, None)
    model = apply_lora(model, MODULES, {"language_model": True, "projector": True}, 32, 64, 0.0, LEAVES)
    task = FiuBenchTask(folder / "data")
    streams = {name: task.stream(name, "forget10") for name in ("forget", "retain")}
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    before = peak_mb()
    if variant == "step":  # the same batches through forward and backward, nothing kept between them
        tensors = [p for p in model.parameters() if p.requires_grad]
        model.eval()
        for examples in streams.values():
            for start in range(0, len(examples), BATCH):
                answer = forward_answer_logits(model, collator(examples[start:start + BATCH]))
                torch.autograd.grad(mean_nll(answer), tensors, allow_unused=True)
        kept = 0
    else:
        method = build_method({"name": "mmunlearner"})
        preparation = Preparation(model, collator, streams, BATCH, Accelerator(cpu=True))
        kept = sum(value.numel() * value.element_size() for value in method.prepare(preparation).values())
    return {"peak_mb": peak_mb(), "before_mb": before, "statistics_mb": kept / 2**20, "trainable": trainable,
            "examples": sum(len(v) for v in streams.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-tokens", type=int, default=576)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", choices=("step", "prepare"))
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.folder, args.variant)))
        return
    world = build_world(args.image_tokens)
    torch.save({}, world.folder / "marker.pt")
    results = {}
    for variant in ("step", "prepare"):
        runs = [json.loads(subprocess.run(
            [sys.executable, __file__, "--variant", variant, "--folder", str(world.folder)], check=True,
            capture_output=True, text=True).stdout.strip().splitlines()[-1]) for _ in range(args.repeats)]
        results[variant] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    step, prepare = results["step"], results["prepare"]
    added = prepare["peak_mb"] - step["peak_mb"]
    print(f"tiny LLaVA, {args.image_tokens} image tokens, LoRA r 32 + projector: {prepare['trainable']:,.0f} "
          f"trainable parameters, {prepare['examples']:.0f} examples in the pass (batches of {BATCH})")
    print(f"peak RSS: the batches' forward+backward passes {step['peak_mb']:.0f} MB, the preparation pass "
          f"{prepare['peak_mb']:.0f} MB: +{added:.0f} MB; its statistics {prepare['statistics_mb']:.1f} MB")
    seven_b = 2 * 4 * (LLAVA_7B_LORA_32 + LLAVA_7B_PROJECTOR) / 2**30
    print(f"LLaVA-1.5-7B estimate (LoRA r 32 on the language model's linear layers, projector trained): "
          f"{(LLAVA_7B_LORA_32 + LLAVA_7B_PROJECTOR) / 1e6:.0f}M trainable parameters, statistics "
          f"{seven_b:.2f} GiB (two float32 sums) on top of a training step's memory")


if __name__ == "__main__":
    main()
