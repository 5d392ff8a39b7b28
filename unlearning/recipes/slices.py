"""Typed slices of a recipe's config: each helper receives only the section it needs, checked before any model or
data loads, and a bad value is an error naming the setting (``model.dtype``, ``lora.r``, ``save_every``, ...).

A recipe reads its config once into these (``FinetuneConfig``, ``ForgetConfig``, ``EvalConfig``) after its compat
switches have set their values; the run's identity is still taken over the whole resolved config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from unlearning.data.collator import LABEL_SCOPES
from unlearning.data.pixel_cache import PIXEL_CACHE_MB
from unlearning.models.loading import LORA_MATCH, PARTS
from unlearning.runs.trackers import tracker_names

DTYPES = ("float32", "float16", "bfloat16")
MODALITIES = ("multimodal", "unimodal")
PASSES = ("joint", "sequential")


class SettingError(ValueError):
    """A config value that cannot be used; the message names the setting."""


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _whole(value: Any, name: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SettingError(f"{name} must be a whole number >= {low}, got {value!r}")
    return value


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise SettingError(f"{name} must be true or false, got {value!r}")
    return value


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SettingError(f"{name} must be one of {choices}, got {value!r}")
    return value


@dataclass(frozen=True)
class ModelSlice:
    """``model.*``: which model, how it loads, and the module paths of its parts."""

    name: str
    path: str
    dtype: str
    attn_implementation: str
    modules: Mapping[str, tuple[str, ...]]
    lora_targets: tuple[str, ...]
    tiny: Mapping[str, Any] | None = None
    processor_class: str | None = None
    image_processor_overrides: Mapping[str, Any] = field(default_factory=dict)
    chat_template: str | None = None

    @classmethod
    def from_config(cls, node: Any) -> ModelSlice:
        model = _plain(node)
        _choice(model.get("dtype"), "model.dtype", DTYPES)
        modules = model.get("modules") or {}
        if set(modules) != set(PARTS):
            raise SettingError(f"model.modules must name the module paths of {PARTS}, got {sorted(modules)}")
        if not model.get("lora_targets") or not all(isinstance(t, str) for t in model["lora_targets"]):
            raise SettingError(f"model.lora_targets must list leaf names, got {model.get('lora_targets')!r}")
        return cls(name=str(model["name"]), path=str(model["path"]), dtype=model["dtype"],
                   attn_implementation=str(model["attn_implementation"]),
                   modules={part: tuple(paths) for part, paths in modules.items()},
                   lora_targets=tuple(model["lora_targets"]), tiny=model.get("tiny"),
                   processor_class=model.get("processor_class"),
                   image_processor_overrides=model.get("image_processor_overrides") or {},
                   chat_template=model.get("chat_template"))


@dataclass(frozen=True)
class TuneSlice:
    """``lora.*``, ``tune.*`` and ``lora_match``: what trains and how (``lora.r=0``: the tuned parts in full)."""

    r: int
    alpha: float
    dropout: float
    parts: Mapping[str, bool]
    match: str = "path"

    @classmethod
    def from_config(cls, cfg: Any) -> TuneSlice:
        lora, tune = _plain(cfg.lora), _plain(cfg.tune)
        r = _whole(lora.get("r"), "lora.r")
        alpha, dropout = lora.get("alpha"), lora.get("dropout")
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or alpha <= 0:
            raise SettingError(f"lora.alpha must be a positive number, got {alpha!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
            raise SettingError(f"lora.dropout must be in [0, 1), got {dropout!r}")
        unknown = set(tune) - set(PARTS)
        if unknown:
            raise SettingError(f"tune has unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
        for part, value in tune.items():
            _flag(value, f"tune.{part}")
        if not any(tune.values()):
            raise SettingError("tune trains nothing: set tune.language_model, tune.projector or tune.vision_tower")
        return cls(r, float(alpha), float(dropout), dict(tune),
                   _choice(cfg.get("lora_match", "path"), "lora_match", LORA_MATCH))


@dataclass(frozen=True)
class PromptSlice:
    """How examples become model inputs: the system prompt, which tokens are labels, an original's prompt and
    label rule (compat), and how many processed images are remembered."""

    system_prompt: str | None
    label_scope: str = "answer"
    original_prompt: Mapping[str, Any] | None = None
    pixel_cache_mb: int = PIXEL_CACHE_MB

    @classmethod
    def from_config(cls, cfg: Any) -> PromptSlice:
        system = cfg.get("system_prompt")
        if system is not None and not isinstance(system, str):
            raise SettingError(f"system_prompt must be text or null, got {system!r}")
        return cls(system, _choice(cfg.get("label_scope", "answer"), "label_scope", LABEL_SCOPES),
                   _plain(cfg.get("original_prompt")) or None,
                   _whole(cfg.get("pixel_cache_mb", PIXEL_CACHE_MB), "pixel_cache_mb"))


@dataclass(frozen=True)
class RunSlice:
    """Where a training run goes and what it keeps: ``run_root``, ``run_name``/``run_label``, ``overwrite``,
    ``save_every``, ``report_to``."""

    root: str
    label: str
    name: str | None = None
    overwrite: bool = False
    save_every: int | None = None
    report_to: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: Any) -> RunSlice:
        save_every = cfg.get("save_every")
        if save_every is not None:
            _whole(save_every, "save_every", 1)
        try:
            report_to = tracker_names(_plain(cfg.get("report_to")))
        except ValueError as error:
            raise SettingError(str(error)) from error
        name = cfg.get("run_name")
        return cls(str(cfg.run_root), str(cfg.run_label), None if name is None else str(name),
                   _flag(cfg.get("overwrite", False), "overwrite"), save_every, report_to)


@dataclass(frozen=True)
class ForgetSlice:
    """What forgetting trains on and how batches are formed: ``forget_split``, ``forget_modality``, ``passes``,
    ``model_path`` (where it starts), ``reference_model`` (KL/NPO's reference when not the starting model)."""

    split: str
    modality: str = "multimodal"
    passes: str = "joint"
    model_path: str | None = None
    reference_model: str | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> ForgetSlice:
        return cls(str(cfg.forget_split), _choice(cfg.get("forget_modality", "multimodal"), "forget_modality",
                                                  MODALITIES),
                   _choice(cfg.get("passes", "joint"), "passes", PASSES),
                   None if cfg.get("model_path") is None else str(cfg.model_path),
                   None if cfg.get("reference_model") is None else str(cfg.reference_model))
