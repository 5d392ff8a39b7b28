"""Stage I, or a benchmark's vanilla model: teach a model the benchmark's facts (FIUBench ``finetune.py``).

    bash scripts/finetune.bash                       # built-in benchmark, tiny model, split=full
    bash scripts/finetune.bash split=retain          # the retain ("gold") model for the KS test
    bash scripts/finetune.bash model=llava_phi3_mini data_dir=dataset/FIUBench

With ``lora_r: 0`` the tuned parts are fully trained (FIUBench's Stage I); with LoRA the adapters are
merged before saving, so forgetting always starts from a plain model folder. Every input is checked (each
example rendered, each image decoded) before anything is written; the run trains in an attempt folder moved
into place when it finishes. The same settings run again find their finished run and stop (``overwrite=true``
trains it again); ``save_every`` keeps intermediate checkpoints.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from unlearning.data.examples import DataError
from unlearning.data.streams import validate_examples
from unlearning.inference.scoring import forward_answer_logits, mean_nll
from unlearning.models.loading import (
    apply_lora,
    check_prefixes,
    count_trainable,
    freeze_all_but,
    load_model,
    tuned_prefixes,
)
from unlearning.recipes.common import (
    CONFIG_DIR,
    build_benchmark,
    ensure_model,
    make_accelerator,
    prepare_run,
    setup_logging,
    step_saver,
    train_settings,
    training_collator,
    with_compat,
)
from unlearning.runs.checkpoints import save_checkpoint
from unlearning.runs.folders import CHECKPOINT, base_model_entry, finish_attempt, save_run
from unlearning.training.trainer import seed_everything, train

log = logging.getLogger(__name__)


def finetune(cfg: DictConfig) -> Path:
    compat = with_compat(cfg, "train")  # switches on set their values first
    settings = train_settings(cfg)  # bad values (lr=abc, epochs=0) stop here, before anything is written
    accelerator = make_accelerator(cfg.grad_accum, cfg.report_to)
    seed_everything(cfg.seed)
    benchmark = build_benchmark(cfg, accelerator)
    model_path = ensure_model(cfg.model, benchmark, accelerator)
    examples = benchmark.train_examples(cfg.split)
    if not examples:
        raise DataError(f"split {cfg.split!r} of {cfg.data_dir} has no training examples")
    collator = training_collator(model_path, cfg)
    validate_examples(collator, {"train": examples}, f"benchmark {benchmark.name!r}, split {cfg.split!r}")
    claim = prepare_run(cfg, model_path, accelerator, examples, compat)
    if claim.state == "finished":
        return claim.run_dir
    work_dir = claim.work_dir
    model = load_model(model_path, cfg.model.dtype, cfg.model.attn_implementation)
    check_prefixes(model, cfg.model.modules)
    if cfg.lora.r > 0:
        model = apply_lora(model, cfg.model.modules, cfg.tune, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout,
                           cfg.model.lora_targets, cfg.lora_match)
    else:
        freeze_all_but(model, [p for ps in tuned_prefixes(cfg.model.modules, cfg.tune).values() for p in ps])
    trainable, total = count_trainable(model)
    log.info("trainable parameters: %.2fM of %.2fM", trainable / 1e6, total / 1e6)
    log.info("finetuning on %s split %s: %d examples", benchmark.name, cfg.split, len(examples))

    def step_loss(model, batch, progress):
        return mean_nll(forward_answer_logits(model, batch)), {}

    prepared, summary = train(model, examples, collator, step_loss, settings, accelerator,
                              work_dir / "train_log.jsonl", on_step=step_saver(cfg.save_every, work_dir, accelerator))
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(prepared)  # every rank takes part (ZeRO-3 gathers shards)
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(prepared)
        if cfg.lora.r > 0:
            final, state_dict = final.merge_and_unload(), None
        save_checkpoint(work_dir / CHECKPOINT, final, collator.processor, state_dict)
        save_run(work_dir, {
            "kind": "finetune", "benchmark": benchmark.name, "model": cfg.model.name, "split": cfg.split,
            "base_model": base_model_entry(claim.run_dir, model_path), "train": summary,
        })
        finish_attempt(claim)
        log.info("saved %s", claim.run_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return claim.run_dir


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="finetune")
def main(cfg: DictConfig) -> None:
    setup_logging()
    finetune(cfg)


if __name__ == "__main__":
    main()
