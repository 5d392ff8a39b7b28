"""Greedy generation in refilled slots against fixed batches, on one FIUBench split's prompts (each identity's
question and paraphrased questions on one computed image prefix), the tiny LLaVA with 16 and 576 image tokens.

    python bench/slot_decoding.py          # prints, per variant and case, min and median seconds and the ratio

Both sides run the same prefixes and batch size (FIUBench's evaluation batch, 16); the baseline is the path this
toolkit took before (``PrefixGeneration.generate_in_fixed_batches``: ``generate`` on fixed batches, each running
until its longest answer ends). Cases: ``limit``, every answer runs to the 50-token limit (the untrained model
rarely ends one: this measures the slot loop's own cost); ``spread``, answers end after different numbers of tokens,
as a trained model's do (one or two of the untrained model's tokens act as stop tokens, chosen to spread the
lengths, which are printed). Row-steps: the rows of every one-token forward pass, counted by a hook; the answers'
tokens are the useful ones.
"""

from __future__ import annotations

import itertools
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import build_world, ratio_line, run_variants, timed
from unlearning.inference.decoding import Decoding
from unlearning.inference.prefix_generation import PrefixGeneration
from unlearning.inference.shared_prefix import group_by_prefix

SPLIT = "forget10"
BATCH = 16  # config/benchmark/fiubench.yaml recipe.eval.batch_size
MAX_NEW_TOKENS = 50


def spreading_stops(answers: list[list[int]]) -> list[int]:
    """One or two tokens which, as stop tokens, give the answers the most different lengths."""
    def distinct(stops: tuple[int, ...]) -> int:
        return len({next((i + 1 for i, t in enumerate(a) if t in stops), len(a)) for a in answers})

    tokens = sorted({t for a in answers for t in a})
    return list(max([(t,) for t in tokens] + list(itertools.combinations(tokens, 2)), key=distinct))


def decode_rows(model: torch.nn.Module, work) -> int:
    """Rows of the one-token forward passes ``work`` makes (decoding steps, summed over the batch's rows)."""
    rows = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kwargs: rows.append(kwargs["input_ids"].shape[0])
        if kwargs.get("input_ids") is not None and kwargs["input_ids"].shape[1] == 1 else None, with_kwargs=True)
    try:
        with torch.no_grad():
            work()
    finally:
        hook.remove()
    return sum(rows)


def measure(image_tokens: int, repeats: int) -> None:
    world = build_world(image_tokens, n_identities=20, n_perturbed=5)
    model, collator = world.model, world.collator
    model.eval()
    qas = world.task.data.qas(SPLIT)
    examples = [qa.example(question=q) for qa in qas for q in (qa.question, *qa.paraphrased_questions)]
    groups = [[examples[i] for i in group] for group in group_by_prefix(collator, examples)]
    prefix = PrefixGeneration(model, collator)
    pad = collator.tokenizer.pad_token_id
    settings = Decoding(max_new_tokens=MAX_NEW_TOKENS).bind(model, [], pad)
    with torch.no_grad():
        unstopped = [t.tolist() for g in prefix.generate(groups, BATCH, settings) for t in g]
    print(f"{image_tokens} image tokens: {len(examples)} prompts of {SPLIT} in {len(groups)} groups, batch {BATCH}")
    for case, stops in (("limit", []), ("spread", spreading_stops(unstopped))):
        settings = Decoding(max_new_tokens=MAX_NEW_TOKENS).bind(model, stops, pad)
        with torch.no_grad():
            ours = [t.tolist() for g in prefix.generate(groups, BATCH, settings) for t in g]
            theirs = [t.tolist() for g in prefix.generate_in_fixed_batches(groups, BATCH, settings) for t in g]
        same = all(a == b[:len(a)] and not any(t not in stops and t != pad for t in b[len(a):])
                   for a, b in zip(ours, theirs, strict=True))
        lengths = [len(a) for a in ours]
        def in_slots(settings=settings):
            return prefix.generate(groups, BATCH, settings)

        def in_fixed_batches(settings=settings):
            return prefix.generate_in_fixed_batches(groups, BATCH, settings)

        slots, fixed = decode_rows(model, in_slots), decode_rows(model, in_fixed_batches)
        print(f"  {case}: answer lengths min {min(lengths)}, median {statistics.median(lengths)}, max {max(lengths)};"
              f" same answers: {same}; row-steps: {sum(lengths)} answer tokens, slots {slots}, fixed batches {fixed}")
        with torch.no_grad():
            print(ratio_line(f"  {case}", timed(in_slots, repeats), timed(in_fixed_batches, repeats),
                             baseline_is_slower=True), flush=True)


def main() -> None:
    run_variants(__doc__, measure, repeats=3)


if __name__ == "__main__":
    main()
