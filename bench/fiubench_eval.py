"""FIUBench's evaluation of one split, ours against the original's loop re-created, on the tiny LLaVA with 16 and
576 image tokens (LLaVA-1.5's count).

    python bench/fiubench_eval.py          # prints, per variant and stage, min and median seconds and the ratio

Ours: ``fiubench.evaluate.evaluate_split`` as a run evaluates the forget split, at the benchmark's evaluation batch
size: the questions and paraphrased questions about one identity's image generated on one computed prefix, and the
answers, paraphrased answers and perturbed answers of those questions scored on one. Original: its ``eval.yaml``
loop, batch size 1 throughout ("must be 1 for gpt/EM"): one ``generate`` per question and per paraphrased question,
and one forward pass per scored answer, each processing and encoding the image again. Both decode greedily up to 50
new tokens; the model is untrained, so rows rarely stop early, in both loops. Stages: ``scoring`` alone, ``plain``
(our scoring without shared prefixes), ``generation`` alone, and the whole ``split``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import build_world, fresh_collator, ratio_line, timed
from fiubench.evaluate import SplitSettings, evaluate_split
from unlearning.compat import Compat
from unlearning.evaluation.runner import EvalContext, LazyModel
from unlearning.inference.answers import generate_answers, score_answers
from unlearning.inference.decoding import Decoding
from unlearning.inference.scoring import forward_answer_logits, prepare_inputs

SPLIT = "forget10"
BATCH = 16  # config/benchmark/fiubench.yaml recipe.eval.batch_size
MAX_NEW_TOKENS = 50


def original_scores(model, collator, qas) -> list[float]:
    """The original's perturbation loop: batch 1, the image processed and encoded for every scored answer."""
    nlls = []
    for qa in qas:
        for answer in (qa.answer, qa.paraphrased_answer, *qa.perturbed_answers):
            answer_logits = forward_answer_logits(model, collator([qa.example(answer=answer)]))
            nlls.append(-float(answer_logits.token_logprobs().mean()))
    return nlls


def original_generations(model, collator, qas, paraphrases: bool, max_new_tokens: int = MAX_NEW_TOKENS) -> list[str]:
    """One ``generate`` per question (and per paraphrased question on the forget split), batch 1."""
    texts = []
    questions = [(qa, q) for qa in qas for q in (qa.question, *(qa.paraphrased_questions if paraphrases else ()))]
    for qa, question in questions:
        inputs = prepare_inputs(model, collator.generation_batch([qa.example(question=question)]))
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                eos_token_id=sorted(collator.stop_ids), pad_token_id=collator.tokenizer.pad_token_id)
        texts.append(collator.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
    return texts


def measure(image_tokens: int, repeats: int, only: list[str] | None) -> None:
    world = build_world(image_tokens, n_identities=20, n_perturbed=5)  # the release has 5 perturbed answers
    model, collator = world.model, world.collator
    model.eval()
    qas = world.task.data.qas(SPLIT)
    requests = [qa.example(answer=a) for qa in qas for a in (qa.answer, qa.paraphrased_answer, *qa.perturbed_answers)]
    prompts = [qa.example(question=q) for qa in qas for q in (qa.question, *qa.paraphrased_questions)]
    decoding = Decoding(max_new_tokens=MAX_NEW_TOKENS)
    settings = SplitSettings(SPLIT, "forget", BATCH, decoding, Compat.of("fiubench"), skip_first_answer_token=False)

    def context() -> EvalContext:  # a run's first evaluation: nothing processed or tokenized yet
        fresh = fresh_collator(collator)
        return EvalContext(LazyModel(lambda: (model, fresh)), None, None, Compat.of("fiubench"))

    def plain() -> object:  # the original processed every image and tokenized every text each time
        return fresh_collator(collator, remember_images=False)

    print(f"{image_tokens} image tokens: {len(qas)} QAs of {SPLIT}, {len(requests)} scored answers, "
          f"{len(prompts)} generations")
    stages = {
        "scoring": (lambda: score_answers(model, fresh_collator(collator), requests, BATCH),
                    lambda: original_scores(model, plain(), qas)),
        "plain": (lambda: score_answers(model, fresh_collator(collator), requests, BATCH, shared_prefix=False),
                  lambda: original_scores(model, plain(), qas)),
        "generation": (lambda: generate_answers(model, fresh_collator(collator), prompts, BATCH, decoding),
                       lambda: original_generations(model, plain(), qas, paraphrases=True)),
        "split": (lambda: evaluate_split(qas, settings, context()),
                  lambda: (original_generations(model, plain(), qas, paraphrases=True),
                           original_scores(model, plain(), qas))),
    }
    with torch.no_grad():
        for name, (ours, original) in stages.items():
            if not only or name in only:
                print(ratio_line(f"  {name}", timed(ours, repeats), timed(original, repeats), baseline_is_slower=True),
                      flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variants", type=int, nargs="+", default=[16, 576])
    parser.add_argument("--stages", nargs="+", default=None, help="some of: scoring plain generation split")
    args = parser.parse_args()
    torch.manual_seed(0)
    for image_tokens in args.variants:
        measure(image_tokens, args.repeats, args.stages)


if __name__ == "__main__":
    main()
