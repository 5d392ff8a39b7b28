"""Load any image-text-to-text model and its processor, choose what trains, and save/reload checkpoints strictly.

What trains is named by module path, never by leaf name, so "q_proj" in the vision tower is never adapted
by accident. With LoRA (``lora.r > 0``) the language model gets adapters and every other tuned part is a
peft ``modules_to_save`` copy, so disabling the adapters restores the exact pre-forgetting model: that is
the reference for KL and NPO, with no second copy of the weights.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, GenerationConfig

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PARTS = ("language_model", "projector", "vision_tower")


class CheckpointError(RuntimeError):
    """A checkpoint does not match the model it is loaded into."""


def torch_dtype(name: str) -> torch.dtype:
    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
    except KeyError:
        raise ValueError(f"model.dtype must be float32, float16 or bfloat16, got {name!r}") from None


def load_processor(
    path: str | Path,
    chat_template: str | None = None,
    processor_class: str | None = None,
    image_processor_overrides: Mapping[str, Any] | None = None,
) -> Any:
    """The checkpoint's own processor; ``chat_template`` only fills in for checkpoints that ship none.

    ``processor_class`` names a class from ``unlearning.models.processors`` for folders AutoProcessor cannot load;
    ``image_processor_overrides`` sets image-processor attributes (e.g. Idefics2's ``do_image_splitting``).
    """
    if processor_class:
        from unlearning.models.processors import PROCESSORS

        processor = PROCESSORS.get(processor_class).from_pretrained(str(path))
    else:
        processor = AutoProcessor.from_pretrained(str(path))
    if not hasattr(processor, "tokenizer"):
        raise ValueError(f"{path}: AutoProcessor returned {type(processor).__name__}, not a multimodal processor "
                         "(set model.processor_class)")
    for key, value in (image_processor_overrides or {}).items():
        if not hasattr(processor.image_processor, key):
            raise ValueError(f"model.image_processor_overrides.{key}: {type(processor.image_processor).__name__} "
                             "has no such setting")
        setattr(processor.image_processor, key, value)
    if getattr(processor, "chat_template", None) is None:
        if chat_template is None:
            raise ValueError(f"{path}: the processor has no chat template; set model.chat_template in its config")
        processor.chat_template = chat_template
    return processor


def load_model(path: str | Path, dtype: str = "float32", attn_implementation: str = "sdpa") -> torch.nn.Module:
    """The full model, loaded strictly: a checkpoint with a missing, unexpected or mis-shaped tensor is an
    error naming it (transformers would initialise a missing tensor at random and only warn)."""
    model, info = AutoModelForImageTextToText.from_pretrained(
        str(path), dtype=torch_dtype(dtype), attn_implementation=attn_implementation, output_loading_info=True
    )
    problems = {kind: sorted(str(k) for k in info.get(key) or ()) for kind, key in
                (("missing", "missing_keys"), ("unexpected", "unexpected_keys"), ("mis-shaped", "mismatched_keys"))}
    problems = {kind: keys for kind, keys in problems.items() if keys}
    if problems or info.get("error_msgs"):
        files = sorted(p.name for p in Path(path).glob("*.safetensors*")) if Path(path).is_dir() else []
        detail = "; ".join(f"{len(keys)} {kind} keys {keys[:3]}" for kind, keys in problems.items())
        errors = "; ".join(str(e)[:200] for e in info.get("error_msgs") or [])
        raise CheckpointError(f"{path} ({', '.join(files) or 'weights'}) does not match "
                              f"{type(model).__name__}: {detail or errors}")
    log.info("loaded %s from %s (%.1fM parameters, %s)", type(model).__name__, path,
             sum(map(_numel, model.parameters())) / 1e6, dtype)
    return model


def load_generation_config(path: str | Path) -> GenerationConfig | None:
    """The generation settings the model at ``path`` will carry (its ``generation_config.json``, else those derived
    from its config, as ``from_pretrained`` does), read without loading the weights."""
    try:
        return GenerationConfig.from_pretrained(str(path))
    except OSError:
        try:
            return GenerationConfig.from_model_config(AutoConfig.from_pretrained(str(path)))
        except OSError:
            return None


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def tuned_prefixes(modules: Mapping[str, Sequence[str]], tune: Mapping[str, bool]) -> dict[str, list[str]]:
    """Module-path prefixes of each tuned part, e.g. {'projector': ['model.multi_modal_projector']}."""
    unknown = set(tune) - set(PARTS)
    if unknown:
        raise ValueError(f"tune has unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    return {part: list(modules[part]) for part in PARTS if tune.get(part, False)}


def check_prefixes(model: torch.nn.Module, modules: Mapping[str, Sequence[str]]) -> None:
    """Every configured module path must exist, or a config written for another architecture trains nothing."""
    names = {name for name, _ in model.named_modules()}
    for part, prefixes in modules.items():
        for prefix in prefixes:
            if prefix not in names:
                raise ValueError(
                    f"model.modules.{part}: no module named {prefix!r} in {type(model).__name__}; "
                    f"top-level modules are {sorted({n.split('.')[0] for n in names if n})}"
                )


def _numel(parameter: torch.nn.Parameter) -> int:
    """A parameter's full size, also when DeepSpeed ZeRO-3 holds only this process's shard (``ds_numel``)."""
    return int(getattr(parameter, "ds_numel", parameter.numel()))


def freeze_all_but(model: torch.nn.Module, prefixes: Sequence[str]) -> int:
    """Full finetuning of the given parts; returns the number of trainable parameters."""
    count = 0
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(_under(name, prefixes))
        count += _numel(parameter) if parameter.requires_grad else 0
    if count == 0:
        raise ValueError(f"no parameter lies under {list(prefixes)}: nothing would train")
    return count


def lora_target_regex(language_model_prefixes: Sequence[str], leaf_names: Sequence[str]) -> str:
    """A full-path regex: only these leaf modules *inside the language model* get adapters."""
    roots = "|".join(re.escape(prefix) for prefix in language_model_prefixes)
    leaves = "|".join(re.escape(leaf) for leaf in leaf_names)
    return rf"(?:{roots})\..*\.(?:{leaves})"


LORA_MATCH = ("path", "leaf")
LORA_INIT = {"default": True, "gaussian": "gaussian"}  # peft's init_lora_weights: Kaiming-uniform A, or A ~ N(0, 1/r)


def apply_lora(
    model: torch.nn.Module,
    modules: Mapping[str, Sequence[str]],
    tune: Mapping[str, bool],
    r: int,
    alpha: int,
    dropout: float,
    target_leaves: Sequence[str],
    match: str = "path",
    init: str = "default",
) -> PeftModel:
    """LoRA on the language model; other tuned parts (projector, vision tower) fully trained via modules_to_save.

    ``match="leaf"`` is MLLMU-Bench's original: the leaf names matched anywhere in the model, so the vision tower's
    projections of the same names are adapted too. ``init``: peft's default (A Kaiming-uniform, B zero) or
    ``gaussian`` (A ~ N(0, 1/r), B zero: MLLMU-Bench's ``init_lora_weights="gaussian"``)."""
    if match not in LORA_MATCH:
        raise ValueError(f"lora_match must be one of {LORA_MATCH}, got {match!r}")
    if init not in LORA_INIT:
        raise ValueError(f"lora.init must be one of {tuple(LORA_INIT)}, got {init!r}")
    parts = tuned_prefixes(modules, tune)
    if "language_model" not in parts:
        raise ValueError("LoRA (lora.r > 0) adapts the language model: set tune.language_model=true or lora.r=0")
    language_model = parts.pop("language_model")
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        bias="none",
        target_modules=lora_target_regex(language_model, target_leaves) if match == "path" else list(target_leaves),
        modules_to_save=[prefix for prefixes in parts.values() for prefix in prefixes] or None,
        init_lora_weights=LORA_INIT[init],
    )
    peft_model = get_peft_model(model, config)
    n_adapted = sum(1 for name, _ in peft_model.named_modules() if name.endswith(".lora_A"))
    if n_adapted == 0:
        raise ValueError(f"LoRA target {config.target_modules!r} matched no module")
    return peft_model


def count_trainable(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(_numel(p) for p in model.parameters() if p.requires_grad)
    return trainable, sum(map(_numel, model.parameters()))


def load_adapter(model: torch.nn.Module, adapter_dir: str | Path, trainable: bool = False) -> PeftModel:
    """Attach a saved LoRA adapter, failing on any missing or unexpected key.

    peft's own loader only warns; FIUBench's ``strict=False`` load silently evaluated the original model
    when key names drifted between transformers versions.
    """
    adapter_dir = Path(adapter_dir)
    weights_file = adapter_dir / ADAPTER_WEIGHTS
    if not weights_file.is_file():
        raise CheckpointError(f"{adapter_dir}: no {ADAPTER_WEIGHTS}")
    config = PeftConfig.from_pretrained(str(adapter_dir))
    config.inference_mode = not trainable
    config.base_model_name_or_path = getattr(model, "name_or_path", config.base_model_name_or_path)
    peft_model = get_peft_model(model, config)
    expected = set(get_peft_model_state_dict(peft_model))
    saved = load_file(str(weights_file))
    broken = [key for key, tensor in saved.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:
        raise CheckpointError(f"{weights_file}: {len(broken)} tensors hold NaN or Inf values {broken[:3]}")
    missing, unexpected = sorted(expected - set(saved)), sorted(set(saved) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{weights_file} does not match the model: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}"
        )
    result = set_peft_model_state_dict(peft_model, saved)
    if result.unexpected_keys:
        raise CheckpointError(f"{weights_file}: keys not used by the model: {result.unexpected_keys[:3]}")
    if not trainable:
        peft_model.eval()
    return peft_model
