"""Stage II: make a model forget a split with a registered method, through LoRA adapters.

    bash scripts/forget_lora.bash                               # built-in benchmark, tiny model, GA
    bash scripts/forget_lora.bash method=npo method.beta=0.2
    bash scripts/forget_lora.bash model=llava_phi3_mini data_dir=dataset/FIUBench forget_split=forget5 method=kl

The model starts from what the benchmark says (``benchmark.starts_from``: its finetune run on
``stage_one_split``, or the vanilla model) unless ``model_path`` names one. The method names the streams it
scores; each is checked against the benchmark's, and every example is rendered and every image decoded once,
before any file is written. The run trains in an attempt folder, moved into place when it finishes.
Methods needing a reference (KL, NPO) get the same weights with adapters disabled, or the frozen model named by
``reference_model`` (MLLMU-Bench's NPO "oracle"). With ``lora.r=0`` there is
no adapter: the tuned parts train in full (EFUF trains LLaVA's projector alone) and the run keeps a full model.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from omegaconf import DictConfig
from safetensors.torch import save_file

from unlearning.benchmarks import streams_elsewhere
from unlearning.data.examples import DataError
from unlearning.data.streams import (
    ANCHOR,
    StreamCollator,
    StreamSet,
    StreamUse,
    check_streams,
    validate_examples,
    with_modality,
)
from unlearning.models.loading import (
    load_model,
)
from unlearning.recipes.common import (
    CONFIG_DIR,
    prepare_run,
    resumption,
    save_and_finish,
    setup_logging,
    start_training,
    starting_model,
    step_saver,
    trainable_model,
    training_collator,
    training_metrics,
)
from unlearning.recipes.slices import TrainingConfig
from unlearning.runs.console import hydra_app
from unlearning.runs.folders import base_model_entry
from unlearning.training.hidden_states import forward_with_states, layer_paths
from unlearning.training.methods import StreamScores, build_method
from unlearning.training.passes import PassBatches, PassCollator, PassItems, pass_of
from unlearning.training.preparation import (
    PREPARED,
    STATISTICS_FILE,
    Preparation,
    gradient_masker,
    preparation_key,
    prepared_statistics,
    restrict_training,
)
from unlearning.training.trainer import train

log = logging.getLogger(__name__)


def forget(cfg: DictConfig) -> Path:
    compat, config, accelerator, benchmark = start_training(cfg, "forget")
    method = build_method(cfg.method)
    uses, streams, where = forget_streams(benchmark, method, cfg.method.name, config)
    check_reference(method, cfg.method.name, config)
    model_path = starting_model(config.forget.model_path, config.benchmark, config.model, config.group_dir, benchmark,
                                accelerator)
    collator = training_collator(model_path, config.model, config.prompt)
    validate_examples(collator, streams, where)
    dataset = StreamSet(streams, uses, config.seed, where)
    passes, pass_items = sequential_passes(config.forget.passes, method, cfg.method.name, uses, streams)
    claim = prepare_run(config, model_path, accelerator, streams, compat)
    if claim.state == "finished":
        return claim.run_dir
    with claim.held():  # the run folder's lock, let go however the attempt ends
        sizes = stream_sizes(streams)
        info = {"kind": "forget", "benchmark": benchmark.name, "model": config.model.name, "method": cfg.method.name,
                "split": config.forget.split, "forget_modality": config.forget.modality,
                "streams": {use.name: use.pairing for use in uses}, "stream_sizes": sizes,
                "stream_sources": {name: source for name, source in stream_sources(benchmark).items()
                                   if name in streams},
                "base_model": base_model_entry(claim.run_dir, model_path)}
        if not getattr(method, "trains", True):
            return edit_once(method, cfg.method.name, model_path, collator, streams, uses, config, accelerator,
                             claim, info)
        model = trainable_model(model_path, config.model, config.tune)
        before_step = method_hooks(method, cfg.method.name, model, collator, streams, uses, config, accelerator, claim)
        log.info("forgetting %s (%s) with %s: %s", config.forget.split, config.forget.modality, cfg.method.name,
                 ", ".join(f"{use.name} {len(streams[use.name])} ({use.pairing}{_empty_note(sizes[use.name])})"
                           for use in uses))
        scores = stream_scores(method, reference_model(config, accelerator), accelerator,
                               config.model.modules.get("language_model", ()))

        def step_loss(model, batch, progress):
            return method.loss(*scores(model, batch), progress)

        def pass_loss(model, batch, progress):
            name = pass_of(batch)
            loss = passes[name](*scores(model, batch))
            return loss, {f"{name}_pass": loss.item()}

        saver = step_saver(config.run.save_every, claim.work_dir, accelerator)
        metrics = training_metrics(config, claim, accelerator)
        settings = config.train
        if before_step is not None and settings.weight_decay:
            log.warning("%s masks gradients: weight decay %g would still move masked weights; training with 0",
                        cfg.method.name, settings.weight_decay)
            settings = dataclasses.replace(settings, weight_decay=0.0)
        if passes:
            log.info("sequential passes: every forget batch, then every retain batch, per epoch, at a constant rate")
            constant = dataclasses.replace(settings, scheduler="constant", warmup_ratio=0.0)
            prepared, summary = train(model, pass_items, PassCollator(collator), pass_loss, constant, accelerator,
                                      metrics, on_step=saver, before_step=before_step, resume=resumption(config, claim),
                                      batch_sampler=PassBatches(pass_items, settings.batch_size, settings.shuffle,
                                                                config.seed))
        else:
            prepared, summary = train(model, dataset, StreamCollator(collator, uses, reference_rows(method)), step_loss,
                                      settings, accelerator, metrics, on_step=saver, before_step=before_step,
                                      resume=resumption(config, claim))
        return save_and_finish(accelerator, prepared, claim, metrics, {
            **info, "passes": "sequential" if passes else "joint", "train": summary,
        }, processor=collator.processor if config.tune.r == 0 else None)


def preparation_for(method: Any, model: torch.nn.Module, collator: Any, streams: Mapping[str, list],
                    uses: Sequence[StreamUse], config: TrainingConfig, accelerator: Accelerator) -> Preparation:
    return Preparation(model.to(accelerator.device), collator, {use.name: streams[use.name] for use in uses},
                       config.train.batch_size, accelerator, config.model.modules.get("language_model", ()))


def run_preparation(method: Any, preparation: Preparation, config: TrainingConfig, claim: Any) -> None:
    """The method's preparation pass (``prepare``), cached by ``preparation_key``; its statistics handed to the
    method (``use_statistics``) and copied into the run folder."""
    key = preparation_key(claim.identity, method) if claim.identity is not None else claim.key
    statistics = prepared_statistics(method, preparation, config.group_dir / PREPARED, key)
    if preparation.accelerator.is_main_process:
        save_file(statistics, str(claim.work_dir / STATISTICS_FILE))
    if hasattr(method, "use_statistics"):
        method.use_statistics(statistics)


def method_hooks(method: Any, method_name: str, model: torch.nn.Module, collator: Any, streams: Mapping[str, list],
                 uses: Sequence[StreamUse], config: TrainingConfig, accelerator: Accelerator, claim: Any
                 ) -> Callable[[torch.nn.Module], None] | None:
    """What a method asks of training beyond its loss: only its modules trained (``trained_modules``), a
    preparation pass (``prepare``), and masks on every step's gradients (``gradient_masks``)."""
    modules = tuple(getattr(method, "trained_modules", ()))
    if modules:
        left = restrict_training(model, layer_paths(config.model.modules.get("language_model", ()), modules))
        log.info("%s trains %s only: %.2fM parameters", method_name, ", ".join(modules), left / 1e6)
    if hasattr(method, "prepare"):
        run_preparation(method, preparation_for(method, model, collator, streams, uses, config, accelerator),
                        config, claim)
    if not hasattr(method, "gradient_masks"):
        return None
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise ValueError(f"method {method_name!r} masks gradients, which DeepSpeed partitions: launch it without "
                         "DeepSpeed")
    masks = method.gradient_masks(model)
    kept = sum(int(mask.sum()) for mask in masks.values())
    log.info("%s: gradient masks on %d parameters keep %d of %d entries", method_name, len(masks), kept,
             sum(mask.numel() for mask in masks.values()))
    return gradient_masker(model, masks)


