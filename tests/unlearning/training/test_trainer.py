"""The training loop's bookkeeping: optimiser steps under accumulation, the schedule, the log, bad losses."""

import json
import math
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from unlearning.runs.trackers import MetricLog
from unlearning.training.trainer import TrainSettings, train


def regression_loss(model, batch, progress):
    prediction = model(batch[:, :1]).squeeze(-1)
    loss = ((prediction - batch[:, 1]) ** 2).mean()
    return loss, {"mse": loss.item()}


def data(n: int = 16) -> list[torch.Tensor]:
    x = torch.linspace(-1, 1, n)
    return [torch.stack([a, 3 * a + 1]) for a in x]


def test_accumulation_counts_optimiser_steps_and_logs_each(tmp_path: Path):
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    settings = TrainSettings(lr=0.1, epochs=3, batch_size=4, scheduler="linear", weight_decay=0.0)
    with MetricLog(tmp_path, "t", jsonl=tmp_path / "log.jsonl") as metrics:
        _, summary = train(model, data(), torch.stack, regression_loss, settings,
                           Accelerator(cpu=True, gradient_accumulation_steps=2), metrics)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert summary["steps"] == 6 == len(records)  # 4 batches per epoch / accumulation 2 x 3 epochs
    assert records[-1]["lr"] == pytest.approx(0.0)  # the linear schedule ends exactly at the last step
    assert records[-1]["mse"] < records[0]["mse"]
    assert set(records[0]) == {"step", "epoch", "lr", "loss", "mse", "grad_norm", "step_seconds", "tokens_per_second"}
    assert all(r["step_seconds"] > 0 and r["grad_norm"] > 0 for r in records)


def test_the_logged_gradient_norm_is_the_norm_before_clipping(tmp_path: Path):
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    batch = torch.stack(data(4))
    reference = torch.nn.Linear(1, 1)
    reference.load_state_dict(model.state_dict())
    regression_loss(reference, batch, None)[0].backward()
    expected = torch.cat([p.grad.reshape(-1) for p in reference.parameters()]).norm().item()
    settings = TrainSettings(lr=0.1, epochs=1, batch_size=4, max_grad_norm=0.01, shuffle=False)
    with MetricLog(tmp_path, "t", jsonl=tmp_path / "log.jsonl") as metrics:
        train(model, data(4), torch.stack, regression_loss, settings, Accelerator(cpu=True), metrics)
    (record,) = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert expected > 0.01 and record["grad_norm"] == pytest.approx(expected, rel=1e-6)


def test_max_steps_caps_training(tmp_path: Path):
    settings = TrainSettings(lr=0.1, epochs=50, batch_size=4, max_steps=3)
    _, summary = train(torch.nn.Linear(1, 1), data(), torch.stack, regression_loss, settings, Accelerator(cpu=True))
    assert summary["steps"] == 3


def test_non_finite_loss_stops_training():
    def nan_loss(model, batch, progress):
        return model(batch[:, :1]).sum() * float("nan"), {}

    with pytest.raises(FloatingPointError, match="loss became nan at step 0"):
        train(torch.nn.Linear(1, 1), data(), torch.stack, nan_loss, TrainSettings(lr=0.1, epochs=1, batch_size=4),
              Accelerator(cpu=True))


def test_empty_training_set_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        train(torch.nn.Linear(1, 1), [], torch.stack, regression_loss, TrainSettings(lr=0.1, epochs=1, batch_size=4),
              Accelerator(cpu=True))


def _seen_order(settings: TrainSettings) -> list[float]:
    seen: list[float] = []

    def collate(items):
        batch = torch.stack(items)
        seen.extend(batch[:, 0].tolist())
        return batch

    train(torch.nn.Linear(1, 1), data(8), collate, regression_loss, settings, Accelerator(cpu=True))
    return seen


def test_file_order_when_not_shuffled():
    """FIUBench's original (DataLoader(shuffle=False)): every epoch in file order; the default shuffles, seeded."""
    in_order = [float(x[0]) for x in data(8)]
    assert _seen_order(TrainSettings(lr=0.1, epochs=2, batch_size=2, shuffle=False)) == in_order * 2
    shuffled = _seen_order(TrainSettings(lr=0.1, epochs=1, batch_size=2, seed=3))
    assert sorted(shuffled) == in_order and shuffled != in_order
    assert shuffled == _seen_order(TrainSettings(lr=0.1, epochs=1, batch_size=2, seed=3))


