"""Greedy generation on shared prefixes: each group's prompt up to its last image runs once, and its prompts are
decoded on top of it, in refilled slots (``unlearning.inference.slot_decoding``) or in fixed batches.

Prompts showing the same images (an identity's question and paraphrases) are laid out alike up to their last
image; the prefix's keys and values are computed once and each prompt's remaining tokens run on top. The answers
are token for token those of each prompt generated alone (``tests/unlearning/test_families.py``).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer, StaticCache, StaticLayer

from unlearning.data.examples import Example
from unlearning.inference.decoding import BoundDecoding
from unlearning.inference.shared_prefix import PrefixUnsupported, SharedPrefix, say_once
from unlearning.inference.slot_decoding import Prompt, SlotDecoder, logit_changes, repetition_penalty


class PrefixGeneration(SharedPrefix):
    """Generated answers on top of each group's shared image prefix."""

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
    def generate(self, groups: Sequence[Sequence[Example]], batch_size: int, decoding: BoundDecoding
                 ) -> list[list[torch.Tensor] | None]:
        """Each example's new tokens, greedy, per group in the given order (None for a group that cannot share a
        prefix: the caller generates it on the plain path).

        Each group's prefix (its prompt up to the last image) runs once. The prompts are generated in
        ``batch_size`` slots, each slot taking the next prompt as soon as its answer ends
        (``unlearning.inference.slot_decoding``), group after group: a group's prefix runs when its first prompt
        takes a slot and is let go when its last has, so few prefixes are held at once however many groups come.
        Where the model's generation config changes greedy's argmax otherwise than by a repetition penalty, or its
        cache cannot be held in slots, they go in fixed batches (``generate_in_fixed_batches``).
        """
        prompts, laid_out, out = self._lay_out(groups)
        if not laid_out:
            return out
        changes = logit_changes(decoding.config)
        if changes:
            say_once(f"generating in fixed batches, not refilled slots: generation adds {', '.join(changes)}")
        else:
            decoder = SlotDecoder(self.model, self.cache_argument, batch_size, decoding.decoding.max_new_tokens,
                                  decoding.stop_ids, self.pad_id, self.keeps_last_logits,
                                  repetition_penalty(decoding.config))
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
        return self._in_fixed_batches(groups, prompts, laid_out, out, batch_size, decoding)

    @torch.no_grad()
    def generate_in_fixed_batches(self, groups: Sequence[Sequence[Example]], batch_size: int,
                                  decoding: BoundDecoding) -> list[list[torch.Tensor] | None]:
        """``generate``'s fallback, each batch running until its longest answer ends (``bench/slot_decoding.py``
        compares the two)."""
        prompts, laid_out, out = self._lay_out(groups)
        return self._in_fixed_batches(groups, prompts, laid_out, out, batch_size, decoding)

    def _lay_out(self, groups: Sequence[Sequence[Example]]) -> tuple[list[list[list[int]]], dict[int, Any], list]:
        """Each prompt's tokens, each group's image prefix (groups that cannot share one are left out), and the
        output to fill (None for the groups left out)."""
        collator = self.collator
        prompts = [[collator.encode_text(collator.prompt_text(example)) for example in group] for group in groups]
        laid_out: dict[int, tuple[dict[str, torch.Tensor], int]] = {}
        for index, group in enumerate(groups):
            with contextlib.suppress(PrefixUnsupported):
                laid_out[index] = self._image_prefix(group[0], prompts[index])
        out: list[list[torch.Tensor | None] | None] = [[None] * len(g) if i in laid_out else None
                                                       for i, g in enumerate(groups)]
        return prompts, laid_out, out

    def _in_fixed_batches(self, groups: Sequence[Sequence[Example]], prompts: list[list[list[int]]],
                          laid_out: dict[int, Any], out: list, batch_size: int, decoding: BoundDecoding
                          ) -> list[list[torch.Tensor] | None]:
        indices = list(laid_out)
        for start in range(0, len(indices), batch_size):  # at most a batch's worth of group prefixes held at once
            window = {index: laid_out[index] for index in indices[start:start + batch_size]}
            for index, tokens in self._generate_fixed(window, groups, prompts, batch_size, decoding).items():
                out[index] = tokens
        return out

    def _generate_fixed(self, laid_out: dict[int, tuple[dict[str, torch.Tensor], int]],
                        groups: Sequence[Sequence[Example]], prompts: list[list[list[int]]], batch_size: int,
                        decoding: BoundDecoding) -> dict[int, list[torch.Tensor]]:
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
                new = self._generate_chunk([(prepared[g], prompts[g][r]) for g, r in chunk], decoding)
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
                        decoding: BoundDecoding) -> list[torch.Tensor]:
        model = self.model
        tails = [prompt[prefix[1]:-1] for prefix, prompt in rows]  # may be empty
        length = max(len(t) for t in tails)
        prefix_ids = torch.cat([prefix[0]["input_ids"].cpu() for prefix, _ in rows])
        device = next(p for p in model.parameters()).device
        cache = self._stacked_cache([prefix[2] for prefix, _ in rows], prefix_ids.shape[1] + length + 1,
                                    decoding)
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
                                **{self.cache_argument: cache}, **whole, **decoding.kwargs)
        return [output[row, ids.shape[1]:].cpu() for row in range(len(rows))]

    def _stacked_cache(self, caches: Sequence[Any], length: int, decoding: BoundDecoding) -> Any:
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
                                 max_cache_len=length + decoding.decoding.max_new_tokens)
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


class _LazyPrefix:
    """A group's prefix for slot decoding: run through the model when its first prompt takes a slot, let go when
    its last has (``uses`` takes)."""

    def __init__(self, owner: PrefixGeneration, inputs: dict[str, torch.Tensor], uses: int) -> None:
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
