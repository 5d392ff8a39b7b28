"""Teacher-forced scoring of several answers on one computed prefix.

The candidates a benchmark scores for one question (its answer, a paraphrased answer, perturbed answers, the
options of a multiple-choice question) share everything before their answer, and the questions about one image
(an identity's) share the system prompt and the image. Here the examples showing the same images are scored
together: their longest common prefix, which holds the images, runs through the model once (each image through the
vision tower once), its key/value cache is repeated over the examples, and only their own tokens (question rest,
answer) run on top of it. The log-probabilities are those of the plain path (each example a full sequence) up to
floating-point reordering; ``tests/unlearning/test_families.py`` compares the two on every family.

Positions are counted in the text's tokens: the processor expands each image placeholder into image tokens inside
the prompt, and nothing after the last image changes, so an example's tokens after the shared prefix are the same
in both. Inputs that are one value per token (attention masks, token types, Mllama's cross-attention mask) are
cut with the prefix; for the continuation a per-token cross-attention mask repeats the prefix's last row (every
text token after the image sees it), the rule ``generate`` applies.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from unlearning.data.collator import ChatCollator
from unlearning.data.examples import Example
from unlearning.data.images import image_key
from unlearning.inference.scoring import AnswerLogits, prepare_inputs

log = logging.getLogger(__name__)

PER_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids", "cross_attention_mask")


_said: set[str] = set()


def say_once(message: str) -> None:
    """Log a fallback's reason the first time it happens (it would repeat for every batch)."""
    if message not in _said:
        _said.add(message)
        log.warning(message)


class PrefixUnsupported(Exception):
    """The shared-prefix path cannot score these examples; the caller scores them on the plain path."""


def prefix_key(collator: ChatCollator, example: Example) -> tuple[str, Any]:
    """Examples with equal keys can share one prefix: those showing the same images (in order; the prefix then
    runs up to where their tokens part, past the last image), and text-only ones with the same prompt."""
    images = example.images()
    if images:
        return "images", tuple(image_key(source) for source in images)
    return "text", collator.prompt_text(example)


def group_by_prefix(collator: ChatCollator, examples: Sequence[Example]) -> list[list[int]]:
    """Indices of the examples that can share a prefix, groups in order of first appearance."""
    groups: dict[tuple[str, Any], list[int]] = {}
    for index, example in enumerate(examples):
        groups.setdefault(prefix_key(collator, example), []).append(index)
    return list(groups.values())


@functools.cache
def _cache_argument(model_class: type) -> str | None:
    """The keyword a model's forward takes its key/value cache by (``cache`` since transformers 5.2x), or None."""
    parameters = inspect.signature(model_class.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in parameters), None)


def unsupported_reason(model: torch.nn.Module, collator: ChatCollator) -> str | None:
    """Why this model/collator cannot score on a shared prefix, or None when it can."""
    if collator.label_scope != "answer":
        return f"labels on every token (label_scope={collator.label_scope!r}) need every position's logits"
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if _cache_argument(type(base)) is None:
        return f"{type(base).__name__}.forward takes no key/value cache"
    return None


@dataclass(frozen=True)
class _Candidate:
    ids: list[int]  # the conversation's text tokens (image placeholders unexpanded)
    n_labels: int  # its last n_labels tokens are scored

    @property
    def first_label(self) -> int:
        return len(self.ids) - self.n_labels


def _common_length(sequences: Sequence[Sequence[int]]) -> int:
    length = min(len(s) for s in sequences)
    for position in range(length):
        if len({s[position] for s in sequences}) != 1:
            return position
    return length


def _repeated_cross_mask(inputs: dict[str, torch.Tensor], rows: int) -> torch.Tensor | None:
    """A prefix's per-token cross-attention mask (Mllama) repeated over ``rows``, or None."""
    mask = inputs.get("cross_attention_mask")
    return None if mask is None else mask.expand(rows, *mask.shape[1:])


