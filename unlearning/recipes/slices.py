"""Typed slices of a recipe's config: each helper receives only the section it needs, checked before any model or
data loads, and a bad value is an error naming the setting (``model.dtype``, ``lora.r``, ``save_every``, ...).

A recipe reads its config once into these (``FinetuneConfig``, ``ForgetConfig``, ``EvalConfig``) after its compat
switches have set their values; the run's identity is still taken over the whole resolved config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from unlearning.benchmarks import STARTS_FROM
from unlearning.data.collator import LABEL_SCOPES, OriginalPrompt
from unlearning.data.pixel_cache import PIXEL_CACHE_MB
from unlearning.models.loading import LORA_INIT, LORA_MATCH, PARTS
from unlearning.runs.trackers import tracker_names
from unlearning.training.trainer import TrainSettings

DTYPES = ("float32", "float16", "bfloat16")
MODALITIES = ("multimodal", "unimodal")
PASSES = ("joint", "sequential")


class SettingError(ValueError):
    """A config value that cannot be used; the message names the setting."""


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


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
    alpha: int | float
    dropout: int | float
    parts: Mapping[str, bool]
    match: str = "path"
    init: str = "default"  # peft's LoRA init, or gaussian (MLLMU-Bench's)

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
        return cls(r, alpha, dropout, dict(tune),  # as given: peft saves them in adapter_config.json
                   _choice(cfg.get("lora_match", "path"), "lora_match", LORA_MATCH),
                   _choice(lora.get("init", "default"), "lora.init", tuple(LORA_INIT)))


@dataclass(frozen=True)
class PromptSlice:
    """How examples become model inputs: the system prompt, which tokens are labels, an original's prompt and
    label rule (compat), and how many processed images are remembered."""

    system_prompt: str | None
    label_scope: str = "answer"
    original_prompt: Mapping[str, Any] | None = None
    pixel_cache_mb: int = PIXEL_CACHE_MB
    append_eos: bool = True  # EOS after a turn the template ends without one (false: MLLMU-Bench's LLaVA text)

    @classmethod
    def from_config(cls, cfg: Any) -> PromptSlice:
        system = cfg.get("system_prompt")
        if system is not None and not isinstance(system, str):
            raise SettingError(f"system_prompt must be text or null, got {system!r}")
        original = _plain(cfg.get("original_prompt")) or None
        if original is not None:
            try:
                OriginalPrompt(**original)
            except (TypeError, ValueError) as error:
                raise SettingError(f"original_prompt: {error}") from error
        return cls(system, _choice(cfg.get("label_scope", "answer"), "label_scope", LABEL_SCOPES), original,
                   _whole(cfg.get("pixel_cache_mb", PIXEL_CACHE_MB), "pixel_cache_mb"),
                   _flag(cfg.get("append_eos", True), "append_eos"))


@dataclass(frozen=True)
class RunSlice:
    """Where a training run goes and what it keeps: ``run_root``, ``run_name``/``run_label``, ``overwrite``,
    ``save_every``, ``report_to``, ``resume``."""

    root: str
    label: str
    name: str | None = None
    overwrite: bool = False
    save_every: int | None = None
    report_to: tuple[str, ...] = ()
    resume: bool = True  # with save_every: keep the training state, and go on from an interrupted attempt's

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
                   _flag(cfg.get("overwrite", False), "overwrite"), save_every, report_to,
                   _flag(cfg.get("resume", True), "resume"))


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


@dataclass(frozen=True)
class BenchmarkSlice:
    """``benchmark.*`` and ``data_dir``: which benchmark, its data (the built-in folder is generated on first use),
    how it is read, and what forgetting starts from."""

    name: str
    data_dir: str
    builtin_dir: str
    options: Mapping[str, Any]
    synthetic: Mapping[str, Any]
    starts_from: str
    stage_one_split: str | None

    @classmethod
    def from_config(cls, cfg: Any) -> BenchmarkSlice:
        bench = cfg.benchmark
        return cls(str(bench.name), str(cfg.data_dir), str(bench.builtin_dir), _plain(bench.options) or {},
                   _plain(bench.synthetic) or {}, _choice(bench.starts_from, "benchmark.starts_from", STARTS_FROM),
                   bench.get("stage_one_split"))


def accumulation(effective_batch: Any, batch_size: int, grad_accum: int,
                 processes: int | None = None) -> int:
    """Gradient accumulation steps: ``grad_accum``, or, when the recipe states ``effective_batch`` (sequences per
    optimiser step), what gives it with ``batch_size`` per process on this launch (``WORLD_SIZE`` processes), so
    one process and eight optimise alike; a batch that does not divide it is an error naming the three."""
    if effective_batch is None:
        return grad_accum
    effective_batch = _whole(effective_batch, "effective_batch", 1)
    processes = processes or int(os.environ.get("WORLD_SIZE", "1"))
    per_step = batch_size * processes
    if effective_batch % per_step:
        raise SettingError(f"effective_batch {effective_batch} is not a multiple of batch_size {batch_size} x "
                           f"{processes} processes; change batch_size or effective_batch (null: grad_accum as given)")
    return effective_batch // per_step


@dataclass(frozen=True)
class TrainingConfig:
    """A finetune or forget run's config, read into its slices and checked before anything loads; ``resolved`` is
    the whole config (the run's identity, ``config.yaml``)."""

    benchmark: BenchmarkSlice
    model: ModelSlice
    tune: TuneSlice
    prompt: PromptSlice
    run: RunSlice
    train: TrainSettings
    seed: int
    resolved: Mapping[str, Any]
    split: str | None = None  # finetune: the split trained on
    forget: ForgetSlice | None = None  # forget: what is forgotten, from where

    @classmethod
    def from_config(cls, cfg: Any, kind: str) -> TrainingConfig:
        """``kind``: finetune or forget; every slice is read here, so the first bad setting stops the run here."""
        try:
            train = TrainSettings(
                lr=cfg.lr, epochs=cfg.epochs, batch_size=cfg.batch_size,
                grad_accum=accumulation(cfg.get("effective_batch"), cfg.batch_size, cfg.grad_accum),
                weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio, scheduler=cfg.scheduler,
                max_grad_norm=cfg.max_grad_norm, max_steps=cfg.max_steps, log_every=cfg.log_every, seed=cfg.seed,
                shuffle=cfg.shuffle, decay_exempt=cfg.decay_exempt, num_workers=cfg.get("num_workers", 0),
                adam_eps=cfg.get("adam_eps", 1e-8), schedule_accum=cfg.get("schedule_accum"))
        except ValueError as error:
            raise SettingError(str(error)) from error
        return cls(BenchmarkSlice.from_config(cfg), ModelSlice.from_config(cfg.model), TuneSlice.from_config(cfg),
                   PromptSlice.from_config(cfg), RunSlice.from_config(cfg), train, _whole(cfg.seed, "seed"),
                   _plain(cfg), split=str(cfg.split) if kind == "finetune" else None,
                   forget=ForgetSlice.from_config(cfg) if kind == "forget" else None)

    @property
    def group_dir(self) -> Path:
        """Where this benchmark/model's runs live."""
        return Path(self.run.root) / self.benchmark.name / self.model.name


@dataclass(frozen=True)
class EvalConfig:
    """An evaluation command's config in its slices (``eval.*`` itself is ``EvalSettings``): what is evaluated
    (``run_dirs``, or ``model_path`` with an optional ``adapter_path``; ``steps``; the ``reference_run``), on which
    splits, with which general evaluations, and where the numbers also go (``report_to``)."""

    benchmark: BenchmarkSlice
    model: ModelSlice
    prompt: PromptSlice
    run_root: str
    forget_split: str
    retain_split: str | None
    reference_split: str | None
    run_dirs: tuple[str, ...] | None
    model_path: str | None
    adapter_path: str | None
    reference_run: str | None
    steps: str | tuple[int, ...] | None
    eval_options: Mapping[str, Any]
    general_evals: tuple[str, ...]
    general: Mapping[str, Any] | None
    merge_adapters: bool
    report_to: tuple[str, ...]
    resolved: Mapping[str, Any]
    eval_dtype: str = "float32"  # what models are evaluated in (``eval.dtype``; null: the model's dtype)

    @classmethod
    def from_config(cls, cfg: Any) -> EvalConfig:
        steps = _plain(cfg.get("steps"))
        if steps is not None and steps != "all":
            if not isinstance(steps, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in steps):
                raise SettingError(f"steps must be null, all or a list of optimiser steps, got {steps!r}")
            steps = tuple(steps)
        if cfg.get("adapter_path") and not cfg.get("model_path"):
            raise SettingError("adapter_path goes with model_path (the model the adapter was trained on)")
        try:
            report_to = tracker_names(_plain(cfg.get("report_to")))
        except ValueError as error:
            raise SettingError(str(error)) from error
        run_dirs = _plain(cfg.get("run_dirs"))
        optional = {key: None if cfg.get(key) is None else str(cfg.get(key))
                    for key in ("model_path", "adapter_path", "reference_run")}
        return cls(BenchmarkSlice.from_config(cfg), ModelSlice.from_config(cfg.model), PromptSlice.from_config(cfg),
                   str(cfg.run_root), str(cfg.forget_split),
                   None if cfg.get("retain_split") is None else str(cfg.retain_split),
                   cfg.benchmark.get("reference_split"), None if not run_dirs else tuple(map(str, run_dirs)),
                   optional["model_path"], optional["adapter_path"], optional["reference_run"], steps,
                   _plain(cfg.benchmark.get("eval_options")) or {}, tuple(_plain(cfg.benchmark.general_evals) or ()),
                   _plain(cfg.eval.get("general")), _flag(cfg.eval.get("merge_adapters", True), "eval.merge_adapters"),
                   report_to, _plain(cfg),
                   _choice(cfg.eval.get("dtype") or cfg.model.get("dtype"), "eval.dtype", DTYPES))

    @property
    def group_dir(self) -> Path:
        return Path(self.run_root) / self.benchmark.name / self.model.name
