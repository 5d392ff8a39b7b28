"""Teacher-forced scoring of several answers to one prompt on one computed prefix.

The candidates a benchmark scores for one question (its answer, a paraphrased answer, perturbed answers, the
options of a multiple-choice question) share everything before their answer: system prompt, image, question. Here
that prefix runs through the model once (its image through the vision tower once), its key/value cache is repeated
over the candidates, and only the candidates' own tokens run on top of it. The log-probabilities are those of the
plain path (each candidate a full sequence) up to floating-point reordering; ``tests/unlearning/test_families.py``
compares the two on every family.

Positions are counted in the text's tokens: the processor expands each image placeholder into image tokens inside
the prompt, and nothing after the last image changes, so a candidate's tokens after the shared prefix are the same
in both. Inputs that are one value per token (attention masks, token types, Mllama's cross-attention mask) are
cut with the prefix; a model that needs per-token inputs for its continuation gets Mllama's rule (every text token
after the image sees the image), the one ``generate`` applies.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from unlearning.data import ChatCollator, Example, ImageSource
from unlearning.scoring import AnswerLogits, prepare_inputs

PER_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids", "cross_attention_mask")


class PrefixUnsupported(Exception):
    """The shared-prefix path cannot score these examples; the caller scores them on the plain path."""


def _image_key(source: ImageSource) -> Any:
    if isinstance(source, bytes):
        return source
    return id(source) if isinstance(source, Image.Image) else str(source)


def prompt_key(collator: ChatCollator, example: Example) -> tuple[str, tuple[Any, ...]]:
    """Examples with equal keys share their prompt (text and images): they can share one prefix."""
    return collator.prompt_text(example), tuple(_image_key(source) for source in example.images())


def group_by_prompt(collator: ChatCollator, examples: Sequence[Example]) -> list[list[int]]:
    """Indices of the examples that share a prompt, groups in order of first appearance."""
    groups: dict[tuple[str, tuple[Any, ...]], list[int]] = {}
    for index, example in enumerate(examples):
        groups.setdefault(prompt_key(collator, example), []).append(index)
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


def _cut(inputs: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
    return {key: value[:, :length] if key in PER_TOKEN_INPUTS else value for key, value in inputs.items()}


class SharedPrefixScorer:
    """Scores a group of examples sharing one prompt: one prefix pass, then the candidates in chunks of
    ``batch_size`` on a copy of its cache."""

    def __init__(self, model: torch.nn.Module, collator: ChatCollator) -> None:
        self.model, self.collator = model, collator
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.cache_argument = _cache_argument(type(base))
        self.keeps_last_logits = "logits_to_keep" in inspect.signature(type(base).forward).parameters
        tokenizer = collator.tokenizer
        image_token = getattr(collator.processor, "image_token", None)
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token) if image_token else None
        # Position state a model keeps between calls for its cached continuations (Qwen2-VL's M-RoPE offsets):
        # cleared before each prefix, so a text-only prefix does not continue from the previous image's offsets.
        self._position_state = [module for module in model.modules() if hasattr(module, "rope_deltas")]

    def _prefix(self, example: Example, candidates: Sequence[_Candidate]) -> tuple[dict[str, torch.Tensor], int]:
        """The model inputs of the shared prefix and its length in text tokens."""
        prompt_ids = self.collator.encode_text(self.collator.prompt_text(example))
        shared = min(_common_length([prompt_ids, *(c.ids for c in candidates)]),
                     min(c.first_label for c in candidates))
        if shared < 1:
            raise PrefixUnsupported("the candidates share no prompt token before their first label")
        inputs = self.collator.generation_batch([example])  # one row: no padding
        processed = inputs["input_ids"][0].tolist()
        expansion = len(processed) - len(prompt_ids)
        rest = prompt_ids[shared:]
        if rest and (processed[len(processed) - len(rest):] != rest or self.image_token_id in rest):
            raise PrefixUnsupported("the prompt's tokens after the shared prefix hold an image")
        return _cut(inputs, shared + expansion), shared

    def _continuation_inputs(self, prefix: dict[str, torch.Tensor], rows: int, length: int) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if "cross_attention_mask" in prefix:  # every text token after the image sees it (Mllama)
            last = prefix["cross_attention_mask"][:, -1:]
            extra["cross_attention_mask"] = last.expand(rows, length, *last.shape[2:])
        return extra

    @torch.no_grad()
    def answer_logits(self, examples: Sequence[Example], batch_size: int) -> AnswerLogits:
        """The scored positions' logits of every example (rows in the given order), as the plain path's
        ``forward_answer_logits`` returns them."""
        collator, model = self.collator, self.model
        candidates = []
        for example in examples:
            text, target_ids = collator.target_text(example)
            candidates.append(_Candidate(collator.encode_text(text), len(target_ids)))
        prefix_inputs, shared = self._prefix(examples[0], candidates)
        prefix_inputs = prepare_inputs(model, prefix_inputs)
        keep = {"logits_to_keep": 1} if self.keeps_last_logits else {}
        for module in self._position_state:
            module.rope_deltas = None
        prefix = model(**prefix_inputs, use_cache=True, **keep)
        last_logits = prefix.logits[0, -1:]  # predicts each candidate's token at position `shared`
        device = last_logits.device
        pad_id = collator.tokenizer.pad_token_id or 0

        logits, targets, rows = [], [], []
        for start in range(0, len(candidates), batch_size):
            chunk = candidates[start:start + batch_size]
            tails = [c.ids[shared:] for c in chunk]
            length = max(len(t) for t in tails)
            ids = torch.full((len(chunk), length), pad_id, dtype=torch.long)
            for row, tail in enumerate(tails):
                ids[row, :len(tail)] = torch.tensor(tail, dtype=torch.long)
            cache = prefix[self.cache_argument]  # the output field is named as the input
            if length > 1:
                if start + batch_size < len(candidates):  # later chunks need the prefix's cache unextended
                    cache = copy.deepcopy(cache)
                cache.batch_repeat_interleave(len(chunk))
            continuation = None
            if length > 1:  # a one-token tail is predicted by the prefix alone
                continuation = model(input_ids=ids.to(device), use_cache=True, **{self.cache_argument: cache},
                                     **self._continuation_inputs(prefix_inputs, len(chunk), length)).logits
            for row, candidate in enumerate(chunk):
                tail = len(tails[row])  # >= 1: every label lies at or after `shared`
                # logits at positions shared-1 .. len-2 predict tokens shared .. len-1
                positions = last_logits if tail == 1 else torch.cat([last_logits, continuation[row, :tail - 1]])
                logits.append(positions[-candidate.n_labels:].float())
                targets.append(torch.tensor(candidate.ids[-candidate.n_labels:], dtype=torch.long))
                rows.append(torch.full((candidate.n_labels,), start + row, dtype=torch.long))
        return AnswerLogits(torch.cat(logits), torch.cat(targets).to(device), torch.cat(rows).to(device),
                            len(candidates))