def edit_once(method: Any, method_name: str, model_path: str, collator: Any, streams: Mapping[str, list],
              uses: Sequence[StreamUse], config: TrainingConfig, accelerator: Accelerator, claim: Any,
              info: dict[str, Any]) -> Path:
    """A training-free method (``trains = False``): its preparation pass, then one edit of the weights; the edited
    model is the run's checkpoint (a full model, loaded back like any other)."""
    model = load_model(model_path, config.model.dtype, config.model.attn_implementation)
    model.requires_grad_(False)
    model.eval()
    if hasattr(method, "prepare"):
        run_preparation(method, preparation_for(method, model, collator, streams, uses, config, accelerator),
                        config, claim)
    start = time.perf_counter()
    with torch.no_grad():
        edited = method.edit(model)
    log.info("%s edited the model: %s", method_name, edited)
    metrics = training_metrics(config, claim, accelerator)
    metrics.log({"edit": 1.0}, 0)
    return save_and_finish(accelerator, model, claim, metrics, {
        **info, "passes": "none", "train": {"steps": 0, "seconds": round(time.perf_counter() - start, 2),
                                             "edit": edited},
    }, processor=collator.processor)


def forget_streams(benchmark: Any, method: Any, method_name: str, config: TrainingConfig
                   ) -> tuple[Sequence[StreamUse], dict[str, list], str]:
    """The streams the method scores (checked against the benchmark's), each read for the forget split in the
    forget modality; the forget stream first (training iterates over it)."""
    uses = method.streams()
    check_streams(method_name, uses, benchmark.name, benchmark.stream_names, streams_elsewhere(benchmark.name))
    where = f"benchmark {benchmark.name!r}, method {method_name!r}"
    forget = config.forget
    streams = {}
    for name in dict.fromkeys([ANCHOR, *(use.name for use in uses)]):
        try:
            streams[name] = with_modality(benchmark.stream(name, forget.split), forget.modality)
        except DataError as error:
            raise DataError(f"{where}, stream {name!r}: {error}") from error
    if not streams[ANCHOR]:
        raise DataError(f"{where}: forget split {forget.split!r} of {config.benchmark.data_dir} has no examples")
    return uses, streams, where


