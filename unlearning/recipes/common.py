"""Set-up shared by the recipes: logging, accelerator, benchmark (built-in data on first use), model, run folder."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from omegaconf import DictConfig, OmegaConf

from unlearning.benchmarks import Benchmark, benchmark_class, benchmark_names
from unlearning.compat import Compat, apply_switches, register_configs, resolve
from unlearning.data.collator import ChatCollator, OriginalPrompt, stop_token_ids
from unlearning.data.pixel_cache import CachedImageProcessor
from unlearning.models.loading import (
    apply_lora,
    check_prefixes,
    count_trainable,
    freeze_all_but,
    load_generation_config,
    load_model,
    load_processor,
    tuned_prefixes,
)
from unlearning.models.tiny import build_tiny_model
from unlearning.recipes.slices import BenchmarkSlice, ModelSlice, PromptSlice, SettingError, TrainingConfig, TuneSlice
from unlearning.runs.checkpoints import model_source, save_checkpoint, step_checkpoint_dir
from unlearning.runs.distributed import check_launch, deepspeed_handlers, match_clipping, note_accumulation
from unlearning.runs.fingerprint import content_fingerprint, content_hash
from unlearning.runs.folders import (
    CHECKPOINT,
    RunClaim,
    claim_run,
    find_finetune_run,
    finish_attempt,
    run_folder,
    save_run,
    start_attempt,
)
from unlearning.runs.identity import identity_hash, training_identity
from unlearning.runs.io import atomic_write_dir, atomic_write_json, read_json
from unlearning.runs.locks import Busy, Lock, lock_for
from unlearning.runs.provenance import check_versions
from unlearning.runs.trackers import MetricLog
from unlearning.training.resume import Resume, latest_state, load_state
from unlearning.training.trainer import seed_everything

log = logging.getLogger(__name__)

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "config")
BUILTIN_MARKER = "synthetic_settings.json"  # what the built-in data folder was generated with
T = TypeVar("T")

# ${tag_unless:${forget_modality},multimodal} -> "" for the default value, "_<value>" otherwise: run names
# gain a suffix only for non-default choices, so existing run folders keep their names.
OmegaConf.register_new_resolver(
    "tag_unless", lambda value, default: "" if str(value) == str(default) else f"_{value}", replace=True)


register_configs(benchmark_names())  # compat.<switch> keys of every benchmark, for the command line


def with_compat(cfg: DictConfig, stage: str) -> Compat:
    """The run's compat switches (``unlearning.compat``); the config values of those on at ``stage`` are set in
    ``cfg`` here, before anything reads it."""
    check_top_level_keys(cfg)
    compat = resolve(to_dict(cfg.compat) if "compat" in cfg else None, cfg.benchmark.name)
    changed = apply_switches(cfg, compat, stage, _command_line_keys())
    if compat.at(stage):
        log.info("compat switches on: %s%s", ", ".join(compat.at(stage)),
                 f" (set {', '.join(changed)})" if changed else "")
    return compat


def check_top_level_keys(cfg: DictConfig) -> None:
    """Under ``@hydra.main``: a top-level key the command's config does not have (``+methd=npo``, Hydra's advice
    after the typo ``methd=npo``) is an error naming the nearest known keys, never a setting nothing reads."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    known = known_top_level_keys(HydraConfig.get().job.config_name)
    unknown = sorted(set(cfg) - known)
    if unknown:
        hints = [f"{key!r} (did you mean {', '.join(repr(k) for k in close)}?)" if (
            close := difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)) else repr(key)
            for key in unknown]
        raise SettingError(f"unknown setting {', '.join(hints)}: no {HydraConfig.get().job.config_name} setting has "
                           "that name, so nothing would read it")


def known_top_level_keys(config_name: str) -> set[str]:
    """The top-level keys of ``config/<config_name>.yaml``: its own, its defaults groups' (where they are placed)
    and those of the primary configs it extends."""
    data = yaml.safe_load((Path(CONFIG_DIR) / f"{config_name}.yaml").read_text(encoding="utf-8")) or {}
    keys = {key for key in data if key != "defaults"}
    for entry in data.get("defaults") or []:
        if isinstance(entry, str):
            if entry != "_self_":
                keys |= known_top_level_keys(entry)
            continue
        group = str(next(iter(entry))).split()[-1]  # "optional recipe", "override hydra/job_logging"
        if not group.startswith("hydra"):
            keys.add((group.split("@")[1] if "@" in group else group).split(".")[0].split("/")[0])
    return keys


