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

from omegaconf import DictConfig

from unlearning.data.examples import DataError
from unlearning.data.streams import validate_examples
from unlearning.inference.scoring import forward_answer_logits, mean_nll
from unlearning.recipes.common import (
    CONFIG_DIR,
    ensure_model,
    prepare_run,
    resumption,
    save_and_finish,
    setup_logging,
    start_training,
    step_saver,
    trainable_model,
    training_collator,
    training_metrics,
)
from unlearning.runs.console import hydra_app
from unlearning.runs.folders import base_model_entry
from unlearning.training.trainer import train

log = logging.getLogger(__name__)


def finetune(cfg: DictConfig) -> Path:
    compat, config, accelerator, benchmark = start_training(cfg, "finetune")
    model_path = ensure_model(config.model, benchmark, accelerator)
    examples = benchmark.train_examples(config.split)
    if not examples:
        raise DataError(f"split {config.split!r} of {config.benchmark.data_dir} has no training examples")
    collator = training_collator(model_path, config.model, config.prompt)
    validate_examples(collator, {"train": examples}, f"benchmark {benchmark.name!r}, split {config.split!r}")
    claim = prepare_run(config, model_path, accelerator, examples, compat)
    if claim.state == "finished":
        return claim.run_dir
    with claim.held():  # the run folder's lock, let go however the attempt ends
        model = trainable_model(model_path, config.model, config.tune)
        log.info("finetuning on %s split %s: %d examples", benchmark.name, config.split, len(examples))

        def step_loss(model, batch, progress):
            return mean_nll(forward_answer_logits(model, batch)), {}

        metrics = training_metrics(config, claim, accelerator)
        prepared, summary = train(model, examples, collator, step_loss, config.train, accelerator, metrics,
                                  on_step=step_saver(config.run.save_every, claim.work_dir, accelerator),
                                  resume=resumption(config, claim))
        return save_and_finish(accelerator, prepared, claim, metrics, {
            "kind": "finetune", "benchmark": benchmark.name, "model": config.model.name, "split": config.split,
            "base_model": base_model_entry(claim.run_dir, model_path), "train": summary,
        }, processor=collator.processor, merge=config.tune.r > 0)


@hydra_app(version_base=None, config_path=CONFIG_DIR, config_name="finetune")
def main(cfg: DictConfig) -> None:
    setup_logging()
    finetune(cfg)


if __name__ == "__main__":
    main()
