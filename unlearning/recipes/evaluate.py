"""Evaluate runs, or a model that is not a run, on the benchmark; resumable (finished parts are reused).

    bash scripts/eval_everything.bash                          # every run of the built-in benchmark + tiny model
    bash scripts/eval_everything.bash run_dirs=[runs/fiubench/tiny/ga_forget10_0.0005_8-1a2b3c4d]
    bash scripts/eval_everything.bash model=llava_phi3_mini data_dir=dataset/FIUBench forget_split=forget5
    bash scripts/eval_everything.bash model_path=models/fiubench/tiny-llava      # an off-the-shelf model folder
    bash scripts/eval_everything.bash steps=all                # also every kept intermediate checkpoint

The benchmark's reference run (its finetune run on ``benchmark.reference_split``, FIUBench's retain model)
is evaluated first: metrics such as forget quality compare every other run with it. All settings, the
benchmark's parts included, are checked before any model loads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from omegaconf import DictConfig

from unlearning.benchmarks import Benchmark
from unlearning.evaluation.general import ensure_general_data, general_part, general_settings
from unlearning.evaluation.runner import EvalSettings, Evaluation, limited_dir, run_evaluation
from unlearning.evaluation.schema import table_metrics
from unlearning.models.loading import CheckpointError
from unlearning.recipes.attacks import AttackPlan
from unlearning.recipes.common import (
    CONFIG_DIR,
    build_benchmark,
    ensure_data,
    load_processor_for,
    make_accelerator,
    make_collator,
    on_main_first,
    pixel_cache,
    setup_logging,
    take_lock,
    to_dict,
    with_compat,
)
from unlearning.recipes.slices import EvalConfig
from unlearning.runs.checkpoints import BaseModels, ModelSource, checkpoint_steps, model_source
from unlearning.runs.console import hydra_app
from unlearning.runs.fingerprint import model_fingerprint
from unlearning.runs.folders import external_run, find_finetune_run, find_runs, read_run
from unlearning.runs.io import CorruptFile
from unlearning.runs.locks import Busy, lock_for
from unlearning.runs.trackers import MetricLog

log = logging.getLogger(__name__)


def runs_to_evaluate(config: EvalConfig, accelerator: Accelerator) -> tuple[list[Path], Path | None]:
    """The runs (reference first) and the reference run, if the benchmark has one."""
    root = config.group_dir
    reference = None
    if config.reference_split:
        if config.reference_run:
            reference = Path(config.reference_run)
        else:
            try:
                reference = find_finetune_run(root, config.reference_split, "reference run", "reference_run")
            except FileNotFoundError as error:
                log.warning("metrics against the reference run will be missing: %s", error)
    if config.model_path:
        runs = [on_main_first(accelerator, lambda: external_run(
            root, config.benchmark.name, config.model.name, config.model_path, config.adapter_path))]
    else:
        runs = [Path(p) for p in config.run_dirs] if config.run_dirs else find_runs(root)
    if not runs:
        raise FileNotFoundError(f"no finished runs under {root}; train some first, pass run_dirs=[...] or "
                                "model_path=<model>")
    if reference is not None:
        runs = [reference] + [run for run in runs if run.resolve() != reference.resolve()]
    return runs, reference


def steps_to_evaluate(run_dir: Path, steps: Any) -> list[int | None]:
    """The intermediate checkpoints to evaluate (``steps``: null, ``all`` or a list), then the final model (None).
    A step asked for by number that the run does not keep is an error; ``all`` over a run keeping none says so."""
    if steps is None:
        return [None]
    kept = checkpoint_steps(run_dir)
    if steps == "all":
        if not kept:
            log.warning("steps=all: %s keeps no intermediate checkpoint (trained without save_every, or they were "
                        "deleted); only its final model is evaluated", run_dir)
        return [*kept, None]
    wanted = [int(step) for step in steps]
    missing = [step for step in wanted if step not in kept]
    if missing:
        raise FileNotFoundError(f"{run_dir}: no checkpoint for steps {missing} (kept: {kept or 'none'}); "
                                "pass steps= with kept steps, steps=all, or leave steps out")
    return [*wanted, None]


def reference_steps(steps: Any, reference: Path) -> Any:
    """``steps`` for the reference run, which the command evaluates whatever runs it names: its final model alone
    when it keeps no intermediate checkpoint (the steps asked for are the other runs')."""
    if steps is not None and not checkpoint_steps(reference):
        log.info("%s (the reference run) keeps no intermediate checkpoint: its final model is evaluated", reference)
        return None
    return steps


def summary_name(run_dir: Path, info: dict[str, Any], forget_split: str | None) -> str:
    """Where a run's summary goes: ``summary.json`` (what the tables read), unless a forget run is evaluated on
    another forget split than the one it forgot: then ``summary.<split>.json`` beside it, with a warning, so the
    summary of the split it forgot is never replaced by another split's."""
    own = info.get("split") if info.get("kind") == "forget" else None
    if own is None or forget_split is None or own == forget_split:
        return "summary.json"
    name = f"summary.{forget_split}.json"
    log.warning("%s forgot %s but is evaluated on %s: its summary goes to eval/%s (eval/summary.json keeps the "
                "evaluation on %s, the one the tables show)", run_dir, own, forget_split, name, own)
    return name


def build_evaluation(config: EvalConfig, benchmark: Benchmark, settings: EvalSettings,
                     accelerator: Accelerator) -> Evaluation:
    """The benchmark's parts plus the general evaluations it reports, all settings checked here."""
    if settings.judge.prompts and not getattr(benchmark, "reads_judge_prompts", False):
        raise ValueError(f"eval.judge.prompts: benchmark {benchmark.name!r} has its own judge prompt and reads no "
                         "prompt file")
    evaluation = benchmark.evaluation(settings, config.forget_split, config.retain_split, **config.eval_options)
    if settings.limit is not None and not settings.limit_applied:
        raise ValueError(f"eval.limit: benchmark {benchmark.name!r} does not apply it yet (its evaluation builder "
                         "must pass each list it scores through EvalSettings.limited); leave eval.limit out")
    general = general_settings(list(config.general_evals), config.general)
    if not general:
        return evaluation
    ensure_general_data(general, lambda work: on_main_first(accelerator, work), ensure_data)
    return dataclasses.replace(evaluation, parts={**evaluation.parts,
                                                  "general": general_part(general, settings.batch_size,
                                                                          settings.judge_fingerprint(),
                                                                          settings.limit)})


def evaluate(cfg: DictConfig) -> list[dict[str, Any]]:
    accelerator = make_accelerator()
    compat = with_compat(cfg, "eval")  # the compat switches on set their values first
    config = EvalConfig.from_config(cfg)  # every slice checked: a bad value stops here
    settings = EvalSettings.from_config(to_dict(cfg.eval), compat)
    attacks = AttackPlan.from_config(cfg, config)  # attack=...: checked before any model loads
    if attacks and settings.limit is not None:
        raise ValueError("eval.limit: an attacked evaluation is always of every item (its robustness table compares "
                         "whole evaluations); leave eval.limit or attack out")
    benchmark = build_benchmark(config.benchmark, accelerator)
    attacks = attacks.with_benchmark(benchmark)  # the relearning attack's forget set halved, before any model loads
    evaluation = build_evaluation(config, benchmark, settings, accelerator)
    runs, reference = runs_to_evaluate(config, accelerator)
    if attacks:  # the reference model is attacked too (first): the attacks' baseline
        runs, reference = attacks.with_reference(config, runs, reference)
    for run_dir in runs:
        with contextlib.suppress(CorruptFile):  # reported with the run's evaluation below
            info = read_run(run_dir)
            if info["benchmark"] != benchmark.name:
                raise ValueError(f"{run_dir} is a {info['benchmark']} run, not {benchmark.name}")
    targets = [(run_dir, step) for run_dir in runs for step in steps_to_evaluate(run_dir, reference_steps(
        config.steps, run_dir) if run_dir == reference else config.steps)]
    models = BaseModels(config.eval_dtype, config.model.attn_implementation, accelerator.device,
                        merge=config.merge_adapters)
    pixels = pixel_cache(config.prompt.pixel_cache_mb)  # each image processed once for every run evaluated
    summaries, failed = [], []
    logs: dict[Path, MetricLog] = {}  # one metric stream per run: its steps' summaries, then the final one
    for run_dir, step in targets:
        try:
            source = model_source(run_dir, step)
            weights = model_fingerprint(source.weights, source.adapter)
            if config.eval_dtype != config.model.dtype:  # other precision, other numbers (no cached part reused)
                weights = f"{weights}@{config.eval_dtype}"
            info = read_run(run_dir)
        except (FileNotFoundError, CheckpointError, CorruptFile) as error:  # this run is broken: the others go on
            log.error("cannot evaluate %s: %s", run_dir, error)
            failed.append((run_dir, step, error))
            continue
        out_dir = run_dir / "eval" if step is None else run_dir / "eval" / "steps" / f"step_{step:06d}"
        out_dir = limited_dir(out_dir, settings.limit)  # a smoke check writes apart (eval/limit_<N>/)
        log.info("evaluating %s%s%s", run_dir, "" if step is None else f" at step {step}",
                 "" if settings.limit is None else f", the first {settings.limit} items of each part, into {out_dir}")

        def load(source: ModelSource = source) -> tuple[Any, Any]:
            processor = load_processor_for(source.processor, config.model)
            model = models.load(source)
            return model, make_collator(processor, model.generation_config, config.prompt.system_prompt,
                                        original=config.prompt.original_prompt, pixel_cache=pixels)

        try:
            lock = take_lock(accelerator, lock_for(run_dir, f"run folder {run_dir}"))  # one writer of its results
        except Busy as error:
            log.error("cannot evaluate %s now: %s", run_dir, error)
            failed.append((run_dir, step, error))
            continue
        try:
            if attacks:  # the attacked evaluations only, each in eval/attacks/<name>/ (the unattacked stay as they are)
                summaries += attacks.run(benchmark.name, evaluation, load, settings, out_dir, reference, accelerator,
                                         weights, source.adapter is not None, lambda summary, info=info: table_metrics(
                                             benchmark.report, benchmark.table_rows(info, summary), summary),
                                         summary_name(run_dir, info, config.forget_split))
                continue
            summary = run_evaluation(benchmark.name, evaluation, load, settings, out_dir,
                                     limited_dir(reference / "eval", settings.limit) if reference else None,
                                     accelerator, weights,
                                     lambda summary, info=info: table_metrics(
                                         benchmark.report, benchmark.table_rows(info, summary), summary),
                                     summary_name(run_dir, info, config.forget_split))
        except CheckpointError as error:
            log.error("cannot evaluate %s: %s", run_dir, error)
            failed.append((run_dir, step, error))
            continue
        finally:
            if lock is not None:
                lock.release()
        if settings.limit is not None:  # a smoke check: no metric stream, no tracker
            if step is None:
                summaries.append(summary)
            continue
        if run_dir not in logs:
            logs[run_dir] = MetricLog(run_dir / "eval", run_dir.name, config.report_to, config.resolved,
                                      run_dir / "eval" / "metrics.jsonl", accelerator.is_main_process,
                                      Path(config.run_root))
        logs[run_dir].log({"eval": summary_numbers(summary)}, _trained_steps(run_dir) if step is None else step)
        if step is None:
            logs.pop(run_dir).close()
            summaries.append(summary)
            for row in benchmark.table_rows(info, summary):
                log.info("%s: %s", run_dir.name, _brief(row, [column.name for column in benchmark.report.columns]))
    for open_log in logs.values():
        open_log.close()
    if attacks:
        attacks.write_tables(config.run_root, accelerator)
    accelerator.end_training()
    if failed:
        lines = "\n".join(f"  {run_dir}{'' if step is None else f' (step {step})'}: {error}"
                          for run_dir, step, error in failed)
        raise EvaluationFailed(f"{len(failed)} of {len(targets)} models could not be evaluated (the others were):"
                               f"\n{lines}")
    return summaries


def summary_numbers(summary: dict[str, Any]) -> dict[str, Any]:
    """What a summary reports (its metrics), without the bookkeeping (cost, file names, provenance)."""
    return {key: value for key, value in summary.items() if key not in ("cost", "parts", "provenance", "judge",
                                                                         "bootstrap")}


def _trained_steps(run_dir: Path) -> int:
    """The step a run's final checkpoint was taken at (0 for a model trained elsewhere)."""
    with contextlib.suppress(CorruptFile, FileNotFoundError):
        return int((read_run(run_dir).get("train") or {}).get("steps") or 0)
    return 0


class EvaluationFailed(RuntimeError):
    """Some runs could not be evaluated (their model is missing or broken); the others were."""


def _brief(row: dict[str, Any], columns: list[str]) -> str:
    return ", ".join(f"{key} {row.get(key):.3g}" if isinstance(row.get(key), float) else f"{key} {row.get(key)}"
                     for key in columns if key not in ("run", "method"))


@hydra_app(version_base=None, config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    setup_logging()
    try:
        evaluate(cfg)
    except EvaluationFailed as error:
        log.error("%s", error)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
