"""Greedy decoding in a fixed number of slots, each refilled as soon as its answer ends (continuous batching).

A batch generated with ``generate`` runs until its longest answer ends: rows that stopped early go on computing
padding. Here every slot holds one prompt's keys and values in a preallocated cache; when a row stops (an end
token, or the new-token limit), the next prompt's computed prefix is copied into its slot and the batch goes on.
The rows of a batch hold sequences of different lengths, so each row's keys and values end at the shared write
position and an attention mask leaves out everything before them (what the slot's earlier rows left, or padding),
and each row has its own position ids (its sequence length, plus its M-RoPE offset on Qwen2-VL). When the write
position reaches the end of the cache, every row is moved back to end where the longest ends (compaction). Once no
prompt is left to start, finished rows leave the batch.

A prompt arrives as a computed prefix (its cache, one row) and the tokens after it; prompts whose prefixes have the
same length run their remaining tokens together, right-padded, when they take their slots. Greedy decoding only: a
repetition penalty in the model's generation config is applied as ``generate`` applies it, anything else that
changes the argmax (``logit_changes`` names it) sends the caller back to ``generate``. Cross-attention layers
(Mllama's, which the model's text config lists) hold each row's image states whole, in place of a growing key/value
pair.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import GenerationConfig
from transformers.cache_utils import Cache, DynamicLayer, DynamicSlidingWindowLayer, StaticLayer

log = logging.getLogger(__name__)

# generation settings that change greedy's argmax (logits processors), with the values that leave it unchanged;
# the repetition penalty is applied here (``SlotDecoder``), the others send generation back to ``generate``
_NEUTRAL = {"encoder_repetition_penalty": (1.0,), "no_repeat_ngram_size": (0,),
            "encoder_no_repeat_ngram_size": (0,), "bad_words_ids": (), "force_words_ids": (), "min_length": (0,),
            "min_new_tokens": (0,), "suppress_tokens": (), "begin_suppress_tokens": (), "forced_bos_token_id": (),
            "forced_eos_token_id": (), "sequence_bias": (), "exponential_decay_length_penalty": (),
            "guidance_scale": (1.0,), "stop_strings": (), "watermarking_config": (), "remove_invalid_values": (False,)}


def logit_changes(config: GenerationConfig) -> list[str]:
    """The settings of a generation config (the model's, merged with the decoding: ``BoundDecoding.config``) that
    ``generate`` would apply to the logits before its argmax and slot decoding does not (suppressed tokens, n-gram
    bans, ...)."""
    changes = [f"{name}={getattr(config, name)!r}" for name, neutral in _NEUTRAL.items()
               if getattr(config, name, None) not in (None, *neutral)]
    if config.do_sample or (config.num_beams or 1) > 1:
        changes.append("sampling or beam search")
    return changes


def repetition_penalty(config: GenerationConfig) -> float | None:
    """The repetition penalty ``generate`` would apply (Qwen2-VL-Instruct ships 1.05), or None."""
    penalty = config.repetition_penalty
    return None if penalty in (None, 1.0) else float(penalty)


class PrefixSource(Protocol):
    def take(self) -> tuple[Cache, int]:
        """The prefix's keys and values (its first row is used) and the offset of text positions after its images
        (Qwen2-VL's M-RoPE; 0 elsewhere), taken once per prompt when the prompt takes a slot."""


@dataclass(frozen=True)
class Prompt:
    """One prompt to answer: where its computed prefix comes from, and what follows the prefix."""

    source: PrefixSource
    length: int  # positions the prefix holds (image tokens expanded)
    tail: Sequence[int]  # prompt tokens after the prefix, but the last
    last: int  # the prompt's last token: the first token its slot's step feeds
    cross: torch.Tensor | None = None  # Mllama: the prefix's last cross-attention mask row, [1, 1, images, tiles]
    prefix_ids: torch.Tensor | None = None  # the prefix's token ids (images expanded): a repetition penalty's


class SlotDecoder:
    """Greedy answers to many prompts in ``slots`` rows at once, each row refilled when its answer ends."""

    def __init__(self, model: torch.nn.Module, cache_argument: str, slots: int, max_new_tokens: int,
                 stop_ids: Sequence[int], pad_id: int, keeps_last_logits: bool,
                 repetition_penalty: float | None = None) -> None:
        self.model, self.cache_argument, self.slots = model, cache_argument, slots
        self.penalty = repetition_penalty
        self.max_new_tokens, self.stop_ids, self.pad_id = max_new_tokens, set(stop_ids), pad_id
        self.keep = {"logits_to_keep": 1} if keeps_last_logits else {}
        text_config = model.config.get_text_config(decoder=True)
        self.cross_layers = set(getattr(text_config, "cross_attention_layers", None) or ())
        self.device = next(model.parameters()).device

    def _capacity(self, prompts: Sequence[Prompt]) -> int:
        # room for the longest sequence and as many steps again before the holes are compacted away
        return max(p.length + len(p.tail) for p in prompts) + 1 + 2 * self.max_new_tokens

    def unsupported(self, cache: Cache, prompts: Sequence[Prompt]) -> str | None:
        """Why ``prompts``, whose prefix caches are laid out as ``cache``, cannot be held in slots, or None: every
        self-attention layer must be a plain key/value pair (a sliding window counts as one when it spans the whole
        slot cache, as Mistral's 4096 in Idefics2 spans its prompts and answers)."""
        capacity = self._capacity(prompts)
        for number, layer in enumerate(cache.layers):
            if number in self.cross_layers or type(layer) is DynamicLayer:
                continue
            if isinstance(layer, DynamicSlidingWindowLayer) and layer.sliding_window >= capacity:
                continue
            return f"cache layer {number} is a {type(layer).__name__}"
        return None

    # ---- the decode loop -------------------------------------------------------------------------------------
    @torch.no_grad()
    def run(self, prompts: Sequence[Prompt]) -> list[torch.Tensor]:
        """Each prompt's new tokens (ending with its stop token, if it stopped), in the order given."""
        if not prompts:
            return []
        slots = min(self.slots, len(prompts))
        self.capacity = self._capacity(prompts)
        self.cache: Cache | None = None
        self.write = 0  # where the next step's keys and values go, in every row
        self.mask = torch.zeros(slots, self.capacity, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.tokens = torch.full((slots,), self.pad_id, dtype=torch.long, device=self.device)
        self.cross: torch.Tensor | None = None
        self.owner = [-1] * slots  # the prompt each slot answers, -1 when free
        self.seen: torch.Tensor | None = None  # with a repetition penalty: [slot, token] in the row's sequence
        self.arrived: dict[int, torch.Tensor] = {}  # a refilled slot's prompt ids, marked seen at its first step
        new: list[list[int]] = [[] for _ in prompts]
        queue = deque(range(len(prompts)))
        while True:
            free = [slot for slot, owner in enumerate(self.owner) if owner < 0]
            if free and queue:
                self._fill(free[:len(queue)], [queue.popleft() for _ in free[:len(queue)]], prompts)
            busy = [slot for slot, owner in enumerate(self.owner) if owner >= 0]
            if not busy:
                break
            if len(busy) < len(self.owner):  # nothing left to start in the free rows
                self._keep(busy)
            if self.write >= self.capacity:
                self._compact()
            chosen = self._step()
            for slot, token in enumerate(chosen.tolist()):
                answer = new[self.owner[slot]]
                answer.append(token)
                if token in self.stop_ids or len(answer) >= self.max_new_tokens:
                    self.owner[slot] = -1
                    self.mask[slot] = 0
        self.cache = None
        return [torch.tensor(tokens, dtype=torch.long) for tokens in new]

    def _step(self) -> torch.Tensor:
        self.mask[:, self.write] = 1
        extra = {} if self.cross is None else {"cross_attention_mask": self.cross}
        logits = self.model(input_ids=self.tokens[:, None], attention_mask=self.mask,
                            position_ids=self.positions[:, None], use_cache=True,
                            **{self.cache_argument: self.cache}, **extra, **self.keep).logits[:, -1].float()
        self.write += 1
        self.positions += 1
        if self.penalty is not None:
            logits = self._penalised(logits)
        self.tokens = logits.argmax(dim=-1)
        if self.seen is not None:
            self.seen[torch.arange(len(self.owner), device=self.device), self.tokens] = True
        return self.tokens

    def _penalised(self, logits: torch.Tensor) -> torch.Tensor:
        """``generate``'s repetition penalty: the scores of tokens already in a row's sequence (prompt, image
        tokens, answer so far) divided by the penalty, or multiplied where negative."""
        if self.seen is None:
            self.seen = torch.zeros(len(self.owner), logits.shape[-1], dtype=torch.bool, device=self.device)
        for slot, ids in self.arrived.items():
            self.seen[slot] = False
            self.seen[slot, ids.to(self.device)] = True
        self.arrived.clear()
        penalised = torch.where(logits < 0, logits * self.penalty, logits / self.penalty)
        return torch.where(self.seen, penalised, logits)

    # ---- slots ---------------------------------------------------------------------------------------------
    def _fill(self, slots: list[int], indices: list[int], prompts: Sequence[Prompt]) -> None:
        """Start ``prompts[indices]`` in ``slots``: each group of equal prefix length runs its remaining prompt
        tokens together, then each row's keys and values are copied into its slot, ending at the write position."""
        by_length: dict[int, list[tuple[int, int]]] = {}
        for slot, index in zip(slots, indices, strict=True):
            by_length.setdefault(prompts[index].length, []).append((slot, index))
        for length, members in by_length.items():
            rows = [prompts[index] for _, index in members]
            taken = [row.source.take() for row in rows]
            deltas = [delta for _, delta in taken]
            layers, row_mask = self._run_tails(rows, [cache for cache, _ in taken], deltas, length)
            del taken
            if self.cache is None:
                self._allocate(layers)
            width = row_mask.shape[1]
            if self.write < width:  # the other rows get a hole before their next token
                self._move_write(width)
            for row, (slot, index) in enumerate(members):
                prompt, delta = prompts[index], deltas[row]
                for number, (keys, values) in enumerate(layers):
                    target = self.cache.layers[number]
                    if number in self.cross_layers:
                        target.keys[slot], target.values[slot] = keys[row], values[row]
                    else:
                        target.keys[slot, :, self.write - width:self.write] = keys[row, :, :width]
                        target.values[slot, :, self.write - width:self.write] = values[row, :, :width]
                self.mask[slot] = 0
                self.mask[slot, self.write - width:self.write] = row_mask[row]
                self.positions[slot] = length + len(prompt.tail) + delta
                self.tokens[slot] = prompt.last
                if self.penalty is not None:
                    if prompt.prefix_ids is None:
                        raise ValueError("a repetition penalty needs each prompt's prefix_ids")
                    self.arrived[slot] = torch.cat([prompt.prefix_ids.reshape(-1).cpu(),
                                                    torch.tensor([*prompt.tail, prompt.last], dtype=torch.long)])
                if prompt.cross is not None:
                    if self.cross is None:
                        self.cross = prompt.cross.new_zeros((len(self.owner), *prompt.cross.shape[1:]))
                    self.cross[slot] = prompt.cross[0].to(self.device)
                self.owner[slot] = index

    def _run_tails(self, rows: Sequence[Prompt], caches: Sequence[Cache], deltas: Sequence[int], length: int
                   ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """The rows' keys and values per layer after their remaining prompt tokens (right-padded) ran on their
        stacked prefixes (``caches``), and which positions are real (1) or padding (0)."""
        stacked = [(torch.cat([cache.layers[n].keys[:1] for cache in caches]),
                    torch.cat([cache.layers[n].values[:1] for cache in caches]))
                   for n in range(len(caches[0].layers))]
        tails = [list(row.tail) for row in rows]
        width = max(len(tail) for tail in tails)
        real = torch.tensor([[1] * len(tail) + [0] * (width - len(tail)) for tail in tails], dtype=torch.long)
        row_mask = torch.cat([torch.ones(len(rows), length, dtype=torch.long), real], dim=1).to(self.device)
        if not width:
            return stacked, row_mask
        cache = Cache(layers=[DynamicLayer() for _ in stacked])
        for layer, (keys, values) in zip(cache.layers, stacked, strict=True):
            layer.lazy_initialization(keys, values)
            layer.keys, layer.values = keys, values
        ids = torch.tensor([tail + [self.pad_id] * (width - len(tail)) for tail in tails], dtype=torch.long)
        offsets = torch.tensor([length + delta for delta in deltas], dtype=torch.long)
        extra = {}
        if rows[0].cross is not None:
            extra["cross_attention_mask"] = torch.cat([row.cross for row in rows]).expand(-1, width, -1, -1)
        self.model(input_ids=ids.to(self.device), position_ids=(offsets[:, None] + torch.arange(width)).to(self.device),
                   use_cache=True, **{self.cache_argument: cache}, **{k: v.to(self.device) for k, v in extra.items()},
                   **self.keep)
        layers = []
        for number, layer in enumerate(cache.layers):
            if number in self.cross_layers:
                layers.append((layer.keys, layer.values))
            else:
                layers.append((layer.keys[:, :, :length + width], layer.values[:, :, :length + width]))
        return layers, row_mask

    def _allocate(self, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """The batch's cache: a preallocated key/value pair per self-attention layer, each row's image states per
        cross-attention layer."""
        slots = len(self.owner)
        built = []
        for number, (keys, values) in enumerate(layers):
            shape = (slots, *keys.shape[1:])
            if number in self.cross_layers:
                layer = DynamicLayer()
                layer.lazy_initialization(keys, values)
                layer.keys = keys.new_zeros(shape)
                layer.values = values.new_zeros((slots, *values.shape[1:]))
            else:
                layer = StaticLayer(max_cache_len=self.capacity)
                layer.lazy_initialization(keys.new_empty(shape), values.new_empty((slots, *values.shape[1:])))
            built.append(layer)
        self.cache = Cache(layers=built)

    def _self_layers(self) -> list[StaticLayer]:
        return [layer for number, layer in enumerate(self.cache.layers) if number not in self.cross_layers]

    def _move_write(self, write: int) -> None:
        self.write = write
        for layer in self._self_layers():
            layer.cumulative_length.fill_(write)

    def _keep(self, slots: list[int]) -> None:
        """Only ``slots`` stay in the batch (no prompt is left to take a finished row's place)."""
        index = torch.tensor(slots, device=self.device)
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys.index_select(0, index), layer.values.index_select(0, index)
        self.mask, self.positions, self.tokens = self.mask[index], self.positions[index], self.tokens[index]
        if self.seen is not None:
            self.seen = self.seen[index]
        renumbered = {old: new for new, old in enumerate(slots)}
        self.arrived = {renumbered[slot]: ids for slot, ids in self.arrived.items() if slot in renumbered}
        if self.cross is not None:
            self.cross = self.cross[index]
        self.owner = [self.owner[slot] for slot in slots]

    def _compact(self) -> None:
        """Move every row's keys and values to end where the longest row's end, dropping the holes before them."""
        counts = self.mask.sum(dim=1)
        end = int(counts.max())
        # right-aligned: row r's real positions in order, after end - counts[r] padding entries (pointing at 0)
        rank = torch.arange(end, device=self.device)[None, :] - (end - counts)[:, None]
        order = torch.argsort(1 - self.mask, dim=1, stable=True)[:, :end]  # real positions first, in order
        index = torch.where(rank >= 0, order.gather(1, rank.clamp(min=0)), torch.zeros_like(rank))
        for layer in self._self_layers():
            for name in ("keys", "values"):
                tensor = getattr(layer, name)
                moved = tensor.gather(2, index[:, None, :, None].expand(-1, tensor.shape[1], -1, tensor.shape[3]))
                tensor[:, :, :end] = moved
                tensor[:, :, end:] = 0
        columns = torch.arange(self.capacity, device=self.device)[None, :]
        self.mask = ((columns < end) & (columns >= (end - counts)[:, None])).long()
        self._move_write(end)

