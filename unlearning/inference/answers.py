"""Batched inference shared by every benchmark's evaluation: generated answers and teacher-forced answer scores.

Examples are sharded over the accelerate processes and the results gathered back in input order, so
a benchmark's metric code sees one plain list whatever the launch. How answers are generated is a
``Decoding`` setting: greedy by default, or sampling seeded per batch with n samples per prompt.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from unlearning.data.collator import IGNORE_INDEX, ChatCollator
from unlearning.data.examples import Example
from unlearning.inference.decoding import Decoding
from unlearning.inference.prefix_generation import PrefixGeneration
from unlearning.inference.scoring import AnswerLogits, forward_answer_logits, prepare_inputs
from unlearning.inference.shared_prefix import (
    PrefixUnsupported,
    SharedPrefix,
    group_by_prefix,
    say_once,
    unsupported_reason,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
U = TypeVar("U")


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
    items: Sequence[U], batch_size: int, accelerator: Accelerator | None, desc: str,
    run_batch: Callable[..., list[T]], order: Callable[[U], int] | None = None,
    prepare: Callable[[list[U]], Any] | None = None,
) -> list[T]:
    """Run ``run_batch`` over this process's share of ``items`` (batched in ``order`` of its key when given);
    every process gets all results, in input order.

    With ``prepare`` (collation: the processor on texts and images), ``run_batch(batch, prepared)`` gets each
    batch's prepared inputs, made in a background thread while the model runs on the batch before.
    """
    if accelerator is None or accelerator.num_processes == 1:
        indexed = list(enumerate(items))
    else:
        with accelerator.split_between_processes(list(enumerate(items))) as share:
            indexed = list(share)
    if order is not None:
        indexed.sort(key=lambda pair: order(pair[1]))
    chunks = [[item for _, item in indexed[start:start + batch_size]] for start in range(0, len(indexed), batch_size)]
    outputs: list[T] = []
    show = accelerator is None or accelerator.is_local_main_process
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(prepare, chunks[0]) if prepare is not None and chunks else None
        for number in tqdm(range(len(chunks)), desc=desc, disable=None if show else True, leave=False):
            chunk = chunks[number]  # None above: the bar is off when not a TTY
            if upcoming is None:
                outputs += run_batch(chunk)
                continue
            prepared = upcoming.result()  # a bad record's error is raised here, naming it
            if number + 1 < len(chunks):
                upcoming = pool.submit(prepare, chunks[number + 1])
            outputs += run_batch(chunk, prepared)
    results = list(zip((index for index, _ in indexed), outputs, strict=True))
    if accelerator is not None and accelerator.num_processes > 1:
        results = gather_object(results)
    return [output for _, output in sorted(results, key=lambda pair: pair[0])]


def context_length(model: torch.nn.Module) -> int | None:
    """The model's context in tokens (its language model's ``max_position_embeddings``), or None when its config
    does not say."""
    config = getattr(model, "config", None)
    for node in (getattr(config, "text_config", None), config):
        value = getattr(node, "max_position_embeddings", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def warn_beyond_context(model: torch.nn.Module, collator: ChatCollator, examples: Sequence[Example], desc: str,
                        with_answer: bool = False) -> list[tuple[str, int]]:
    """Prompts (with their scored answer when ``with_answer``) longer than the model's context, warned about with
    their example and length: nothing truncates them (a rotary-position model runs past its context, with numbers
    it was never trained to give), so they are never passed silently. Returns (uid, tokens) of each."""
    context = context_length(model)
    if context is None:
        return []
    over = []
    for example in examples:
        length = collator.prompt_length(example)
        if with_answer:
            length += len(collator.target_text(example)[1])
        if length > context:
            over.append((example.uid, length))
    if over:
        shown = "; ".join(f"example {uid!r}: {length} tokens" for uid, length in over[:5])
        more = f"; and {len(over) - 5} more" if len(over) > 5 else ""
        log.warning("%s: %d of %d prompts are longer than the model's context of %d tokens (image tokens included) "
                    "and are not truncated: their numbers come from positions the model was not trained on; shorten "
                    "or leave out those questions: %s%s", desc, len(over), len(examples), context, shown, more)
    return over


def _sequence_scores(answer: AnswerLogits) -> list[SequenceScore]:
    logprobs = answer.token_logprobs().cpu()
    mu, sigma = (values.cpu() for values in answer.vocabulary_stats())
    rows = answer.rows.cpu()
    return [SequenceScore(*(tuple(values[rows == row].tolist()) for values in (logprobs, mu, sigma)))
            for row in range(answer.n_rows)]


def seen_examples(collator: ChatCollator, examples: Sequence[Example], kind: str = "score", desc: str = ""
                  ) -> list[Example]:
    """The examples as the collator's ``example_transform`` (an input attack) shows them, else as they are; every
    inference entry point starts here, so the collator's ``prompt_log`` (``eval.write_prompts``) gets here the text
    each example is rendered to: the generation prompt (``kind`` generate), or the conversation up to the end of the
    scored answer (score, choices)."""
    transform = getattr(collator, "example_transform", None)
    seen = list(examples) if transform is None else [transform(example) for example in examples]
    prompts = getattr(collator, "prompt_log", None)
    if prompts is not None and prompts.enabled:
        prompts.model({"uid": example.uid, "kind": kind, "desc": desc, "images": len(example.images()),
                       "text": collator.generation_text(example) if kind == "generate"
                       else collator.target_text(example)[0]} for example in seen)
    return seen


@torch.no_grad()
def score_answers(
    model: torch.nn.Module, collator: ChatCollator, examples: Sequence[Example], batch_size: int,
    accelerator: Accelerator | None = None, desc: str = "score", shared_prefix: bool = True,
) -> list[SequenceScore]:
    """Log-probability of every answer token of every example.

    Examples showing the same images (a question's candidate answers, an identity's questions) are scored on one
    computed prefix (``unlearning.inference.shared_prefix``); the others, and every example of a model that cannot share
    prefixes (said once in the log), in batched forward passes of whole sequences (``shared_prefix=False``: all).
    """

    examples = seen_examples(collator, examples, "score", desc)
    warn_beyond_context(model, collator, examples, desc, with_answer=True)

    def plain(batch_examples: list[Example], batch: dict | None = None) -> list[SequenceScore]:
        return _sequence_scores(forward_answer_logits(model, collator(batch_examples) if batch is None else batch))

    scorer = SharedPrefix(model, collator)
    return _on_prefixes(model, collator, examples, batch_size, accelerator, desc, plain,
                        lambda members: _sequence_scores(scorer.answer_logits(members, batch_size)), shared_prefix,
                        prepare=collator)


def _on_prefixes(
    model: torch.nn.Module, collator: ChatCollator, examples: Sequence[Example], batch_size: int,
    accelerator: Accelerator | None, desc: str, plain: Callable[[list[Example]], list[T]],
    on_prefix: Callable[[list[Example]], list[T]], shared_prefix: bool, order: Callable[[Example], int] | None = None,
    prepare: Callable[[list[Example]], Any] | None = None,
) -> list[T]:
    """Per-example results: ``on_prefix`` for each group of examples that can share a prefix, ``plain`` in
    batches for the others (and for every example of a model that cannot share one, said once in the log), their
    inputs ``prepare``d in the background."""
    reason = unsupported_reason(model, collator) if shared_prefix else "switched off"
    if reason is not None:
        if shared_prefix:
            say_once(f"scoring without shared prefixes: {reason}")
        return _sharded(examples, batch_size, accelerator, desc, plain, order=order, prepare=prepare)
    groups = group_by_prefix(collator, examples)
    singles = [group[0] for group in groups if len(group) == 1]
    shared = [group for group in groups if len(group) > 1]

    def run_group(batch: list[list[int]]) -> list[list[T]]:
        (group,) = batch
        members = [examples[i] for i in group]
        try:
            return [on_prefix(members)]
        except PrefixUnsupported as error:
            say_once(f"scoring some questions without a shared prefix: {error}")
            return [[result for start in range(0, len(members), batch_size)
                     for result in plain(members[start:start + batch_size])]]

    return _regrouped(examples, shared, _sharded(shared, 1, accelerator, desc, run_group), singles,
                      lambda: _sharded([examples[i] for i in singles], batch_size, accelerator, desc, plain,
                                       order=order, prepare=prepare))


def _regrouped(examples: Sequence[Example], groups: Sequence[list[int]], group_results: Sequence[list[T]],
               singles: Sequence[int], single_results: Callable[[], list[T]]) -> list[T]:
    """Per-example results in input order from the shared-prefix groups' results and the lone examples'."""
    out: list[T | None] = [None] * len(examples)
    for group, results in zip(groups, group_results, strict=True):
        for index, result in zip(group, results, strict=True):
            out[index] = result
    if singles:
        for index, result in zip(singles, single_results(), strict=True):
            out[index] = result
    return out


def _batch_seed(seed: int, examples: Sequence[Example]) -> int:
    material = "|".join([str(seed), *(example.uid for example in examples)])
    return int(hashlib.sha256(material.encode("utf-8")).hexdigest()[:8], 16)


@torch.no_grad()
def generate_samples(
    model: torch.nn.Module, collator: ChatCollator, examples: Sequence[Example], batch_size: int,
    decoding: Decoding, accelerator: Accelerator | None = None, desc: str = "generate", shared_prefix: bool = True,
) -> list[list[str]]:
    """``decoding.n`` answers to each example's question, stopped at EOS / end of turn.

    Greedy answers to prompts showing the same images are generated on one computed prefix (the image encoded
    once; ``unlearning.inference.shared_prefix``); the rest in batches of prompts of similar length (less padding).
    """
    examples = seen_examples(collator, examples, "generate", desc)
    warn_beyond_context(model, collator, examples, desc)
    tokenizer = collator.tokenizer
    bound = decoding.bind(model, collator.stop_ids, tokenizer.pad_token_id)  # generate's settings, built once

    def decode(new_tokens: Sequence[torch.Tensor]) -> list[str]:
        return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def plain(batch_examples: list[Example]) -> list[list[str]]:
        # collated here, not in a background thread: decoding below uses the tokenizer, whose padding settings
        # the collation changes (a fast tokenizer used from two threads can fail with "Already borrowed")
        inputs = prepare_inputs(model, collator.generation_batch(batch_examples))
        with torch.random.fork_rng(devices=[]):
            if decoding.sample:
                torch.manual_seed(_batch_seed(decoding.seed, batch_examples))
            output = model.generate(**inputs, **bound.kwargs)
        texts = decode(output[:, inputs["input_ids"].shape[1]:])
        return [texts[i * decoding.n:(i + 1) * decoding.n] for i in range(len(batch_examples))]

    greedy = decoding.greedy
    reason = unsupported_reason(model, collator) if shared_prefix and greedy else "switched off"
    if reason is None and collator.decodes_generation_prompt:  # its prompts are not the scored prompts' prefixes
        reason = "the original's generation prompt is decoded and encoded again"
    if reason is not None:
        if shared_prefix and greedy:
            say_once(f"generating without shared prefixes: {reason}")
        return _sharded(examples, batch_size, accelerator, desc, plain, order=collator.prompt_length)
    groups = group_by_prefix(collator, examples)
    # prompts showing images, even alone, start from their image's prefix in the slots; text-only ones without a
    # partner are batched on the plain path
    shared = [group for group in groups if len(group) > 1 or examples[group[0]].images()]
    singles = [group[0] for group in groups if len(group) == 1 and not examples[group[0]].images()]
    prefix = PrefixGeneration(model, collator)

    def run_groups(batch: list[list[int]]) -> list[list[list[str]]]:
        members = [[examples[i] for i in group] for group in batch]
        try:
            generated = prefix.generate(members, batch_size, bound)
        except PrefixUnsupported as error:
            say_once(f"generating some answers without a shared prefix: {error}")
            generated = [None] * len(members)
        out: list[list[list[str]]] = [[] if tokens is None else [[text] for text in decode(tokens)]
                                      for tokens in generated]
        left = [(g, r) for g, tokens in enumerate(generated) if tokens is None for r in range(len(members[g]))]
        if left:  # batched together on the plain path, in order of prompt length
            say_once("generating some answers without a shared prefix: their prompts share no prefix up to an image")
            left.sort(key=lambda pair: collator.prompt_length(members[pair[0]][pair[1]]))
            texts = [t for start in range(0, len(left), batch_size)
                     for t in plain([members[g][r] for g, r in left[start:start + batch_size]])]
            answers = dict(zip(left, texts, strict=True))
            for g, tokens in enumerate(generated):
                if tokens is None:
                    out[g] = [answers[(g, r)] for r in range(len(members[g]))]
        return out

    # groups per call: about eight batches of prompts, so that slots freed by short answers take waiting prompts (a
    # group's prefix is held only while its prompts start: slot decoding, or a batch's worth of groups at a time)
    per_call = max(1, 8 * batch_size * len(shared) // max(1, sum(len(g) for g in shared)))
    return _regrouped(examples, shared, _sharded(shared, per_call, accelerator, desc, run_groups), singles,
                      lambda: _sharded([examples[i] for i in singles], batch_size, accelerator, desc, plain,
                                       order=collator.prompt_length))


def generate_answers(
    model: torch.nn.Module, collator: ChatCollator, examples: Sequence[Example], batch_size: int,
    decoding: Decoding | int, accelerator: Accelerator | None = None, desc: str = "generate",
    shared_prefix: bool = True,
) -> list[str]:
    """One answer per example (``decoding`` an int: greedy with that many new tokens at most)."""
    if isinstance(decoding, int):
        decoding = Decoding(max_new_tokens=decoding)
    if decoding.n != 1:
        raise ValueError(f"generate_answers gives one answer per question; decoding asks for {decoding.n}")
    return [samples[0] for samples in generate_samples(model, collator, examples, batch_size, decoding,
                                                       accelerator, desc, shared_prefix)]


@torch.no_grad()
def choice_token_logprobs(
    model: torch.nn.Module, collator: ChatCollator, examples: Sequence[Example], candidates: Sequence[int],
    offset: int, batch_size: int, accelerator: Accelerator | None = None, desc: str = "choices",
    shared_prefix: bool = True,
) -> list[list[float]]:
    """log p(token | prompt + answer[:offset]) for each candidate token id, where the candidates' targets share
    their first ``offset`` tokens (e.g. a space before the option letter): one forward pass per example scores
    every option of a multiple-choice question (lm-evaluation-harness's single-token choices), the questions about
    one image on one computed prefix (as ``score_answers``). Each example's answer must be one of the candidates'
    targets."""
    examples = seen_examples(collator, examples, "choices", desc)
    warn_beyond_context(model, collator, examples, desc, with_answer=True)
    index = torch.tensor(list(candidates))

    def run(batch_examples: list[Example], batch: dict | None = None) -> list[list[float]]:
        batch = collator(batch_examples) if batch is None else batch
        outputs = model(**prepare_inputs(model, batch["inputs"]), use_cache=False)
        labels = batch["labels"].to(outputs.logits.device)
        first = (labels[:, 1:] != IGNORE_INDEX).int().argmax(dim=1)  # first answer token, shifted coordinates
        logits = outputs.logits[torch.arange(len(batch_examples)), first + offset].float()
        return torch.log_softmax(logits, dim=-1)[:, index.to(logits.device)].cpu().tolist()

    scorer = SharedPrefix(model, collator)

    def on_prefix(members: list[Example]) -> list[list[float]]:
        answer = scorer.answer_logits(members, batch_size)
        rows = torch.stack([answer.logits[answer.rows == row][offset] for row in range(len(members))])
        return torch.log_softmax(rows, dim=-1)[:, index.to(rows.device)].cpu().tolist()

    return _on_prefixes(model, collator, examples, batch_size, accelerator, desc, run, on_prefix, shared_prefix,
                        order=collator.prompt_length, prepare=collator)
