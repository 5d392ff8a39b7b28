"""One training loop for Stage-I finetuning and Stage-II forgetting, on accelerate (DDP or DeepSpeed by config).

The loop knows nothing about methods: it gets a dataset, a collate function and
``step_loss(model, batch, progress)``. Optimiser steps, not micro-batches, are what the schedule, ``max_steps``,
the progress a loss sees and the log count; ``on_step(step, total_steps, model)`` runs on every process after
each optimiser step, with the prepared model (intermediate checkpoints). Each step logs (``MetricLog``: JSONL and
the configured trackers) the loss and its parts, the learning rate, the gradient norm before clipping, the step's
seconds and its tokens per second.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm
from transformers import get_scheduler

from unlearning.runs.resources import peak_memory_mb
from unlearning.runs.trackers import MetricLog
from unlearning.training.master_weights import MasterWeightAdamW, needs_master_weights
from unlearning.training.progress import Progress
from unlearning.training.resume import Resume, restore, rng_restorer, save_state

log = logging.getLogger(__name__)

DECAY_EXEMPT = ("1d", "bias")
StepLoss = Callable[[torch.nn.Module, Any, Progress], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class TrainSettings:
    lr: float
    epochs: int
    batch_size: int
    grad_accum: int = 1
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0
    scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    max_steps: int | None = None  # stop after this many optimiser steps (smoke runs)
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0
    shuffle: bool = True  # False: batches in file order (FIUBench's original Stage I and forgetting)
    decay_exempt: str = "1d"  # no weight decay on: "1d" biases and norm weights | "bias" names holding "bias"
    adam_eps: float = 1e-8  # AdamW's epsilon (torch's default; MLLMU-Bench's transformers.AdamW used 1e-6)
    # the accumulation the schedule is sized with (None: the one used). FIUBench's Stage I sized its cosine with
    # finetune.yaml's 4 while DeepSpeed accumulated 16, so its rate ended near 0.85 x lr (compat)
    schedule_accum: int | None = None

    def __post_init__(self) -> None:
        """Refuse settings that would train something else than asked (``epochs=0`` trained one step and
        saved the run as finished), before any file is written."""
        numbers = {"lr": self.lr, "weight_decay": self.weight_decay, "warmup_ratio": self.warmup_ratio,
                   "max_grad_norm": self.max_grad_norm, "adam_eps": self.adam_eps}
        for name, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
        counts = {"epochs": self.epochs, "batch_size": self.batch_size, "grad_accum": self.grad_accum,
                  "log_every": self.log_every, "seed": self.seed, "num_workers": self.num_workers}
        if self.max_steps is not None:
            counts["max_steps"] = self.max_steps
        if self.schedule_accum is not None:
            counts["schedule_accum"] = self.schedule_accum
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
        for name in ("epochs", "batch_size", "grad_accum", "log_every",
                     *(name for name in ("max_steps", "schedule_accum") if name in counts)):
            if counts[name] < 1:
                raise ValueError(f"{name} must be at least 1, got {counts[name]}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ValueError("weight_decay and max_grad_norm must not be negative")
        if not isinstance(self.shuffle, bool):
            raise ValueError(f"shuffle must be true or false, got {self.shuffle!r}")
        if self.decay_exempt not in DECAY_EXEMPT:
            raise ValueError(f"decay_exempt must be one of {DECAY_EXEMPT}, got {self.decay_exempt!r}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _optimizer(model: torch.nn.Module, settings: TrainSettings, deepspeed: bool = False) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and norm weights (1-D parameters), or, with ``decay_exempt="bias"``, on
    parameters whose name holds "bias" only (FIUBench's original: norm weights decay too). Trainable parameters
    held in bf16/fp16 are updated through fp32 master weights (``master_weights``), as the originals' DeepSpeed
    bf16 mode did."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            exempt = "bias" in name if settings.decay_exempt == "bias" else parameter.ndim < 2
            (no_decay if exempt else decay).append(parameter)
    groups = [g for g in ({"params": decay, "weight_decay": settings.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    if needs_master_weights(decay + no_decay, deepspeed):
        log.info("fp32 master weights for the trainable parameters held in %s",
                 ", ".join(sorted({str(p.dtype).removeprefix("torch.") for p in decay + no_decay})))
        return MasterWeightAdamW(groups, lr=settings.lr, eps=settings.adam_eps)
    return torch.optim.AdamW(groups, lr=settings.lr, eps=settings.adam_eps)


def _data_state(generator: torch.Generator, dataset: Any) -> dict[str, Any]:
    """What an epoch's batches are drawn from: the order's generator and the dataset's own random state (random
    partners), if it keeps one."""
    state = {"generator": generator.get_state()}
    if hasattr(dataset, "state_dict"):
        state["dataset"] = dataset.state_dict()
    return state


def _set_data_state(state: dict[str, Any], generator: torch.Generator, dataset: Any) -> None:
    generator.set_state(state["generator"])
    if "dataset" in state:
        dataset.load_state_dict(state["dataset"])


def _batches(loader: DataLoader, epochs: int, generator: torch.Generator, dataset: Any, first_epoch: int = 0,
             skip: int = 0, on_resume: Callable[[], None] | None = None
             ) -> Iterator[tuple[int, int, dict[str, Any], Any]]:
    """(epoch, micro-batch index in it, the data state when the epoch began, batch) from ``first_epoch`` on, its
    first ``skip`` micro-batches drawn and left out (a resumed run). ``on_resume`` sets the random generators as
    they were at the saved step, where the uninterrupted run stood: before the epoch's batches are drawn when it
    resumes at an epoch's start, after the skipped ones otherwise."""
    for epoch in range(first_epoch, epochs):
        if epoch == first_epoch and on_resume is not None and skip == 0:
            on_resume()
        epoch_state = _data_state(generator, dataset)
        for index, batch in enumerate(loader):
            if epoch == first_epoch and index < skip:
                continue
            if epoch == first_epoch and on_resume is not None and skip and index == skip:
                on_resume()
            yield epoch, index, epoch_state, batch


