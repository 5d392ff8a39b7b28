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

import contextlib
import copy
import functools
import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer, StaticCache, StaticLayer

from unlearning.data.collator import ChatCollator, Example, image_key
from unlearning.inference.scoring import AnswerLogits, prepare_inputs
from unlearning.inference.slot_decoding import Prompt, SlotDecoder, logit_changes, repetition_penalty

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
    """One group's shared prefix through ``model`` (``group_by_prefix``), and what runs on top of it: the
    examples' scored tokens (``answer_logits``) or their generated answers (``generate``)."""

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

    def _image_prefix(self, example: Example, prompts: Sequence[Sequence[int]]) -> tuple[dict[str, torch.Tensor], int]:
        """A generation prefix: the prompt up to its last image placeholder, so that groups showing other images
        but laid out alike (same template, same image token count) have prefixes of one length and batch together."""
        own = self.collator.encode_text(self.collator.prompt_text(example))
        placeholders = [i for i, token in enumerate(own) if token == self.image_token_id]
        if not placeholders:
            raise PrefixUnsupported("the processor names no image placeholder token the prompt holds")
        inputs, shared = self._prefix(example, prompts, placeholders[-1] + 1)
        if shared != placeholders[-1] + 1 or shared > min(len(p) for p in prompts) - 1:
            raise PrefixUnsupported("the prompts differ before their last image, or end with it")
        return inputs, shared

    @torch.no_grad()
    def generate(self, groups: Sequence[Sequence[Example]], batch_size: int, generate_kwargs: dict[str, Any],
                 refill: bool = True) -> list[list[torch.Tensor] | None]:
        """Each example's new tokens, greedy, per group in the given order (None for a group that cannot share a
        prefix: the caller generates it on the plain path).

        Each group's prefix (its prompt up to the last image) runs once. The prompts are generated in
        ``batch_size`` slots, each slot taking the next prompt as soon as its answer ends
        (``unlearning.inference.slot_decoding``), group after group: a group's prefix runs when its first prompt
        takes a slot and is let go when its last has, so few prefixes are held at once however many groups come.
        Where the model's generation config changes greedy's argmax otherwise than by a repetition penalty, or its
        cache cannot be held in slots (or ``refill`` is False), they go in fixed batches (``_generate_fixed``).
        """
        collator = self.collator
        prompts = [[collator.encode_text(collator.prompt_text(example)) for example in group] for group in groups]
        laid_out: dict[int, tuple[dict[str, torch.Tensor], int]] = {}
        for index, group in enumerate(groups):
            with contextlib.suppress(PrefixUnsupported):
                laid_out[index] = self._image_prefix(group[0], prompts[index])
        out: list[list[torch.Tensor | None] | None] = [[None] * len(g) if i in laid_out else None
                                                       for i, g in enumerate(groups)]
        if not laid_out:
            return out
        changes = logit_changes(self.model, generate_kwargs) if refill else ["refill=False"]
        if changes and refill:
            say_once(f"generating in fixed batches, not refilled slots: generation adds {', '.join(changes)}")
        if not changes:
            decoder = SlotDecoder(self.model, self.cache_argument, batch_size, int(generate_kwargs["max_new_tokens"]),
                                  generate_kwargs.get("eos_token_id") or [], self.pad_id, self.keeps_last_logits,
                                  repetition_penalty(self.model, generate_kwargs))
            sources = {index: _LazyPrefix(self, inputs, len(groups[index])) for index, (inputs, _) in laid_out.items()}
            rows = [(g, r) for g in laid_out for r in sorted(range(len(groups[g])), key=lambda r, g=g: len(
                prompts[g][r]))]
            queued = [self._slot_prompt(laid_out[g], sources[g], prompts[g][r]) for g, r in rows]
            reason = decoder.unsupported(next(iter(sources.values())).peek(), queued)
            if reason is None:
                for (g, r), tokens in zip(rows, decoder.run(queued), strict=True):
                    out[g][r] = tokens
                return out
            say_once(f"generating in fixed batches, not refilled slots: {reason}")
        indices = list(laid_out)
        for start in range(0, len(indices), batch_size):  # at most a batch's worth of group prefixes held at once
            window = {index: laid_out[index] for index in indices[start:start + batch_size]}
            for index, tokens in self._generate_fixed(window, groups, prompts, batch_size, generate_kwargs).items():
                out[index] = tokens
        return out

    def _generate_fixed(self, laid_out: dict[int, tuple[dict[str, torch.Tensor], int]],
                        groups: Sequence[Sequence[Example]], prompts: list[list[list[int]]], batch_size: int,
                        generate_kwargs: dict[str, Any]) -> dict[int, list[torch.Tensor]]:
        """Fixed batches: each group's prefix run, prompts of every group whose prefix has the same length batched
        together in order of length, ``batch_size`` at a time: their prefixes' keys and values stacked (in a
        preallocated cache where the model allows), each prompt's remaining tokens but its last run right-padded on
        top, and ``generate`` continues from every prompt's last token with an attention mask leaving out the
        padding between them (positions follow the mask, as with left padding)."""
        prepared = {}
        for index, (inputs, shared) in laid_out.items():
            output = self._run_prefix(inputs)
            prepared[index] = inputs, shared, output[self.cache_argument], [m.rope_deltas for m in self._position_state]
        out: dict[int, list[Any]] = {index: [None] * len(groups[index]) for index in prepared}
        buckets: dict[int, list[tuple[int, int]]] = {}
        for index, (inputs, _, _, _) in prepared.items():
            buckets.setdefault(inputs["input_ids"].shape[1], []).extend((index, r) for r in range(len(groups[index])))
        for rows in buckets.values():
            rows.sort(key=lambda pair: len(prompts[pair[0]][pair[1]]))  # less padding per batch
            for start in range(0, len(rows), batch_size):
                chunk = rows[start:start + batch_size]
                new = self._generate_chunk([(prepared[g], prompts[g][r]) for g, r in chunk], generate_kwargs)
                for (g, r), tokens in zip(chunk, new, strict=True):
                    out[g][r] = tokens
        return out

    @staticmethod
    def _slot_prompt(laid_out: tuple[dict[str, torch.Tensor], int], source: _LazyPrefix, prompt: list[int]) -> Prompt:
        inputs, shared = laid_out
        cross = inputs.get("cross_attention_mask")
        return Prompt(source, inputs["input_ids"].shape[1], prompt[shared:-1], prompt[-1],
                      None if cross is None else cross[:, -1:], inputs["input_ids"][0])

    def _generate_chunk(self, rows: Sequence[tuple[tuple[dict[str, torch.Tensor], int, Any, list[Any]], list[int]]],
                        generate_kwargs: dict[str, Any]) -> list[torch.Tensor]:
        model = self.model
        tails = [prompt[prefix[1]:-1] for prefix, prompt in rows]  # may be empty
        length = max(len(t) for t in tails)
        prefix_ids = torch.cat([prefix[0]["input_ids"].cpu() for prefix, _ in rows])
        device = next(p for p in model.parameters()).device
        cache = self._stacked_cache([prefix[2] for prefix, _ in rows], prefix_ids.shape[1] + length + 1,
                                    generate_kwargs)
        for position, module in enumerate(self._position_state):  # each row's own M-RoPE offset
            deltas = [prefix[3][position] for prefix, _ in rows]
            module.rope_deltas = None if any(d is None for d in deltas) else torch.cat(deltas)
        cross = self._stacked_cross_mask([prefix[0] for prefix, _ in rows])
        if length:
            model(input_ids=self._padded(tails, length).to(device), use_cache=True, **{self.cache_argument: cache},
                  **self._rows_after(cross, length))
        tail_mask = torch.tensor([[1] * len(t) + [0] * (length - len(t)) for t in tails], dtype=torch.long)
        ids = torch.cat([prefix_ids, self._padded(tails, length),
                         torch.tensor([[prompt[-1]] for _, prompt in rows], dtype=torch.long)], dim=1)
        mask = torch.cat([torch.ones_like(prefix_ids), tail_mask, torch.ones(len(rows), 1, dtype=torch.long)], dim=1)
        whole = {} if cross is None else {
            "cross_attention_mask": torch.cat([cross, self._rows_after(cross, length + 1)["cross_attention_mask"]], 1)}
        output = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                **{self.cache_argument: cache}, **whole, **generate_kwargs)
        return [output[row, ids.shape[1]:].cpu() for row in range(len(rows))]

    def _stacked_cache(self, caches: Sequence[Any], length: int, generate_kwargs: dict[str, Any]) -> Any:
        """The rows' prefix caches stacked into one batch: a preallocated cache with room for the prompts and the
        new tokens where every layer is one plain key/value pair (decoding then writes in place instead of copying
        the whole cache at every step, which dominates batched decoding over long image prompts), else a dynamic
        cache (cross-attention layers, sliding windows)."""
        layers = list(zip(*(cache.layers for cache in caches), strict=True))
        if any(len({layer.keys.shape[1:] for layer in stack}) != 1 for stack in layers):
            raise PrefixUnsupported("the groups' prefix caches differ in shape")
        keys = [torch.cat([layer.keys for layer in stack]) for stack in layers]
        values = [torch.cat([layer.values for layer in stack]) for stack in layers]
        plain = all(type(layer) is DynamicLayer for layer in caches[0].layers) and len(
            {k.shape[-2] for k in keys}) == 1  # cross-attention layers hold the image instead
        if plain:
            static = StaticCache(config=self.model.config,
                                 max_cache_len=length + int(generate_kwargs["max_new_tokens"]))
            if len(static.layers) == len(keys) and all(type(layer) is StaticLayer for layer in static.layers):
                for index, (k, v) in enumerate(zip(keys, values, strict=True)):
                    static.update(k, v, index)
                return static
        stacked = copy.copy(caches[0])
        stacked.layers = [copy.copy(layer) for layer in caches[0].layers]
        for layer, k, v in zip(stacked.layers, keys, values, strict=True):
            layer.keys, layer.values = k, v
        return stacked

    @staticmethod
    def _stacked_cross_mask(prefixes: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor | None:
        if "cross_attention_mask" not in prefixes[0]:
            return None
        masks = [prefix["cross_attention_mask"] for prefix in prefixes]
        if len({mask.shape for mask in masks}) != 1:
            raise PrefixUnsupported("the groups' cross-attention masks differ in shape")
        return torch.cat(masks)

    @staticmethod
    def _rows_after(cross: torch.Tensor | None, length: int) -> dict[str, torch.Tensor]:
        """Per-token inputs of ``length`` tokens after the prefixes: every text token after the image sees it."""
        if cross is None:
            return {}
        return {"cross_attention_mask": cross[:, -1:].expand(-1, length, *cross.shape[2:])}


class _LazyPrefix:
    """A group's prefix for slot decoding: run through the model when its first prompt takes a slot, let go when
    its last has (``uses`` takes)."""

    def __init__(self, owner: SharedPrefix, inputs: dict[str, torch.Tensor], uses: int) -> None:
        self.owner, self.inputs, self.uses = owner, inputs, uses
        self._computed: tuple[Any, int] | None = None

    def peek(self) -> Any:
        """The prefix's cache, computed if need be, without taking a use."""
        if self._computed is None:
            output = self.owner._run_prefix(self.inputs)
            deltas = [module.rope_deltas for module in self.owner._position_state]
            delta = next((int(d.reshape(-1)[0]) for d in deltas if d is not None), 0)
            self._computed = output[self.owner.cache_argument], delta
        return self._computed[0]

    def take(self) -> tuple[Any, int]:
        """The prefix's cache and its position offset (M-RoPE), for one of the group's prompts."""
        self.peek()
        computed = self._computed
        self.uses -= 1
        if self.uses <= 0:
            self._computed = None
        return computed
