"""MLLMU-Bench's evaluation of its four sets, ours against the original's loop re-created, on the tiny LLaVA with 16
and 576 image tokens (LLaVA-1.5's count).

    python bench/mllmu_eval.py             # prints, per variant, min and median seconds and the speed-up

Ours: ``mllmu.evaluate.evaluate_set`` on forget, test, retain and celebrity, image+text and text-only, at the
benchmark's evaluation batch size: classification by the option letters' log-likelihood in one forward pass per
question, cloze and generation generated in batches (prompts showing the same images on one computed prefix, the
others in order of length), few-shot prompts fitted without preprocessing images again. Original: its ``eval.py``
loop, one sample at a time: for every question of the three tasks (with the same demonstrations) the processor on
the whole prompt and one greedy ``generate``. Both up to 50 new tokens, on an untrained model.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import VARIANTS, fresh_collator, ratio_line, run_variants, timed
from mllmu.benchmark import MllmuTask
from mllmu.evaluate import SETS, EvalOptions, FewShot, SetSettings, build_questions, eval_sets, evaluate_set
from mllmu.synthetic import write_mllmu
from unlearning.compat import Compat
from unlearning.inference.decoding import Decoding
from unlearning.inference.scoring import prepare_inputs
from unlearning.models.loading import load_model, load_processor
from unlearning.models.tiny import build_tiny_model
from unlearning.recipes.common import make_collator

BATCH = 16  # config/benchmark/mllmu.yaml recipe.eval.batch_size
MAX_NEW_TOKENS = 50
FORGET_SPLIT = "forget_10"
TASKS = ("classification", "cloze", "generation")


def original_loop(model, collator, questions) -> list[str]:
    """One question at a time: the processor on the whole prompt (demonstration images included), one generate."""
    texts = []
    for example in questions:
        inputs = prepare_inputs(model, collator.generation_batch([example]))
        output = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                eos_token_id=sorted(collator.stop_ids), pad_token_id=collator.tokenizer.pad_token_id)
        texts.append(collator.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
    return texts


def measure(image_tokens: int, repeats: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-mllmu{image_tokens}-"))
    task = MllmuTask(write_mllmu(folder / "data", n_profiles=10, n_celebrities=3, image_size=112))
    model_dir = build_tiny_model("llava", folder / "model", task.texts(), text_hidden=256, text_layers=4,
                                 text_heads=8, vision_hidden=128, vision_layers=2, **VARIANTS[image_tokens])
    model = load_model(model_dir).eval()
    collator = make_collator(load_processor(model_dir), model.generation_config, None)
    data = task.data
    options = EvalOptions(context_length=8192)  # the tiny model's 512 positions would drop every demonstration
    quirks = Compat.of("mllmu")  # the default behaviours
    sets = eval_sets(data, FORGET_SPLIT, options.seed)
    settings = SetSettings(BATCH, Decoding(max_new_tokens=MAX_NEW_TOKENS))

    def few_shot() -> FewShot:
        return FewShot(options, quirks, data.profiles("Full_Set"), collator, options.context_length - MAX_NEW_TOKENS)

    questions = [example for name in SETS for task_name in TASKS
                 for *_, example in build_questions(name, sets[name], few_shot(), task_name)]
    print(f"{image_tokens} image tokens: {sum(len(p) for p in sets.values())} profiles in 4 sets, "
          f"{len(questions)} questions")

    def ours() -> None:  # a run's first evaluation: nothing processed or tokenized yet
        fresh = fresh_collator(collator)
        for name in SETS:
            evaluate_set(name, sets[name], FewShot(options, quirks, data.profiles("Full_Set"), fresh,
                                                   options.context_length - MAX_NEW_TOKENS),
                         model, fresh, settings, None, None)

    def original() -> list[str]:  # the original processed every prompt's images and text each time
        return original_loop(model, fresh_collator(collator, remember_images=False), questions)

    with torch.no_grad():
        print(ratio_line("  four sets", timed(ours, repeats), timed(original, repeats), baseline_is_slower=True),
              flush=True)


def main() -> None:
    run_variants(__doc__, measure, repeats=5)


if __name__ == "__main__":
    main()
