"""Batched inference shared by every benchmark's evaluation: greedy answers and teacher-forced answer scores.

Examples are sharded over the accelerate processes and the results gathered back in input order, so
a benchmark's metric code sees one plain list whatever the launch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from unlearning.data import ChatCollator, Example
from unlearning.metrics.likelihood import forward_answer_logits, prepare_inputs

T = TypeVar("T")


@dataclass(frozen=True)
class SequenceScore:
    """Teacher-forced log-likelihood of one answer target (answer tokens + EOS), token by token.

    ``token_mu``/``token_sigma`` are the mean and spread of log p over the vocabulary at each position,
    which Min-K++ uses to calibrate each token's log-probability.
    """

    token_logprobs: tuple[float, ...]
    token_mu: tuple[float, ...]
    token_sigma: tuple[float, ...]

    @property
    def n_tokens(self) -> int:
        return len(self.token_logprobs)

    @property
    def mean_nll(self) -> float:
        """Per-token negative log-likelihood: -(1/n) sum log p(y_t)."""
        return -sum(self.token_logprobs) / self.n_tokens


def _sharded(
    items: Sequence[Example], batch_size: int, accelerator: Accelerator | None, desc: str,
    run_batch: Callable[[list[Example]], list[T]],
) -> list[T]:
    """Run ``run_batch`` over this process's share of ``items``; every process gets all results, in order."""
    if accelerator is None or accelerator.num_processes == 1:
        indexed = list(enumerate(items))
    else:
        with accelerator.split_between_processes(list(enumerate(items))) as share:
            indexed = list(share)
    results: list[tuple[int, T]] = []
    show = accelerator is None or accelerator.is_local_main_process
    batches = range(0, len(indexed), batch_size)
    for start in tqdm(batches, desc=desc, disable=None if show else True, leave=False):  # None: off when not a TTY
        chunk = indexed[start:start + batch_size]
        outputs = run_batch([example for _, example in chunk])
        results += [(index, output) for (index, _), output in zip(chunk, outputs, strict=True)]
    if accelerator is not None and accelerator.num_processes > 1:
        results = gather_object(results)
    return [output for _, output in sorted(results, key=lambda pair: pair[0])]


@torch.no_grad()
def score_answers(
    model: torch.nn.Module, collator: ChatCollator, examples: Sequence[Example], batch_size: int,
    accelerator: Accelerator | None = None, desc: str = "score",
) -> list[SequenceScore]:
    """Log-probability of every answer token of every example, in batched forward passes."""

    def run(batch_examples: list[Example]) -> list[SequenceScore]:
        batch = collator(batch_examples)
        answer = forward_answer_logits(model, batch)
        logprobs = answer.token_logprobs().cpu()
        mu, sigma = (values.cpu() for values in answer.vocabulary_stats())
        rows = answer.rows.cpu()
        return [
            SequenceScore(*(tuple(values[rows == row].tolist()) for values in (logprobs, mu, sigma)))
            for row in range(len(batch_examples))
        ]

    return _sharded(examples, batch_size, accelerator, desc, run)


@torch.no_grad()
def generate_answers(
    model: torch.nn.Module, collator: ChatCollator, examples: Sequence[Example], batch_size: int,
    max_new_tokens: int, accelerator: Accelerator | None = None, desc: str = "generate",
) -> list[str]:
    """Greedy answers to each example's question, stopped at EOS / end of turn."""
    tokenizer = collator.tokenizer

    def run(batch_examples: list[Example]) -> list[str]:
        inputs = prepare_inputs(model, collator.generation_batch(batch_examples))
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
            eos_token_id=sorted(collator.stop_ids), pad_token_id=tokenizer.pad_token_id,
        )
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    return _sharded(examples, batch_size, accelerator, desc, run)
