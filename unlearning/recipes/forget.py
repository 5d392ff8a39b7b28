"""Stage II: make a finetuned model forget a split with a registered method, through LoRA adapters.

    bash scripts/forget_lora.bash                               # built-in benchmark, tiny model, GA
    bash scripts/forget_lora.bash method=npo method.beta=0.2
    bash scripts/forget_lora.bash model=llava_phi3_mini data_dir=dataset/FIUBench forget_split=forget5 method=kl

The model starts from the Stage-I run (``model_path``, by default the one ``finetune_full_*`` run of this
benchmark and model). Methods needing a reference (KL, NPO) get the same weights with adapters disabled.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from unlearning.data import Example, PairedCollator, PairedForgetSet
from unlearning.methods import build_method
from unlearning.metrics.likelihood import forward_answer_logits
from unlearning.models import apply_lora, check_prefixes, count_trainable, load_model
from unlearning.recipes.common import (
    CONFIG_DIR,
    build_benchmark,
    load_processor_for,
    make_accelerator,
    make_collator,
    setup_logging,
    to_dict,
    train_settings,
)
from unlearning.runs import base_model_entry, find_unique_run, model_path_of, save_run, start_run
from unlearning.trainer import seed_everything, train

log = logging.getLogger(__name__)


def stage_one_path(cfg: DictConfig) -> Path:
    if cfg.model_path:
        return Path(cfg.model_path)
    run = find_unique_run(Path(cfg.run_root) / cfg.benchmark.name / cfg.model.name, "finetune_full_",
                          "Stage-I model trained on split=full", "model_path")
    return model_path_of(run)


FORGET_MODALITIES = ("multimodal", "unimodal")


def with_modality(examples: list[Example] | None, modality: str) -> list[Example] | None:
    """multimodal: the QAs with their images; unimodal: the same QAs as text only (MLLMU-Bench's comparison)."""
    if modality not in FORGET_MODALITIES:
        raise ValueError(f"forget_modality must be one of {FORGET_MODALITIES}, got {modality!r}")
    if examples is None or modality == "multimodal":
        return examples
    return [dataclasses.replace(example, image=None) for example in examples]


def forget(cfg: DictConfig) -> Path:
    method = build_method(cfg.method)
    accelerator = make_accelerator(cfg.grad_accum, cfg.report_to)
    seed_everything(cfg.seed)
    run_dir = Path(cfg.run_dir)
    benchmark = build_benchmark(cfg, accelerator)
    model_path = stage_one_path(cfg)
    processor = load_processor_for(str(model_path), cfg.model)
    model = load_model(model_path, cfg.model.dtype, cfg.model.attn_implementation)
    check_prefixes(model, cfg.model.modules)
    model = apply_lora(model, cfg.model.modules, cfg.tune, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout,
                       cfg.model.lora_targets)
    trainable, total = count_trainable(model)
    log.info("method %s; trainable parameters: %.2fM of %.2fM", cfg.method.name, trainable / 1e6, total / 1e6)

    forget_set = with_modality(benchmark.forget_examples(cfg.forget_split, method.forget_target),
                               cfg.forget_modality)
    retain_set = with_modality(benchmark.retain_examples(cfg.forget_split) if method.needs_retain else None,
                               cfg.forget_modality)
    log.info("forgetting %d %s examples of %s%s", len(forget_set), cfg.forget_modality, cfg.forget_split,
             f" with {len(retain_set)} retain examples" if retain_set else "")
    if accelerator.is_main_process:
        start_run(run_dir, to_dict(cfg))

    def step_loss(model, batch):
        policy = forward_answer_logits(model, batch)
        reference = None
        if method.needs_reference:
            with torch.no_grad(), accelerator.unwrap_model(model).disable_adapter():
                reference = forward_answer_logits(accelerator.unwrap_model(model), batch)
        return method.loss(policy, reference, batch["is_forget"])

    collate = PairedCollator(make_collator(processor, model, cfg.model))
    prepared, summary = train(model, PairedForgetSet(forget_set, retain_set, cfg.seed), collate, step_loss,
                              train_settings(cfg), accelerator, run_dir / "train_log.jsonl")
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(prepared)
    if accelerator.is_main_process:
        save_run(run_dir, accelerator.unwrap_model(prepared), processor, {
            "kind": "forget", "benchmark": benchmark.name, "model": cfg.model.name, "method": cfg.method.name,
            "split": cfg.forget_split, "forget_modality": cfg.forget_modality,
            "base_model": base_model_entry(run_dir, model_path), "train": summary,
        }, state_dict=state_dict)
        log.info("saved %s", run_dir)
    accelerator.end_training()
    return run_dir


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="forget")
def main(cfg: DictConfig) -> None:
    setup_logging()
    forget(cfg)


if __name__ == "__main__":
    main()
