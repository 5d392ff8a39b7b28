"""Hidden states of named layers, caught by forward hooks during the step's one forward pass (no second model).

A method that reads representations (RMU's steering of a layer's output, activation statistics) names the layers
by their path under the language model (``layers.7``); the engine finds them in the loaded model (under peft's
wrapping too), captures each layer's output for the policy and, with the adapter disabled, for the reference, and
hands them to the loss per stream with the masks that say which positions are tokens and which are answers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

from unlearning.data.collator import IGNORE_INDEX
from unlearning.inference.scoring import AnswerLogits, forward_answer_logits


@dataclass
class HiddenStates:
    """One layer's output for a batch's rows: ``values`` (B, T, D); ``attention`` (B, T), True on the sequence's
    tokens (image tokens included) and False on padding; ``answer`` (B, T), True on the scored tokens."""

    values: torch.Tensor
    attention: torch.Tensor
    answer: torch.Tensor

    def rows_between(self, start: int, end: int) -> HiddenStates:
        return HiddenStates(self.values[start:end], self.attention[start:end], self.answer[start:end])

    def positions(self, which: str = "attention") -> torch.Tensor:
        """The states at the chosen positions, flattened over rows: (N, D) (``attention``: every token;
        ``answer``: the scored tokens)."""
        if which not in ("attention", "answer"):
            raise ValueError(f"positions are 'attention' or 'answer', got {which!r}")
        mask = self.attention if which == "attention" else self.answer
        return self.values[mask]


def layer_paths(language_model: Sequence[str], layers: Sequence[str]) -> list[str]:
    """Full module paths of layers named under the language model (its first prefix in the model config)."""
    if not language_model:
        raise ValueError("the model config names no language_model module prefix; layers cannot be located")
    return [f"{language_model[0]}.{layer}" for layer in layers]


def find_modules(model: torch.nn.Module, paths: Sequence[str]) -> dict[str, torch.nn.Module]:
    """Each path's module: the one whose name is the path or ends with ``.<path>`` (peft prefixes its own), one
    and only one; an error names the path and a few module names near it."""
    named = dict(model.named_modules())
    found = {}
    for path in paths:
        matches = [name for name in named if name == path or name.endswith(f".{path}")]
        if len(matches) != 1:
            near = [name for name in named if path.rsplit(".", 1)[-1] in name.rsplit(".", 1)[-1]][:5]
            raise ValueError(f"layer {path!r}: {'no' if not matches else len(matches)} modules of the model match "
                             f"(e.g. {near or list(named)[:3]})")
        found[path] = named[matches[0]]
    return found


@contextlib.contextmanager
def capture(model: torch.nn.Module, paths: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, each forward pass of ``model`` stores each path's output (the first element of a tuple
    output) under its path; the hooks are removed on leaving."""
    out: dict[str, torch.Tensor] = {}
    handles = []
    for path, module in find_modules(model, paths).items():
        def hook(module: torch.nn.Module, args: object, output: object, path: str = path) -> None:
            out[path] = output[0] if isinstance(output, tuple) else output  # type: ignore[index]
        handles.append(module.register_forward_hook(hook))
    try:
        yield out
    finally:
        for handle in handles:
            handle.remove()


def hidden_states(captured: Mapping[str, torch.Tensor], batch: dict) -> dict[str, HiddenStates]:
    """Captured outputs with the batch's token and answer masks. Image tokens a processor expands inside the
    model (none of the supported ones: their placeholders are expanded in ``input_ids``) would misalign: refused."""
    attention = batch["inputs"]["attention_mask"].bool()
    labels = batch["labels"]
    out = {}
    for path, values in captured.items():
        if values.shape[:2] != attention.shape:
            raise ValueError(f"layer {path!r} returned states of shape {tuple(values.shape)}; the batch's tokens are "
                             f"{tuple(attention.shape)}")
        out[path] = HiddenStates(values, attention.to(values.device), (labels != IGNORE_INDEX).to(values.device))
    return out


def forward_with_states(net: torch.nn.Module, batch: dict, language_model: Sequence[str], layers: Sequence[str],
                        keep_full: bool = False) -> tuple[AnswerLogits, dict[str, HiddenStates]]:
    """One forward pass: the batch's answer logits and the outputs of ``layers`` (names under the language model),
    by name; no hooks when no layer is asked for."""
    if not layers:
        return forward_answer_logits(net, batch, keep_full), {}
    paths = dict(zip(layer_paths(language_model, layers), layers, strict=True))
    with capture(net, list(paths)) as captured:
        answer = forward_answer_logits(net, batch, keep_full)
    return answer, {paths[path]: state for path, state in hidden_states(captured, batch).items()}