def test_worker_processes_collate_the_same_batches():
    """num_workers > 0 collates (preprocesses images) in background processes while the model runs: the same
    batches in the same order, and no part of a run's identity."""
    from unlearning.runs.identity import identity_hash, training_identity

    def batches(workers: int) -> list[float]:
        seen: list[float] = []

        def loss(model, batch, progress):  # runs in the main process, unlike the collation
            seen.extend(batch[:, 0].tolist())
            return regression_loss(model, batch, progress)

        settings = TrainSettings(lr=0.1, epochs=2, batch_size=2, seed=3, num_workers=workers)
        train(torch.nn.Linear(1, 1), data(8), torch.stack, loss, settings, Accelerator(cpu=True))
        return seen

    assert batches(2) == batches(0) and len(batches(0)) == 16
    assert identity_hash(training_identity({"lr": 1, "num_workers": 2}, "base")) == identity_hash(
        training_identity({"lr": 1, "num_workers": 0}, "base"))


def test_weight_decay_exemptions():
    """Default: no decay on 1-D parameters (biases and norm weights); ``bias``: only on names holding "bias"."""
    from unlearning.training.trainer import _optimizer

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    names = {id(p): n for n, p in model.named_parameters()}

    def groups(exempt: str) -> dict[float, set[str]]:
        optimizer = _optimizer(model, TrainSettings(lr=0.1, epochs=1, batch_size=1, weight_decay=0.01,
                                                    decay_exempt=exempt))
        return {g["weight_decay"]: {names[id(p)] for p in g["params"]} for g in optimizer.param_groups}

    assert groups("1d") == {0.01: {"0.weight"}, 0.0: {"0.bias", "1.weight", "1.bias"}}
    assert groups("bias") == {0.01: {"0.weight", "1.weight"}, 0.0: {"0.bias", "1.bias"}}
    with pytest.raises(ValueError, match="decay_exempt must be one of"):
        TrainSettings(lr=0.1, epochs=1, batch_size=1, decay_exempt="norms")


def test_warmup_steps_are_rounded_as_fiubench_rounded_them(tmp_path: Path):
    """forget.py:283 / finetune.py:321 take round(0.06 x steps): 60 steps warm up over 4 (0.06 x 60 = 3.6), so the
    rate after the first step is lr / 4 (int() would give 3 steps and lr / 3)."""
    settings = TrainSettings(lr=0.1, epochs=60, batch_size=16, warmup_ratio=0.06, scheduler="linear", log_every=1)
    with MetricLog(tmp_path, "t", jsonl=tmp_path / "log.jsonl") as metrics:
        train(torch.nn.Linear(1, 1), data(), torch.stack, regression_loss, settings, Accelerator(cpu=True), metrics)
    rates = [json.loads(line)["lr"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(rates) == 60 and rates[0] == pytest.approx(0.1 / 4) and rates[3] == pytest.approx(0.1)


def test_a_schedule_sized_with_another_accumulation(tmp_path: Path):
    """FIUBench's Stage I sized its cosine with accumulation 4 while DeepSpeed accumulated 16: here 4 batches per
    epoch, accumulation 2 (2 steps) and the schedule sized with 1 (4 steps), so after the last step the cosine is at
    step 2 of 4: 0.5 x (1 + cos(pi / 2)) = 0.5 of lr, not 0."""
    settings = TrainSettings(lr=0.1, epochs=1, batch_size=4, shuffle=False, schedule_accum=1, log_every=1)
    with MetricLog(tmp_path, "t", jsonl=tmp_path / "log.jsonl") as metrics:
        train(torch.nn.Linear(1, 1), data(), torch.stack, regression_loss, settings,
              Accelerator(cpu=True, gradient_accumulation_steps=2), metrics)
    rates = [json.loads(line)["lr"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(rates) == 2 and rates[-1] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 2 / 4)))
    with pytest.raises(ValueError, match="schedule_accum must be at least 1"):
        TrainSettings(lr=0.1, epochs=1, batch_size=4, schedule_accum=0)
