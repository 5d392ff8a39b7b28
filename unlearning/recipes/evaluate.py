"""Evaluate runs on the benchmark's forget and retain splits; resumable (finished splits are reused).

    bash scripts/eval_everything.bash                          # every run of the built-in benchmark + tiny model
    bash scripts/eval_everything.bash run_dirs=[runs/fiubench/tiny/ga_forget10_0.0002_5]
    bash scripts/eval_everything.bash model=llava_phi3_mini data_dir=dataset/FIUBench forget_split=forget5

The retain model (``finetune_retain_*``) is evaluated first: its forget-split truth ratios are the
reference distribution of every other run's KS-test forget quality.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from accelerate import Accelerator
from omegaconf import DictConfig

from unlearning.recipes.common import (
    CONFIG_DIR,
    build_benchmark,
    ensure_data,
    load_processor_for,
    make_accelerator,
    make_collator,
    on_main_first,
    setup_logging,
    to_dict,
)
from unlearning.runs import find_runs, find_unique_run, load_run_model, model_path_of, read_run
from unlearning.synthetic import write_mme, write_pope

log = logging.getLogger(__name__)


def runs_to_evaluate(cfg: DictConfig, needs_reference: bool = True) -> tuple[list[Path], Path | None]:
    """The runs (reference first) and the retain-model reference run, if any."""
    root = Path(cfg.run_root) / cfg.benchmark.name / cfg.model.name
    if not needs_reference:
        reference = None
    elif cfg.reference_run:
        reference = Path(cfg.reference_run)
    else:
        try:
            reference = find_unique_run(root, "finetune_retain_", "retain model", "reference_run")
        except FileNotFoundError as error:
            log.warning("forget quality will be missing: %s", error)
            reference = None
    runs = [Path(p) for p in cfg.run_dirs] if cfg.run_dirs else find_runs(root)
    if not runs:
        raise FileNotFoundError(f"no finished runs under {root}; train some first or pass run_dirs=[...]")
    if reference is not None:
        runs = [reference] + [run for run in runs if run.resolve() != reference.resolve()]
    return runs, reference


GENERAL_BUILTINS = {"mme": write_mme, "pope": write_pope}


def ensure_general_data(general: DictConfig, accelerator: Accelerator) -> None:
    for name, settings in general.items():
        if name not in GENERAL_BUILTINS:
            raise ValueError(f"eval.general.{name}: unknown evaluation; known: {', '.join(GENERAL_BUILTINS)}")
        on_main_first(accelerator, lambda name=name, settings=settings: ensure_data(
            Path(settings.data_dir), Path(settings.builtin_dir), GENERAL_BUILTINS[name], {}, name.upper()))


def evaluate(cfg: DictConfig) -> list[dict[str, Any]]:
    accelerator = make_accelerator()
    benchmark = build_benchmark(cfg, accelerator)
    if getattr(benchmark, "uses_general_evals", False):
        ensure_general_data(cfg.eval.general or {}, accelerator)
    runs, reference = runs_to_evaluate(cfg, getattr(benchmark, "needs_reference_run", True))
    settings = to_dict(cfg.eval)
    summaries = []
    for run_dir in runs:
        info = read_run(run_dir)
        if info["benchmark"] != benchmark.name:
            raise ValueError(f"{run_dir} is a {info['benchmark']} run, not {benchmark.name}")
        log.info("evaluating %s", run_dir)

        def load(run_dir: Path = run_dir) -> tuple[Any, Any]:
            processor = load_processor_for(str(model_path_of(run_dir)), cfg.model)
            model = load_run_model(run_dir, cfg.model.dtype, cfg.model.attn_implementation)
            model = model.to(accelerator.device).eval()
            return model, make_collator(processor, model, cfg.model)

        summary = benchmark.evaluate(load, settings, run_dir / "eval",
                                     reference / "eval" if reference else None, accelerator)
        summaries.append(summary)
        for row in benchmark.table_rows(info, summary):
            log.info("%s: %s", run_dir.name, _brief(row))
    accelerator.end_training()
    return summaries


def _brief(row: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}"
                     for key, value in row.items() if key not in ("run", "method", "label"))


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    setup_logging()
    evaluate(cfg)


if __name__ == "__main__":
    main()
