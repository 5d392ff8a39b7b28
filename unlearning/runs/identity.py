"""A run's identity: the settings that determine a trained model, and the short hash that names its folder.

The hash is taken over every setting that changes training (the resolved config without the keys listed in
``NOT_TRAINING``, plus the model training started from and the content of the examples), so two runs that differ
in any such setting (NPO's beta, a retain weight, the LoRA rank, the seed) get two folders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from unlearning.runs.io import redact

# Config keys that do not change what is trained: where it is written, how it is logged, which checkpoints
# are kept, and the benchmark's evaluation-only settings.
NOT_TRAINING = ("run_root", "run_name", "run_label", "log_every", "report_to", "save_every", "resume", "model_path",
                "overwrite", "data_dir",  # the data's content and the base model stand in for their paths
                "compat",  # the switches on are in the identity as a list (``training_identity``)
                "num_workers", "pixel_cache_mb")  # where and how batches are collated, not what they hold
NOT_TRAINING_BENCHMARK = ("builtin_dir", "forget_split", "retain_split", "reference_split", "stage_one_split",
                          "starts_from", "general_evals", "judge", "eval_options", "recipe",
                          "robustness",  # which parts and columns the attacks' tables hold
                          "selection")  # how results_collect.py chooses a checkpoint (docs/selection.md)
# An original prompt's settings that only change generation (``OriginalPrompt``)
ORIGINAL_PROMPT_EVALUATION = ("generation_prompt",)
# Settings added after runs existed, by the section of the config holding them, at the value that trains as before:
# left out of the identity at that value, so earlier runs keep their names (any other value is in it).
_METHOD_ADDED = {"reduction": "answer_tokens", "retain_nll": 0.0, "joint": False, "granularity": "sequence"}
IDENTITY_DEFAULTS: dict[tuple[str, ...], dict[str, Any]] = {
    (): {"shuffle": True, "decay_exempt": "1d", "reference_model": None, "lora_match": "path",
         "label_scope": "answer", "passes": "joint", "original_prompt": None, "effective_batch": None,
         "adam_eps": 1e-8, "append_eos": True, "schedule_accum": None},
    ("method",): _METHOD_ADDED,
    ("method", "base"): _METHOD_ADDED,  # a composed method's base (kl_pd, po_pd)
    ("benchmark", "options"): {"capitalize": False},
    ("benchmark", "curation"): {"check_separation": "error", "min_separation": 0.6},
    ("lora",): {"init": "default"},
}


def training_identity(config: Mapping[str, Any], base_model: str | None, data: str | None = None,
                      base_content: str | None = None, compat: Sequence[str] = ()) -> dict[str, Any]:
    """The settings that determine a trained model: the resolved config minus ``NOT_TRAINING``, plus its base
    (where it is and a hash of what it holds), a content hash of the examples it trains on (``data``), so
    changed data or a rebuilt base never finds the old run, and moved data still finds it, and the compat
    switches on at training (left out when none is, so runs keep their names)."""
    identity = _without_added_defaults({key: value for key, value in config.items() if key not in NOT_TRAINING})
    benchmark = identity.get("benchmark")
    if isinstance(benchmark, Mapping):
        identity["benchmark"] = {k: v for k, v in benchmark.items() if k not in NOT_TRAINING_BENCHMARK}
    if isinstance(identity.get("original_prompt"), Mapping):  # how it generates is evaluation's business
        identity["original_prompt"] = {k: v for k, v in identity["original_prompt"].items()
                                       if k not in ORIGINAL_PROMPT_EVALUATION}
    if isinstance(identity.get("model"), Mapping):  # where the model lives: ``base_model`` says what it is
        identity["model"] = {k: v for k, v in identity["model"].items() if k != "path"}
    identity["base_model"] = base_model
    identity["base_content"] = base_content
    identity["data"] = data
    if compat:
        identity["compat"] = sorted(compat)
    return redact(identity)  # secrets never reach disk, nor the hash


def _without_added_defaults(config: dict[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    defaults = IDENTITY_DEFAULTS.get(path, {})
    out = {}
    for key, value in config.items():
        if key in defaults and value == defaults[key]:
            continue
        out[key] = _without_added_defaults(dict(value), (*path, key)) if isinstance(value, Mapping) else value
    return out


def identity_hash(identity: Mapping[str, Any]) -> str:
    material = json.dumps(identity, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:8]


def differences(stored: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> str:
    keys = sorted(set(stored) | set(current))
    out = []
    for key in keys:
        a, b = stored.get(key), current.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            inner = differences(a, b, f"{prefix}{key}.")
            out += [inner] if inner else []
        elif json.dumps(a, default=str) != json.dumps(b, default=str):
            out.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return "; ".join(out[:5]) if not prefix else "; ".join(out)
