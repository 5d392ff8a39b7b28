"""A method's preparation pass: statistics computed once over its streams before training (Fisher diagonals,
activation statistics), and the generic pieces that use them (trained modules, gradient masks, an edit).

The pass streams over each stream's examples in batches (progress shown), so it never holds more than one batch's
activations and whatever running sums the method keeps. Its result (tensors by name) is cached under the benchmark
and model's folder by ``preparation_key``: the hash of the run's identity without the settings that act only after
the pass (the optimiser's, and the method settings it does not list in ``preparation_settings``), so a resumed run,
or a run that differs only in its learning rate or a mask threshold, reuses it, and a run on changed data, model or
LoRA computes its own; a copy goes into the run folder with the checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from unlearning.data.collator import ChatCollator
from unlearning.data.examples import Example
from unlearning.inference.scoring import AnswerLogits
from unlearning.runs.identity import identity_hash
from unlearning.runs.io import atomic_write_dir
from unlearning.training.hidden_states import HiddenStates, forward_with_states

log = logging.getLogger(__name__)

PREPARED = ".prepared"  # beside the runs of a benchmark/model: statistics by identity hash
STATISTICS_FILE = "statistics.safetensors"
# Identity keys that shape only the optimisation after the pass (which examples a batch holds, the model it starts
# from, its LoRA and its seed stay: they change the gradients and activations the pass measures)
AFTER_PREPARATION = ("lr", "epochs", "max_steps", "grad_accum", "effective_batch", "schedule_accum", "weight_decay",
                     "adam_eps", "warmup_ratio", "scheduler", "max_grad_norm", "shuffle", "decay_exempt", "passes",
                     "reference_model")


def preparation_key(identity: Mapping[str, Any], method: Any) -> str:
    """The hash the method's statistics are cached under: the run's identity without ``AFTER_PREPARATION`` and,
    when the method lists them (``preparation_settings``), without its settings other than those; a method listing
    none keeps all of its settings (safe: recomputed whenever one changes)."""
    kept = {key: value for key, value in identity.items() if key not in AFTER_PREPARATION}
    listed = getattr(method, "preparation_settings", None)
    if listed is not None and isinstance(kept.get("method"), Mapping):
        kept["method"] = {key: value for key, value in kept["method"].items()
                          if key == "name" or key in tuple(listed)}
    return identity_hash(kept)


@dataclass
class Preparation:
    """What a method's ``prepare`` gets: the model being unlearned, its streams' examples, and a forward that
    scores a batch and catches named layers (paths under the language model, as ``hidden_layers``)."""

    model: torch.nn.Module
    collator: ChatCollator
    streams: Mapping[str, Sequence[Example]]
    batch_size: int
    accelerator: Accelerator
    language_model: Sequence[str] = ()

    def batches(self, stream: str) -> Iterator[dict[str, Any]]:
        """The stream's examples collated in batches, in order, with a progress bar."""
        if stream not in self.streams:
            raise KeyError(f"stream {stream!r} is not one the method declared (it has {', '.join(self.streams)})")
        examples = list(self.streams[stream])
        starts = range(0, len(examples), self.batch_size)
        bar = tqdm(starts, desc=f"prepare {stream}", disable=None if self.accelerator.is_local_main_process else True)
        for start in bar:
            yield self.collator(examples[start:start + self.batch_size])

    def forward(self, batch: dict[str, Any], layers: Sequence[str] = ()
                ) -> tuple[AnswerLogits, dict[str, HiddenStates]]:
        """The batch's answer logits and the outputs of ``layers`` (gradients flow unless the caller disables
        them)."""
        return forward_with_states(self.model, batch, self.language_model, layers)


def prepared_statistics(method: Any, preparation: Preparation, cache_dir: Path, key: str
                        ) -> dict[str, torch.Tensor]:
    """The method's statistics: read from ``cache_dir/<key>/`` when this identity computed them before, else
    computed by ``method.prepare`` and stored there (atomically, by the main process)."""
    folder = cache_dir / key
    if (folder / STATISTICS_FILE).is_file():
        log.info("reusing the preparation pass's statistics in %s", folder)
        return load_file(str(folder / STATISTICS_FILE))
    log.info("preparation pass over %s", ", ".join(preparation.streams))
    computed = method.prepare(preparation)
    statistics = {name: value.detach().float().cpu().contiguous() for name, value in computed.items()}
    if preparation.accelerator.is_main_process:
        atomic_write_dir(folder, lambda tmp: save_file(statistics, str(tmp / STATISTICS_FILE)))
    preparation.accelerator.wait_for_everyone()
    return statistics


def restrict_training(model: torch.nn.Module, modules: Sequence[str]) -> int:
    """Freeze every trainable parameter outside the named modules (full paths, or their ends after a '.');
    returns the parameters left training, an error when none is."""
    left = 0
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        inside = any(f".{path}." in f".{name}" for path in modules)
        parameter.requires_grad_(inside)
        left += parameter.numel() if inside else 0
    if left == 0:
        raise ValueError(f"the method trains only {list(modules)}, and no trainable parameter lies there (check "
                         "lora targets: LoRA adds parameters only to the modules it targets)")
    return left


def gradient_masker(model: torch.nn.Module, masks: Mapping[str, torch.Tensor]) -> Callable[[torch.nn.Module], None]:
    """A callback multiplying each named parameter's gradient by its 0/1 mask before every optimiser step: masked
    entries get no gradient (with no weight decay they never move). Unknown names or shapes are errors."""
    parameters = dict(model.named_parameters())
    bound = []
    for name, mask in masks.items():
        if name not in parameters:
            raise ValueError(f"gradient mask for {name!r}: the model has no such parameter")
        parameter = parameters[name]
        if mask.shape != parameter.shape:
            raise ValueError(f"gradient mask for {name!r} has shape {tuple(mask.shape)}, the parameter "
                             f"{tuple(parameter.shape)}")
        bound.append((parameter, mask.to(device=parameter.device, dtype=parameter.dtype)))

    def apply(_: torch.nn.Module) -> None:
        for parameter, mask in bound:
            if parameter.grad is not None:
                parameter.grad.mul_(mask)

    return apply