def _cut(inputs: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
    return {key: value[:, :length] if key in PER_TOKEN_INPUTS else value for key, value in inputs.items()}


class SharedPrefix:
    """One group's shared prefix through ``model`` (``group_by_prefix``), and the examples' scored tokens on top of
    it (``answer_logits``); ``PrefixGeneration`` generates on top of it instead."""

    def __init__(self, model: torch.nn.Module, collator: ChatCollator) -> None:
        self.model, self.collator = model, collator
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.cache_argument = _cache_argument(type(base))
        self.keeps_last_logits = "logits_to_keep" in inspect.signature(type(base).forward).parameters
        tokenizer = collator.tokenizer
        image_token = getattr(collator.processor, "image_token", None)
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token) if image_token else None
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # Position state a model keeps between calls for its cached continuations (Qwen2-VL's M-RoPE offsets):
        # cleared before each prefix, so a text-only prefix does not continue from the previous image's offsets.
        self._position_state = [module for module in model.modules() if hasattr(module, "rope_deltas")]

    def _prefix(self, example: Example, sequences: Sequence[Sequence[int]], limit: int
                ) -> tuple[dict[str, torch.Tensor], int]:
        """The model inputs of the prefix ``sequences`` (text tokens) share, at most ``limit`` tokens long, and its
        length in text tokens; ``example`` (one of them) gives the prompt and images it is processed from."""
        prompt_ids = self.collator.encode_text(self.collator.prompt_text(example))
        shared = min(_common_length([prompt_ids, *sequences]), limit)
        if shared < 1:
            raise PrefixUnsupported("the examples share no prompt token before their first scored or new token")
        inputs = self.collator.prompt_inputs(example)  # one row: no padding
        processed = inputs["input_ids"][0].tolist()
        expansion = len(processed) - len(prompt_ids)
        rest = prompt_ids[shared:]
        if (rest and processed[len(processed) - len(rest):] != rest) or any(
                self.image_token_id in ids[shared:] for ids in sequences):
            raise PrefixUnsupported("the tokens after the shared prefix hold an image")
        return _cut(inputs, shared + expansion), shared

    def _run_prefix(self, inputs: dict[str, torch.Tensor]) -> Any:
        for module in self._position_state:
            module.rope_deltas = None
        keep = {"logits_to_keep": 1} if self.keeps_last_logits else {}
        return self.model(**prepare_inputs(self.model, inputs), use_cache=True, **keep)

    def _repeated_cache(self, prefix: Any, rows: int, last_use: bool) -> Any:
        """The prefix's cache repeated over ``rows`` (a copy unless this is its last use)."""
        cache = prefix[self.cache_argument]  # the output field is named as the input
        if not last_use:
            cache = copy.deepcopy(cache)
        cache.batch_repeat_interleave(rows)
        return cache

    def _padded(self, tails: Sequence[Sequence[int]], length: int) -> torch.Tensor:
        ids = torch.full((len(tails), length), self.pad_id, dtype=torch.long)
        for row, tail in enumerate(tails):
            ids[row, :len(tail)] = torch.tensor(list(tail), dtype=torch.long)
        return ids

    @staticmethod
    def _rows_after(cross: torch.Tensor | None, length: int) -> dict[str, torch.Tensor]:
        """Per-token inputs of ``length`` tokens after the prefixes: every text token after the image sees it."""
        if cross is None:
            return {}
        return {"cross_attention_mask": cross[:, -1:].expand(-1, length, *cross.shape[2:])}

    @torch.no_grad()
    def answer_logits(self, examples: Sequence[Example], batch_size: int) -> AnswerLogits:
        """The scored positions' logits of every example (rows in the given order), as the plain path's
        ``forward_answer_logits`` returns them."""
        collator, model = self.collator, self.model
        candidates = []
        for example in examples:
            text, target_ids = collator.target_text(example)
            candidates.append(_Candidate(collator.encode_text(text), len(target_ids)))
        prefix_inputs, shared = self._prefix(examples[0], [c.ids for c in candidates],
                                             min(c.first_label for c in candidates))
        prefix = self._run_prefix(prefix_inputs)
        last_logits = prefix.logits[0, -1:]  # predicts each candidate's token at position `shared`
        device = last_logits.device

        logits, targets, rows = [], [], []
        for start in range(0, len(candidates), batch_size):
            chunk = candidates[start:start + batch_size]
            tails = [c.ids[shared:] for c in chunk]
            length = max(len(t) for t in tails)
            continuation = None
            if length > 1:  # a one-token tail is predicted by the prefix alone
                cache = self._repeated_cache(prefix, len(chunk), start + batch_size >= len(candidates))
                continuation = model(input_ids=self._padded(tails, length).to(device), use_cache=True,
                                     **{self.cache_argument: cache},
                                     **self._rows_after(_repeated_cross_mask(prefix_inputs, len(chunk)), length)).logits
            for row, candidate in enumerate(chunk):
                tail = len(tails[row])  # >= 1: every label lies at or after `shared`
                # logits at positions shared-1 .. len-2 predict tokens shared .. len-1
                positions = last_logits if tail == 1 else torch.cat([last_logits, continuation[row, :tail - 1]])
                logits.append(positions[-candidate.n_labels:].float())
                targets.append(torch.tensor(candidate.ids[-candidate.n_labels:], dtype=torch.long))
                rows.append(torch.full((candidate.n_labels,), start + row, dtype=torch.long))
        return AnswerLogits(torch.cat(logits), torch.cat(targets).to(device), torch.cat(rows).to(device),
                            len(candidates))
