"""Batched inference shared by every benchmark's evaluation: greedy answers and teacher-forced answer scores.

Examples are sharded over the accelerate processes and the results gathered back in input order, so
a benchmark's metric code sees one plain list whatever the launch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from unlearning.data import IGNORE_INDEX, ChatCollator, Example
from unlearning.io import atomic_write_json, read_json
from unlearning.metrics.likelihood import forward_answer_logits, prepare_inputs

log = logging.getLogger(__name__)
T = TypeVar("T")
ModelLoader = Callable[[], tuple[Any, ChatCollator]]


class LazyModel:
    """Loads the model the first time a part of an evaluation actually needs it (resumed runs may not)."""

    def __init__(self, load: ModelLoader) -> None:
        self._load, self._loaded = load, None

    def get(self) -> tuple[Any, ChatCollator]:
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded


def cached_result(path: Path, fingerprint: dict, overwrite: bool, compute: Callable[[], dict],
                  accelerator: Accelerator | None) -> dict:
    """The result stored at ``path`` when it was computed under ``fingerprint``; else compute and store it."""
    if not overwrite and path.is_file():
        stored = read_json(path)
        if stored.get("fingerprint") == fingerprint:
            log.info("reusing %s", path)
            return stored
    result = {"fingerprint": fingerprint, **compute()}
    if accelerator is None or accelerator.is_main_process:
        atomic_write_json(path, result)
    return result


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


@torch.no_grad()
def choice_token_logprobs(
    model: torch.nn.Module, collator: ChatCollator, examples: Sequence[Example], candidates: Sequence[int],
    offset: int, batch_size: int, accelerator: Accelerator | None = None, desc: str = "choices",
) -> list[list[float]]:
    """log p(token | prompt + answer[:offset]) for each candidate token id, where the candidates' targets share
    their first ``offset`` tokens (e.g. a space before the option letter): one forward pass per example scores
    every option of a multiple-choice question (lm-evaluation-harness's single-token choices). Each example's
    answer must be one of the candidates' targets."""
    index = torch.tensor(list(candidates))

    def run(batch_examples: list[Example]) -> list[list[float]]:
        batch = collator(batch_examples)
        outputs = model(**prepare_inputs(model, batch["inputs"]), use_cache=False)
        labels = batch["labels"].to(outputs.logits.device)
        first = (labels[:, 1:] != IGNORE_INDEX).int().argmax(dim=1)  # first answer token, shifted coordinates
        logits = outputs.logits[torch.arange(len(batch_examples)), first + offset].float()
        return torch.log_softmax(logits, dim=-1)[:, index.to(logits.device)].cpu().tolist()

    return _sharded(examples, batch_size, accelerator, desc, run)
