"""Forget objectives by name. Every module of this package is imported (and registers its method) on first use;
``build_method`` turns a method config into an object: a registered method with its parameters, or a
composition, a base method plus extra loss terms (``base`` + ``terms`` in the YAML)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from unlearning.data.streams import StreamUse, merge_uses
from unlearning.training.methods.base import METHODS, ForgetMethod, Progress, StreamScores
from unlearning.training.methods.terms import TERMS, Term, parse_term

__all__ = ["METHODS", "TERMS", "ComposedMethod", "ForgetMethod", "Progress", "StreamScores", "build_method"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


@dataclass
class ComposedMethod:
    """A base method (or none) plus weighted loss terms on named streams."""

    name: str
    base: ForgetMethod | None
    terms: tuple[Term, ...]

    @property
    def needs_reference(self) -> bool:
        return bool(self.base and self.base.needs_reference) or any(
            TERMS.get(term.loss).needs_reference for term in self.terms)

    @property
    def needs_full_logits(self) -> bool:
        return bool(self.base and getattr(self.base, "needs_full_logits", False))

    @property
    def reference_streams(self) -> tuple[str, ...] | None:
        """The base's reference streams and those of the terms scored against the reference; None (every
        stream) when the base needs a reference without saying on which streams."""
        names: list[str] = []
        if self.base and self.base.needs_reference:
            base_streams = getattr(self.base, "reference_streams", None)
            if base_streams is None:
                return None
            names += base_streams
        names += [term.stream for term in self.terms if TERMS.get(term.loss).needs_reference]
        return tuple(dict.fromkeys(names))

    def streams(self) -> tuple[StreamUse, ...]:
        base = self.base.streams() if self.base else ()
        return merge_uses([*base, *(term.use for term in self.terms)], self.name)

    def loss(self, policy: StreamScores, reference: StreamScores | None, progress: Progress
             ) -> tuple[torch.Tensor, dict[str, float]]:
        total, logs = self.base.loss(policy, reference, progress) if self.base else (None, {})
        for term in self.terms:
            weight, value = term.weight.at(progress), term.value(policy, reference)
            total = weight * value if total is None else total + weight * value
            logs[f"{term.loss}_{term.stream}"] = value.item()
            if term.weight.end is not None:
                logs[f"w_{term.loss}_{term.stream}"] = weight
        return total, logs


def build_method(config: Mapping[str, Any]) -> ForgetMethod:
    """``{"name": "npo", "beta": 0.1}`` -> NPO(beta=0.1); ``{"name": "ga_pd", "base": {"name": "ga"}, "terms":
    [...]}`` -> GA plus the terms (``params`` holds named values the YAML interpolates into them, so that
    ``method.params.pd_weight=0.5`` sets a coefficient). A term weighted 0 throughout is left out, so its stream
    is neither read nor scored. Unknown keys are an error naming the method."""
    params = dict(config)
    name = params.pop("name")
    if "base" in params or "terms" in params:
        base, terms = params.pop("base", None), params.pop("terms", None) or []
        params.pop("params", None)  # named values the YAML interpolates into its base and terms
        if params:
            raise ValueError(f"method {name!r}: a composed method has only name, params, base and terms; got "
                             f"{sorted(params)}")
        parsed = [parse_term(term, name, i) for i, term in enumerate(terms)]
        parsed = [term for term in parsed if not term.weight.always_zero]  # its stream is not even read
        if base is None and not parsed:
            raise ValueError(f"method {name!r}: a composed method needs a base method or terms (of nonzero weight)")
        return ComposedMethod(name, build_method(base) if base else None, tuple(parsed))
    cls = METHODS.get(name)
    try:
        return cls(**params)
    except TypeError as error:
        raise ValueError(f"method {name!r}: {error}") from error