def _command_line_keys() -> list[str]:
    """The keys given on the command line, when running under ``@hydra.main`` (none otherwise)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [override.split("=", 1)[0].lstrip("+~") for override in HydraConfig.get().overrides.task
            if "=" in override]


def setup_logging() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO, force=True)
    for noisy in ("httpx", "urllib3", "filelock", "DeepSpeed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    check_versions()  # one line when the installed packages are not requirements.lock's


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def make_accelerator(grad_accum: int = 1) -> Accelerator:
    """Honours ``accelerate launch`` settings (metrics go to ``unlearning.runs.trackers``, not accelerate's)."""
    if not torch.cuda.is_available():  # CPU processes share the cores instead of oversubscribing them
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        threads = os.environ.get("OMP_NUM_THREADS")  # a chosen count (pinned numerics) is kept
        torch.set_num_threads(int(threads) if threads else max(1, len(os.sched_getaffinity(0)) // world_size))
    accelerator = Accelerator(gradient_accumulation_steps=grad_accum,
                              kwargs_handlers=deepspeed_handlers(torch.cuda.is_available()))
    check_launch(accelerator)  # a DeepSpeed launch that is not running DeepSpeed stops here
    return accelerator


def on_main_first(accelerator: Accelerator, work: Callable[[], T]) -> T:
    """Run ``work`` on the main process while the others wait, then everywhere (it must be idempotent)."""
    if accelerator.is_main_process:
        result = work()
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        result = work()
    return result


def ensure_data(
    data_dir: Path, builtin_dir: Path, write: Callable[..., Any], settings: dict[str, Any], what: str
) -> None:
    """Generate the built-in folder on first use (atomically); refuse one generated with other settings."""
    builtin = data_dir.resolve() == builtin_dir.resolve()
    if builtin and not data_dir.exists():
        log.info("creating the built-in %s in %s", what, data_dir)

        def fill(folder: Path) -> None:
            write(folder, **settings)
            atomic_write_json(folder / BUILTIN_MARKER, settings)

        atomic_write_dir(data_dir, fill)
    if not data_dir.exists():
        raise FileNotFoundError(f"data_dir {data_dir} does not exist ({what})")
    if builtin and read_json(data_dir / BUILTIN_MARKER) != settings:
        raise ValueError(f"{data_dir} was generated with other settings than {settings}; "
                         "delete the folder to regenerate it")


def build_benchmark(bench: BenchmarkSlice, accelerator: Accelerator) -> Benchmark:
    """The benchmark over its ``data_dir``; the built-in folder is generated the first time it is used."""
    cls = benchmark_class(bench.name)

    def load() -> Benchmark:
        ensure_data(Path(bench.data_dir), Path(bench.builtin_dir), cls.write_builtin, dict(bench.synthetic),
                    f"{bench.name} benchmark")
        return cls(Path(bench.data_dir), **bench.options)

    return on_main_first(accelerator, load)


def ensure_model(model: ModelSlice, benchmark: Benchmark, accelerator: Accelerator) -> str:
    """The model's path; a tiny model is built offline, with a tokenizer trained on the benchmark's text."""
    path = Path(model.path)
    if model.tiny is None or path.exists():
        return model.path

    def build() -> str:
        if not path.exists():
            log.info("building tiny %s model in %s", model.tiny["architecture"], path)
            sizes = {k: v for k, v in model.tiny.items() if k != "architecture"}
            build_tiny_model(model.tiny["architecture"], path, benchmark.texts(), **sizes)
        return str(path)

    return on_main_first(accelerator, build)


def make_collator(processor: Any, generation_config: Any | None, system_prompt: str | None,
                  label_scope: str = "answer", original: Mapping[str, Any] | None = None,
                  pixel_cache: CachedImageProcessor | None = None, append_eos: bool = True) -> ChatCollator:
    """``original``: an original code's hand-written prompt and label rule (a compat switch); ``pixel_cache``:
    where processed images are remembered (shared by an evaluation command's runs; default: the collator's own)."""
    return ChatCollator(processor, stop_token_ids(processor.tokenizer, generation_config), system_prompt=system_prompt,
                        label_scope=label_scope, original=OriginalPrompt(**original) if original else None,
                        pixel_cache=pixel_cache, append_eos=append_eos)


def pixel_cache(megabytes: int) -> CachedImageProcessor:
    """The processed-image memory (``pixel_cache_mb``; 0 switches it off)."""
    return CachedImageProcessor(megabytes)


def training_collator(path: str, model: ModelSlice, prompt: PromptSlice) -> ChatCollator:
    """The collator of a training run, built before any weights load, so every input is checked first."""
    return make_collator(load_processor_for(path, model), load_generation_config(path), prompt.system_prompt,
                         prompt.label_scope, prompt.original_prompt, pixel_cache(prompt.pixel_cache_mb),
                         prompt.append_eos)


def load_processor_for(path: str, model: ModelSlice) -> Any:
    return load_processor(path, model.chat_template, model.processor_class, dict(model.image_processor_overrides))


def group_dir(cfg: DictConfig) -> Path:
    """Where a benchmark/model's runs live."""
    return Path(cfg.run_root) / cfg.benchmark.name / cfg.model.name


def starting_model(model_path: str | None, bench: BenchmarkSlice, model: ModelSlice, group: Path,
                   benchmark: Benchmark, accelerator: Accelerator) -> str:
    """The model forgetting (or curation) starts from: ``model_path`` when given, else the benchmark's choice: its
    finetune run on ``stage_one_split`` under ``group`` (FIUBench's Stage I, MLLMU-Bench's vanilla model) or the
    vanilla model itself."""
    if model_path:
        return model_path
    if bench.starts_from == "vanilla":
        return ensure_model(model, benchmark, accelerator)
    split = bench.stage_one_split
    run = find_finetune_run(group, split, f"model trained on split={split}", "model_path")
    return model_source(run).weights


def prepare_run(config: TrainingConfig, base_model: str, accelerator: Accelerator, data: Any, compat: Compat
                ) -> RunClaim:
    """Claim this config's run folder (every process agrees) and, unless it is finished, start an attempt.

    The main process holds the run folder's lock from here until the attempt ends (``RunClaim.held``): a second
    command training the same run stops with a message naming the first.

    ``data`` is what the run trains on (its examples, by stream): its content hash joins the run's identity, with
    the compat switches on at training. Call this only once every input has been validated: it is the first thing
    that writes to the run folders.
    """
    resolved, group, base = dict(config.resolved), config.group_dir, Path(base_model)
    identity = training_identity(resolved, os.path.relpath(base.resolve(), group.resolve())
                                 if base.exists() else base_model, content_hash(data), content_fingerprint(base_model),
                                 compat.at("train"))
    folder = run_folder(group, config.run.label, config.run.name, identity)
    lock = take_lock(accelerator, lock_for(folder, f"run folder {folder}"))
    try:
        claim = claim_run(group, config.run.label, config.run.name, identity, overwrite=config.run.overwrite)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    accelerator.wait_for_everyone()
    if claim.state == "finished":
        if lock is not None:
            lock.release()
        log.info("%s is already trained with these settings; nothing to do (pass overwrite=true to train it again, "
                 "or run_name= for another folder)", claim.run_dir)
        return claim
    claim = dataclasses.replace(claim, lock=lock, key=identity_hash(identity), identity=identity)
    if accelerator.is_main_process:
        kept = start_attempt(claim, resolved, identity, keep=resumable if config.run.resume else None)
        log.info("%s %s (written in %s until it finishes)", "resuming" if kept else "new run" if claim.state == "new"
                 else "training to replace", claim.run_dir, claim.work_dir)
    accelerator.wait_for_everyone()
    state = latest_state(claim.work_dir) if config.run.resume else None
    return dataclasses.replace(claim, resume_from=state)


def resumable(attempt: Path) -> bool:
    """An interrupted attempt holding a training state to go on from (``save_every`` with ``resume``)."""
    return latest_state(attempt) is not None


def resumption(config: TrainingConfig, claim: RunClaim) -> Resume:
    """What ``train`` keeps (the state with each step checkpoint, ``resume``) and goes on from."""
    start = load_state(claim.resume_from) if claim.resume_from is not None else None
    if start is not None:
        log.info("resuming %s from its state at step %d (%s); resume=false starts it again", claim.run_dir.name,
                 start["step"], claim.resume_from)
    return Resume(claim.work_dir, config.run.save_every if config.run.resume else None, start)


def take_lock(accelerator: Accelerator, lock: Lock) -> Lock | None:
    """``lock`` taken by the main process (None on the others); when another command holds it, every process stops
    with :class:`Busy` naming that command (the main process says so to the others)."""
    busy: list[str | None] = [None]
    if not accelerator.is_main_process:
        lock = None
    else:
        try:
            lock.acquire()
        except Busy as error:
            busy = [str(error)]
    if accelerator.num_processes > 1:
        busy = broadcast_object_list(busy)
    if busy[0] is not None:
        raise Busy(busy[0])
    return lock


def step_saver(save_every: Any, run_dir: Path, accelerator: Accelerator
               ) -> Callable[[int, int, torch.nn.Module], None] | None:
    """With ``save_every=N``, a callback keeping the trainable weights every N optimiser steps
    (``checkpoints/step_N``: the adapter of a LoRA run, the full model otherwise); the last step's weights
    are the run's own checkpoint."""
    if save_every is None:
        return None
    if isinstance(save_every, bool) or not isinstance(save_every, int) or save_every < 1:
        raise ValueError(f"save_every must be a positive number of optimiser steps, got {save_every!r}")

    def save(step: int, total_steps: int, prepared: torch.nn.Module) -> None:
        if step % save_every or step == total_steps:
            return
        state_dict = accelerator.get_state_dict(prepared)  # every rank takes part (ZeRO-3 gathers shards)
        if accelerator.is_main_process:
            save_checkpoint(step_checkpoint_dir(run_dir, step), accelerator.unwrap_model(prepared), None, state_dict)
            log.info("kept checkpoint of step %d", step)

    return save


def trainable_model(model_path: str, model_slice: ModelSlice, tune: TuneSlice) -> torch.nn.Module:
    """The model a run trains: loaded, its module paths checked, then LoRA adapters on the language model with the
    other tuned parts fully trained (``lora.r > 0``), or the tuned parts trained in full (``lora.r = 0``)."""
    model = load_model(model_path, model_slice.dtype, model_slice.attn_implementation)
    check_prefixes(model, model_slice.modules)
    if tune.r > 0:
        model = apply_lora(model, model_slice.modules, tune.parts, tune.r, tune.alpha, tune.dropout,
                           model_slice.lora_targets, tune.match, tune.init)
    else:
        freeze_all_but(model, [p for ps in tuned_prefixes(model_slice.modules, tune.parts).values() for p in ps])
    trainable, total = count_trainable(model)
    log.info("trainable parameters: %.2fM of %.2fM", trainable / 1e6, total / 1e6)
    return model


def training_metrics(config: TrainingConfig, claim: RunClaim, accelerator: Accelerator) -> MetricLog:
    """The run's metric stream: ``train_log.jsonl`` in the attempt folder, and the trackers ``report_to`` names."""
    keep = None if claim.resume_from is None else int(claim.resume_from.parent.name.removeprefix("step_"))
    return MetricLog(claim.work_dir, claim.run_dir.name, config.run.report_to, config.resolved,
                     claim.work_dir / "train_log.jsonl", accelerator.is_main_process, Path(config.run.root),
                     keep_until=keep)


def save_and_finish(accelerator: Accelerator, prepared: torch.nn.Module, claim: RunClaim, metrics: MetricLog,
                    info: dict[str, Any], processor: Any | None = None, merge: bool = False) -> Path:
    """Keep the trained weights (``merge``: LoRA merged into a plain model) and ``run.json``, then move the attempt
    into place; every process takes part (ZeRO-3 gathers the shards). The trackers finish first: their files move
    with the folder."""
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(prepared)
    metrics.close()
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(prepared)
        if merge:
            final, state_dict = final.merge_and_unload(), None
        save_checkpoint(claim.work_dir / CHECKPOINT, final, processor, state_dict)
        save_run(claim.work_dir, info)
        finish_attempt(claim)
        log.info("saved %s", claim.run_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return claim.run_dir


def start_training(cfg: DictConfig, kind: str) -> tuple[Compat, TrainingConfig, Accelerator, Benchmark]:
    """A finetune or forget run's first steps: the compat switches set their values, the config is read into its
    slices (a bad value stops here), the processes and the seed are set, and the benchmark is opened (its built-in
    data written on first use; its package imported, with any method it adds)."""
    compat = with_compat(cfg, "train")
    config = TrainingConfig.from_config(cfg, kind)
    accelerator = make_accelerator(config.train.grad_accum)
    match_clipping(accelerator, config.train.max_grad_norm)
    note_accumulation(accelerator, config.train.grad_accum)
    seed_everything(config.seed)
    return compat, config, accelerator, build_benchmark(config.benchmark, accelerator)
