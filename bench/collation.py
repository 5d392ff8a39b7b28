"""Collation with each example's images processed once per run (``unlearning/data/pixel_cache.py``) against processing
them in every batch, on the tiny LLaVA's processor with 16 and 576 image tokens (112 and 336 px).

    python bench/collation.py          # prints, per variant, min and median seconds and the ratio

Training: the batches of an epoch after the first of a KL forget run on forget10 (4 forget rows, their retain
partners, and the reference's retain rows), as ``forget.py`` builds them; the first epoch processes every image as
before. Evaluation: the scoring batches of one FIUBench split
(answer, paraphrased answer and 5 perturbed answers per question) collated for a second checkpoint by an
evaluation command whose cache already holds the first's images. Both sides build equal batches (tested in
``tests/unlearning/test_families.py``); the source images are 112-px files (the release's are 1024 px, which makes
processing them dearer).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import build_world, ratio_line, run_variants, timed
from bench.forget_step import BATCH
from unlearning.data.collator import ChatCollator
from unlearning.data.pixel_cache import CachedImageProcessor
from unlearning.data.streams import StreamCollator, StreamSet
from unlearning.recipes.forget import reference_rows
from unlearning.training.methods import build_method


def collator_with(world, cache: CachedImageProcessor) -> ChatCollator:
    base = world.collator
    return ChatCollator(base.processor, sorted(base.stop_ids), base.system_prompt, pixel_cache=cache)


def measure(image_tokens: int, repeats: int) -> None:
    world = build_world(image_tokens, n_identities=20, n_perturbed=5)
    method = build_method({"name": "kl"})
    uses = method.streams()
    dataset = StreamSet({use.name: world.task.stream(use.name, "forget10") for use in uses}, uses, seed=0)
    batches = [[dataset[i] for i in range(start, min(start + BATCH, len(dataset)))]
               for start in range(0, len(dataset), BATCH)]

    def epoch(cache: CachedImageProcessor) -> None:
        collate = StreamCollator(collator_with(world, cache), uses, reference_rows(method))
        for batch in batches:
            collate(batch)

    trained = CachedImageProcessor()
    epoch(trained)  # the first epoch filled it

    qas = world.task.data.qas("forget10")
    requests = [qa.example(answer=a) for qa in qas for a in (qa.answer, qa.paraphrased_answer, *qa.perturbed_answers)]
    chunks = [requests[start:start + 16] for start in range(0, len(requests), 16)]
    warm = CachedImageProcessor()
    for chunk in chunks:  # the first checkpoint's evaluation filled it
        collator_with(world, warm)(chunk)

    def second_checkpoint(cache: CachedImageProcessor) -> None:
        collator = collator_with(world, cache)
        for chunk in chunks:
            collator(chunk)

    print(f"{image_tokens} image tokens: an epoch of {len(batches)} KL batches of {BATCH}; "
          f"{len(chunks)} scoring batches of 16", flush=True)
    print(ratio_line("  training, a later epoch", timed(lambda: epoch(trained), repeats),
                     timed(lambda: epoch(CachedImageProcessor(0)), repeats), baseline_is_slower=True), flush=True)
    print(ratio_line("  evaluation, 2nd checkpoint", timed(lambda: second_checkpoint(warm), repeats),
                     timed(lambda: second_checkpoint(CachedImageProcessor(0)), repeats), baseline_is_slower=True),
          flush=True)


def main() -> None:
    run_variants(__doc__, measure, repeats=5)


if __name__ == "__main__":
    main()
