"""The training loop's bookkeeping: optimiser steps under accumulation, the schedule, the log, bad losses."""

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from unlearning.trainer import TrainSettings, train


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
    _, summary = train(model, data(), torch.stack, regression_loss, settings,
                       Accelerator(cpu=True, gradient_accumulation_steps=2), tmp_path / "log.jsonl")
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert summary["steps"] == 6 == len(records)  # 4 batches per epoch / accumulation 2 x 3 epochs
    assert records[-1]["lr"] == pytest.approx(0.0)  # the linear schedule ends exactly at the last step
    assert records[-1]["mse"] < records[0]["mse"]
    assert set(records[0]) == {"step", "epoch", "lr", "loss", "mse"}


def test_max_steps_caps_training(tmp_path: Path):
    settings = TrainSettings(lr=0.1, epochs=50, batch_size=4, max_steps=3)
    _, summary = train(torch.nn.Linear(1, 1), data(), torch.stack, regression_loss, settings,
                       Accelerator(cpu=True), tmp_path / "log.jsonl")
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