def check_reference(method: Any, method_name: str, config: TrainingConfig) -> None:
    """A method scoring the model before forgetting needs it: the adapter disabled (``lora.r > 0``) or a
    ``reference_model``; a reference for a method that scores none is a mistake."""
    reference = config.forget.reference_model
    if reference and not method.needs_reference:
        raise ValueError(f"reference_model is set, but method {method_name!r} scores no reference")
    if config.tune.r == 0 and method.needs_reference and not reference:
        raise ValueError(f"method {method_name!r} scores the model before forgetting (the adapter disabled); it "
                         "needs lora.r > 0 or a reference_model")


def reference_model(config: TrainingConfig, accelerator: Accelerator) -> torch.nn.Module | None:
    """The frozen model named by ``reference_model`` (MLLMU-Bench's NPO "oracle"), or None (the adapter disabled)."""
    path = config.forget.reference_model
    if not path:
        return None
    net = load_model(path, config.model.dtype, config.model.attn_implementation)
    net.requires_grad_(False)
    log.info("reference scores from %s (frozen)", path)
    return net.to(accelerator.device).eval()


def stream_scores(method: Any, reference_net: torch.nn.Module | None, accelerator: Accelerator,
                  language_model: Sequence[str] = ()
                  ) -> Callable[[torch.nn.Module, dict], tuple[StreamScores, StreamScores | None]]:
    """Scores of a batch's streams by the model and, for methods that need one, by the reference: the named
    model, or the same weights with the adapter disabled; only the rows the loss reads. The outputs of the layers
    the method names (``hidden_layers``, under ``language_model``) are caught in the same forward passes."""
    keep_full = getattr(method, "needs_full_logits", False)  # losses over every position (the originals' KL)
    layers = tuple(getattr(method, "hidden_layers", ()))

    def forward(net: torch.nn.Module, batch: dict) -> StreamScores:
        answer, states = forward_with_states(net, batch, language_model, layers, keep_full)
        return StreamScores(answer, batch["streams"], states)

    def scores(model: torch.nn.Module, batch: dict) -> tuple[StreamScores, StreamScores | None]:
        policy = forward(model, batch)
        reference = None
        rows = batch.get("reference", batch)  # only the streams whose reference scores the loss reads
        if reference_net is not None:
            with torch.no_grad():
                reference = forward(reference_net, rows)
        elif method.needs_reference:
            with torch.no_grad(), accelerator.unwrap_model(model).disable_adapter():
                reference = forward(accelerator.unwrap_model(model), rows)
        return policy, reference

    return scores


def reference_rows(method: Any) -> tuple[str, ...] | None:
    """The streams whose reference scores the method's loss reads (its ``reference_streams``), or None for all of
    them. Losses over every position keep the whole batch: their reference must have the policy's padded shape."""
    if not method.needs_reference or getattr(method, "needs_full_logits", False):
        return None
    return getattr(method, "reference_streams", None)


def sequential_passes(passes: str, method: Any, method_name: str, uses: Any, streams: dict[str, list]
                      ) -> tuple[dict[str, Any] | None, PassItems | None]:
    """``passes=sequential`` (MLLMU-Bench's compat): the method's per-pass losses and the items in pass order; a
    method that scores the forget set alone trains the same either way, one without a sequential form jointly."""
    if passes != "sequential":
        return None, None
    if [use.name for use in uses] == ["forget"]:
        return None, None
    if not hasattr(method, "sequential_passes"):
        log.warning("method %s has no sequential form (gd and kl have one); trained jointly", method_name)
        return None, None
    if [use.name for use in uses] != ["forget", "retain"]:
        raise ValueError(f"sequential passes take the forget and retain streams; method {method_name!r} scores "
                         f"{[use.name for use in uses]}")
    return method.sequential_passes(), PassItems(streams["forget"], streams["retain"])


def stream_sizes(streams: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, int]]:
    """Each stream's examples and how many have an empty answer (a release's empty model answers are data: they
    train the end of the turn alone)."""
    return {name: {"examples": len(examples), "empty_answers": sum(not example.answer.strip() for example in examples)}
            for name, examples in streams.items()}


def _empty_note(size: Mapping[str, int]) -> str:
    return f", {size['empty_answers']} empty answers" if size["empty_answers"] else ""


def stream_sources(benchmark: Any) -> dict[str, str]:
    """A benchmark's optional ``stream_sources()``: where streams not read from its release come from (PO's
    refusals: the release's prompt.json or the toolkit's packaged list)."""
    return benchmark.stream_sources() if hasattr(benchmark, "stream_sources") else {}


@hydra_app(version_base=None, config_path=CONFIG_DIR, config_name="forget")
def main(cfg: DictConfig) -> None:
    setup_logging()
    forget(cfg)


if __name__ == "__main__":
    main()