def train(
    model: torch.nn.Module,
    dataset: Sequence[Any],
    collate: Callable[[list[Any]], dict[str, Any]],
    step_loss: StepLoss,
    settings: TrainSettings,
    accelerator: Accelerator,
    metrics: MetricLog | None = None,
    on_step: Callable[[int, int, torch.nn.Module], None] | None = None,
    batch_sampler: Sampler | None = None,
    before_step: Callable[[torch.nn.Module], None] | None = None,
    resume: Resume | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train ``model`` in place; returns the accelerate-prepared model and a summary (steps, seconds, last values).
    ``batch_sampler`` replaces the shuffled batches (sequential passes: ``unlearning.training.passes``);
    ``before_step`` sees the accumulated gradients before clipping and each optimiser step (gradient masks).
    ``resume`` keeps the training state every ``resume.every`` steps and goes on from ``resume.start``
    (``unlearning.training.resume``)."""
    if len(dataset) == 0:
        raise ValueError("training set is empty")
    generator = torch.Generator().manual_seed(settings.seed)
    if batch_sampler is not None:
        loader = DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate, num_workers=settings.num_workers)
    else:
        loader = DataLoader(
            dataset, batch_size=settings.batch_size, shuffle=settings.shuffle, collate_fn=collate,
            num_workers=settings.num_workers, generator=generator,
        )
    optimizer = _optimizer(model, settings, accelerator.distributed_type == DistributedType.DEEPSPEED)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    accum = accelerator.gradient_accumulation_steps
    steps_per_epoch = math.ceil(len(loader) / accum)
    total_steps = steps_per_epoch * settings.epochs
    if settings.max_steps is not None:
        total_steps = min(total_steps, settings.max_steps)
    # Not prepared: stepped once per optimiser step, so the schedule spans exactly total_steps.
    schedule_steps = total_steps
    if settings.schedule_accum is not None:
        schedule_steps = max(total_steps, math.ceil(len(loader) / settings.schedule_accum) * settings.epochs)
    # round() as FIUBench's forget.py:283 and finetune.py:321 (forget10: 4 warm-up steps, not int()'s 3)
    scheduler = get_scheduler(
        settings.scheduler, optimizer, num_warmup_steps=round(settings.warmup_ratio * schedule_steps),
        num_training_steps=schedule_steps,
    )
    log.info(
        "training %d optimiser steps (%d epochs x %d, batch %d x accum %d x %d processes)",
        total_steps, settings.epochs, steps_per_epoch, settings.batch_size, accum, accelerator.num_processes,
    )
    deepspeed = accelerator.distributed_type == DistributedType.DEEPSPEED
    if resume is not None and deepspeed and resume.start is not None:
        raise ValueError("resuming is not supported under DeepSpeed (its optimiser state is sharded): pass "
                         "resume=false to train the run again from the start, or launch without DeepSpeed")
    if resume is not None and deepspeed and resume.every:
        log.warning("DeepSpeed shards the optimiser state: the step checkpoints are kept without a training state, "
                    "so this run cannot be resumed")
        resume = None
    first_epoch, skip, on_resume = 0, 0, None
    if resume is not None and resume.start is not None:
        state = resume.start
        restore(state, accelerator.unwrap_model(model), optimizer, scheduler)
        _set_data_state(state["epoch_data"], generator, dataset)
        first_epoch, skip = int(state["epoch"]), int(state["batches_in_epoch"])
        if batch_sampler is not None and hasattr(batch_sampler, "set_epoch"):
            batch_sampler.set_epoch(first_epoch)
        on_resume = rng_restorer(resume.folder, resume.step, accelerator.process_index)
        log.info("resuming at optimiser step %d of %d (epoch %d, %d micro-batches of it done)", resume.step,
                 total_steps, first_epoch, skip)
    model.train()
    step, start, window, last = resume.step if resume is not None else 0, time.perf_counter(), [], {}
    step_start, tokens, grad_norm = time.perf_counter(), 0, None
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(
            tqdm(total=total_steps, initial=step, desc="train",
                 disable=None if accelerator.is_local_main_process else True))
        for epoch, index, epoch_state, batch in _batches(loader, settings.epochs, generator, dataset, first_epoch,
                                                         skip, on_resume):
            with accelerator.accumulate(model):
                loss, parts = step_loss(model, batch, Progress(step, total_steps))
                accelerator.backward(loss)
                if accelerator.sync_gradients and before_step is not None:
                    before_step(model)
                if accelerator.sync_gradients:  # the norm before clipping (none clipped without max_grad_norm)
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm or math.inf)
                optimizer.step()
                optimizer.zero_grad()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}")
            window.append({"loss": loss.item(), **parts})
            tokens += _tokens(batch)
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            lr = scheduler.get_last_lr()[0]  # the schedule after this step (0 at the end of a linear one)
            step += 1
            last = {key: sum(w[key] for w in window) / len(window) for key in window[0]}
            window = []
            seconds, step_start = time.perf_counter() - step_start, time.perf_counter()
            if metrics is not None:
                metrics.log({"epoch": epoch, "lr": lr, **last, "grad_norm": _number(grad_norm),
                             "step_seconds": round(seconds, 4),
                             "tokens_per_second": round(tokens * accelerator.num_processes / seconds, 1)}, step)
            tokens = 0
            progress.update(1)
            if on_step is not None:
                on_step(step, total_steps, model)
            if resume is not None and resume.every and step % resume.every == 0 and step < total_steps:
                ended = index + 1 == len(loader)  # the next step begins the next epoch, drawn from here
                position = {"epoch": epoch + 1 if ended else epoch, "batches_in_epoch": 0 if ended else index + 1,
                            "epoch_data": _data_state(generator, dataset) if ended else epoch_state}
                save_state(resume.folder, step, position, accelerator.unwrap_model(model), optimizer, scheduler,
                           accelerator.is_main_process, accelerator.process_index)
            if step % settings.log_every == 0 or step == total_steps:
                progress.set_postfix(loss=f"{last['loss']:.4f}")
                log.info("step %d/%d %s", step, total_steps, " ".join(f"{k}={v:.4g}" for k, v in last.items()))
            if step >= total_steps:
                break
    seconds = time.perf_counter() - start
    log.info("trained %d steps in %.1f s (%.0f ms/step)", step, seconds, 1000 * seconds / max(step, 1))
    return model, {"steps": step, "seconds": round(seconds, 2), "final": last, **peak_memory_mb()}


def _tokens(batch: Any) -> int:
    """The tokens a batch feeds the model (its attention masks), for tokens per second."""
    if isinstance(batch, dict):
        inputs = batch.get("inputs")
        if isinstance(inputs, dict) and "attention_mask" in inputs:
            return int(inputs["attention_mask"].sum())
        return sum(_tokens(value) for value in batch.values() if isinstance(value, dict))
    return 0


def _number(value: Any) -> float | None:
    return None if value is None else float(value)
