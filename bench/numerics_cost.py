"""What pinning the CPU numerics costs (``unlearning/runs/numerics.py``): a training step and greedy generation
on the tiny LLaVA with 16 and 576 image tokens, under PyTorch's own choice of code paths and under each pin.

    python bench/numerics_cost.py          # prints, per variant and setting, min and median ms and the ratio

The pins are environment variables read when torch loads, so each setting runs in a child process of this script
(the same script with ``--child``), one after the other on the same machine; every child builds the same seeded
model and data. The baseline is PyTorch's own choice (no pin); every setting, the baseline included, runs with the
pinned thread count, so the ratios show the code paths' cost (on a machine with more cores than the pin's 2
threads, the pin also gives up the other cores). Training step: a full-parameter step (forward with the answer
loss, backward, AdamW) on a batch of 4 forget QAs; generation: 50 greedy tokens for one FIUBench split's 60
prompts in batches of 16 (the evaluation's path).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearning.runs.numerics import PINNED_CPU_NUMERICS

THREADS = {name: PINNED_CPU_NUMERICS[name] for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
SETTINGS = {
    "PyTorch's own choice": {},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "ONEDNN_MAX_CPU_ISA=AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "all pins": dict(PINNED_CPU_NUMERICS),
}
SPLIT = "forget10"
BATCH = 4
GENERATION_BATCH = 16
MAX_NEW_TOKENS = 50


def child(image_tokens: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of ``repeats`` training steps and generations (after one warm-up each) in this process."""
    from bench.common import build_world, timed
    from unlearning.inference.decoding import Decoding
    from unlearning.inference.prefix_generation import PrefixGeneration
    from unlearning.inference.scoring import prepare_inputs
    from unlearning.inference.shared_prefix import group_by_prefix

    torch.manual_seed(0)
    world = build_world(image_tokens, n_identities=20)
    model, collator = world.model, world.collator
    qas = world.task.data.qas(SPLIT)
    batch = collator([qa.example() for qa in qas[:BATCH]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def train_step() -> None:
        model.train()
        loss = model(**prepare_inputs(model, batch["inputs"]), labels=batch["labels"], use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    examples = [qa.example(question=q) for qa in qas for q in (qa.question, *qa.paraphrased_questions)]
    groups = [[examples[i] for i in group] for group in group_by_prefix(collator, examples)]
    settings = Decoding(max_new_tokens=MAX_NEW_TOKENS).bind(model, [], collator.tokenizer.pad_token_id)
    prefix = PrefixGeneration(model, collator)

    def generation() -> None:
        model.eval()
        with torch.no_grad():
            prefix.generate(groups, GENERATION_BATCH, settings)

    return {"training step": list(timed(train_step, repeats)), "generation": list(timed(generation, repeats))}


def run_child(image_tokens: int, repeats: int, pins: dict[str, str]) -> dict[str, list[float]]:
    environ = {name: value for name, value in os.environ.items()
               if name not in PINNED_CPU_NUMERICS and name != "UNLEARNING_CPU_NUMERICS"}
    environ.update(THREADS)
    environ.update(pins)
    done = subprocess.run([sys.executable, __file__, "--child", "--variants", str(image_tokens),
                           "--repeats", str(repeats)], env=environ, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variants", type=int, nargs="+", default=[16, 576])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.variants[0], args.repeats)))
        return
    from bench.common import ratio_line

    for image_tokens in args.variants:
        times = {name: run_child(image_tokens, args.repeats, pins) for name, pins in SETTINGS.items()}
        baseline = times["PyTorch's own choice"]
        for work in baseline:
            for name, measured in times.items():
                if measured is not baseline:
                    print(ratio_line(f"{work}, {image_tokens} img, {name}", tuple(measured[work]),
                                     tuple(baseline[work])), flush=True)


if __name__ == "__main__":
    main()
