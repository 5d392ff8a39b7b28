"""How answers are generated, as one typed object from an evaluation's config to ``generate``.

``Decoding`` is the setting (``eval.decoding`` + ``eval.max_new_tokens``, or a benchmark's own); ``bind`` joins it
once with what the model and its collator add (the stop tokens, the pad token, the model's generation config,
e.g. Qwen2-VL-Instruct's repetition penalty) into a ``BoundDecoding``: the keyword arguments ``generate`` gets,
and the merged ``GenerationConfig`` slot decoding reads.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig


@dataclass(frozen=True)
class Decoding:
    """How answers are generated: greedy (the default), or sampled with ``temperature``/``top_p``, ``n`` samples
    per prompt, seeded per batch from ``seed`` and the batch's example uids (the same command gives the same
    samples; another batch size or process count draws others). ``num_beams`` > 1 is beam search (greedy only);
    ``length_penalty`` ranks its finished beams by summed log-probability / length ** penalty (None: the model's
    generation config, transformers' 1.0 unless it says otherwise; 0: by summed log-probability)."""

    max_new_tokens: int
    sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    seed: int = 0
    num_beams: int = 1
    length_penalty: float | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"decoding max_new_tokens must be positive, got {self.max_new_tokens}")
        if self.n < 1 or (self.n > 1 and not self.sample):
            raise ValueError(f"decoding n must be 1 for greedy decoding and at least 1 when sampling, got {self.n}")
        if self.sample and (self.temperature <= 0 or not 0 < self.top_p <= 1):
            raise ValueError(f"sampling needs temperature > 0 and 0 < top_p <= 1, got {self.temperature}, "
                             f"{self.top_p}")
        if self.num_beams < 1 or (self.num_beams > 1 and self.sample):
            raise ValueError(f"decoding num_beams must be >= 1, and 1 when sampling, got {self.num_beams}")
        if self.length_penalty is not None and self.num_beams == 1:
            raise ValueError("decoding length_penalty applies to beam search only (num_beams > 1)")

    @property
    def greedy(self) -> bool:
        return not self.sample and self.num_beams == 1

    def bind(self, model: torch.nn.Module, stop_ids: Sequence[int], pad_id: int | None) -> BoundDecoding:
        """This decoding for ``model``: stopping at ``stop_ids``, padding with ``pad_id``."""
        return BoundDecoding(self, model, tuple(sorted(stop_ids)), pad_id)


@dataclass(frozen=True)
class BoundDecoding:
    """A decoding joined with a model: ``kwargs`` for ``generate``; ``config``, the model's generation config with
    those settings merged (built once)."""

    decoding: Decoding
    model: torch.nn.Module
    stop_ids: tuple[int, ...]
    pad_id: int | None

    @functools.cached_property
    def kwargs(self) -> dict[str, Any]:
        decoding = self.decoding
        sampling = ({"do_sample": True, "temperature": decoding.temperature, "top_p": decoding.top_p,
                     "num_return_sequences": decoding.n} if decoding.sample else {"do_sample": False})
        beams = {} if decoding.length_penalty is None else {"length_penalty": decoding.length_penalty}
        return {"max_new_tokens": decoding.max_new_tokens, "num_beams": decoding.num_beams,
                "eos_token_id": list(self.stop_ids), "pad_token_id": self.pad_id, **sampling, **beams}

    @functools.cached_property
    def config(self) -> GenerationConfig:
        return GenerationConfig.from_dict({**self.model.generation_config.to_dict(), **self.kwargs})
