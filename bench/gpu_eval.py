"""FIUBench's evaluation of one split on a LLaVA-1.5-7B-shaped model with random weights (built from a config: no
download), ours against the original's loop re-created: time, tokens per second and peak memory of each.

    python bench/gpu_eval.py                                   # on the GPU: 7B shape, bf16
    python bench/gpu_eval.py --shape tiny --device cpu --dtype float32 --image-tokens 16   # a quick check anywhere

Ours is ``fiubench.evaluate.evaluate_split`` as a run evaluates the forget split (shared prefixes, slot decoding);
the original's loop is ``bench/fiubench_eval.py``'s: batch 1, one ``generate`` per question and one forward pass per
scored answer, the image processed and encoded each time. The processor and tokenizer come from the tiny LLaVA of
the same image-token count (its chat template, its ``<image>`` expansion); the model is the same architecture at
LLaVA-1.5-7B's sizes (Llama-2-7B: 32 layers, hidden 4096, MLP 11008, 32 heads; CLIP ViT-L/14-336: 24 layers,
hidden 1024), its vocabulary padded to LLaVA-1.5's 32064 rows. Random weights never stop early: every answer runs
to the new-token limit, in both loops, so tokens per second compare like with like.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import build_world, fresh_collator
from bench.fiubench_eval import original_generations, original_scores
from fiubench.evaluate import SplitSettings, evaluate_split
from unlearning.compat import Compat
from unlearning.evaluation.runner import EvalContext, LazyModel
from unlearning.inference.decoding import Decoding

SPLIT = "forget10"
SHAPES = {  # LLaVA-1.5-7B: llava-hf/llava-1.5-7b-hf's config.json
    "7b": {"text": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                    "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32064,
                    "max_position_embeddings": 4096},
           "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                      "num_attention_heads": 16}},
    "tiny": {"text": {}, "vision": {}},  # the tiny LLaVA as built (a quick check of the script)
}


def shaped_model(tiny: torch.nn.Module, shape: str, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """The tiny LLaVA's architecture and token ids at ``shape``'s sizes, random weights, made on ``device``."""
    config = tiny.config.__class__.from_dict(tiny.config.to_dict())
    sizes = SHAPES[shape]
    for key, value in sizes["text"].items():
        setattr(config.text_config, key, max(value, config.text_config.vocab_size) if key == "vocab_size" else value)
    for key, value in sizes["vision"].items():
        setattr(config.vision_config, key, value)
    with torch.device(device):
        model = tiny.__class__._from_config(config, dtype=dtype)
    model.generation_config = tiny.generation_config
    return model.eval()


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's peak, both loops together


def measured(work: Callable[[], Any], device: str, warmup: int) -> tuple[float, float, Any]:
    """(seconds, peak MiB, result) of one run of ``work`` after ``warmup`` runs (kernels chosen, caches filled)."""
    for _ in range(warmup):
        work()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = work()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, peak_memory_mb(device), result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    parser.add_argument("--image-tokens", type=int, choices=[16, 576], default=576)
    parser.add_argument("--identities", type=int, default=20, help="FIUBench identities; forget10 is a tenth")
    parser.add_argument("--batch-size", type=int, default=16, help="ours (config/benchmark/fiubench.yaml's)")
    parser.add_argument("--max-new-tokens", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed one")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    world = build_world(args.image_tokens, n_identities=args.identities, n_perturbed=5)
    model = shaped_model(world.model, args.shape, args.device, getattr(torch, args.dtype))
    parameters = sum(p.numel() for p in model.parameters())
    qas = world.task.data.qas(SPLIT)
    tokenizer = world.collator.tokenizer
    decoding = Decoding(max_new_tokens=args.max_new_tokens)
    settings = SplitSettings(SPLIT, "forget", args.batch_size, decoding, Compat.of("fiubench"),
                             skip_first_answer_token=False)

    def ours() -> dict[str, Any]:
        return evaluate_split(qas, settings, EvalContext(LazyModel(lambda: (model, fresh_collator(world.collator))),
                                                         None, None, Compat.of("fiubench")))

    def original() -> list[str]:
        plain = fresh_collator(world.collator, remember_images=False)
        texts = original_generations(model, plain, qas, paraphrases=True, max_new_tokens=args.max_new_tokens)
        original_scores(model, plain, qas)
        return texts

    def generated_tokens(texts: list[str]) -> int:
        return sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)

    print(f"{args.shape} LLaVA ({parameters / 1e9:.2f}B parameters, {args.dtype}, {args.image_tokens} image tokens) "
          f"on {args.device}: {len(qas)} QAs of {SPLIT}", flush=True)
    figures: dict[str, Any] = {"shape": args.shape, "device": args.device, "dtype": args.dtype,
                               "parameters": parameters, "qas": len(qas), "image_tokens": args.image_tokens}
    with torch.no_grad():
        for name, work, texts_of in (("original", original, lambda r: r),
                                     ("ours", ours, lambda r: [s["generation"] for s in r["samples"]]
                                      + [g for s in r["samples"] for g in s.get("paraphrase_generations", [])])):
            seconds, peak, result = measured(work, args.device, args.warmup)
            tokens = generated_tokens(texts_of(result))
            figures[name] = {"seconds": round(seconds, 3), "generated_tokens": tokens,
                             "tokens_per_second": round(tokens / seconds, 1), "peak_memory_mib": round(peak, 1)}
            print(f"  {name:<9} {seconds:8.2f} s  {tokens / seconds:9.1f} generated tokens/s  "
                  f"peak {peak:9.1f} MiB", flush=True)
    figures["speed_up"] = round(figures["original"]["seconds"] / figures["ours"]["seconds"], 2)
    print(f"  speed-up {figures['speed_up']:.2f}x (original seconds / ours)")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
