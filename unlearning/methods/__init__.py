"""Forget objectives by name. Each module registers one method; ``build_method`` turns a config into it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from unlearning.methods import ga, gd, kl, npo, po  # noqa: F401  (registration)
from unlearning.methods.base import METHODS, ForgetMethod

__all__ = ["METHODS", "ForgetMethod", "build_method"]


def build_method(config: Mapping[str, Any]) -> ForgetMethod:
    """``{"name": "npo", "beta": 0.1}`` -> NPO(beta=0.1); unknown keys are an error naming the method."""
    params = dict(config)
    name = params.pop("name")
    cls = METHODS.get(name)
    try:
        return cls(**params)
    except TypeError as error:
        raise ValueError(f"method {name!r}: {error}") from error
