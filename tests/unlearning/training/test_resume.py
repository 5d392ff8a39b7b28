"""A run killed after a kept step goes on from it (weights, optimiser, schedule, data order, random generators) to
the very weights an uninterrupted run ends with; its training log continues the interrupted one's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

from unlearning.recipes.common import CONFIG_DIR
from unlearning.recipes.finetune import finetune
from unlearning.recipes.forget import forget
from unlearning.training import trainer

FORGET = ("method=gd", "batch_size=2", "lora.r=4", "lora.alpha=8", "lora.dropout=0.1", "lr=1e-2", "max_steps=5",
          "epochs=4")  # forget10 of the test world: 6 examples, 3 batches an epoch; dropout draws from the generators


def compose_config(name: str, root: Path, data: Path, model: Path, *overrides: str):
    extra = [f"model_path={model}"] if name == "forget" else []
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose(name, overrides=[f"run_root={root}", f"data_dir={data}", f"model.path={model}", *extra,
                                        *overrides])


def killed_after(monkeypatch, step: int) -> None:
    """The process dies right after the training state of ``step`` is written (as a kill during the next step)."""
    save = trainer.save_state

    def save_then_die(folder, at, *args, **kwargs):
        save(folder, at, *args, **kwargs)
        if at == step:
            raise KeyboardInterrupt(f"killed after step {at}")

    monkeypatch.setattr(trainer, "save_state", save_then_die)


def weights(run: Path) -> dict[str, torch.Tensor]:
    files = sorted((run / "checkpoint").glob("*.safetensors"))
    assert files
    return {f"{f.name}/{k}": v for f in files for k, v in load_file(f).items()}


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())]


@pytest.mark.parametrize(("save_every", "killed_at"), [(2, 2), (3, 3)])  # mid-epoch; at an epoch's end
def test_a_killed_forget_run_resumes_to_the_uninterrupted_weights(monkeypatch, tmp_path: Path, fiu_dir: Path,
                                                                 tiny_dir: Path, save_every: int, killed_at: int):
    overrides = (*FORGET, f"save_every={save_every}")
    whole = forget(compose_config("forget", tmp_path / "whole", fiu_dir, tiny_dir, *overrides))
    killed_after(monkeypatch, killed_at)
    config = compose_config("forget", tmp_path / "resumed", fiu_dir, tiny_dir, *overrides)
    with pytest.raises(KeyboardInterrupt):
        forget(config)
    attempt = next((tmp_path / "resumed").rglob(".attempts/*/checkpoints"))
    assert not (attempt.parent / "run.json").exists()  # interrupted: the attempt, no finished run
    monkeypatch.undo()
    resumed = forget(config)
    assert resumed.name == whole.name
    ours, theirs = weights(resumed), weights(whole)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    assert losses(resumed) == losses(whole)  # the log of steps 1..k kept, k+1.. appended: the same trajectory
    kept = sorted(p.parent.name for p in (resumed / "checkpoints").glob("step_*/trainer_state.pt"))
    assert kept == [f"step_{4 if save_every == 2 else 3:06d}"]  # only the newest state is kept


def test_a_killed_finetune_resumes_and_resume_false_starts_again(monkeypatch, tmp_path: Path, fiu_dir: Path,
                                                                 tiny_dir: Path, caplog):
    overrides = ("split=retain", "max_steps=5", "save_every=2", "batch_size=4", "lr=3e-3")
    whole = finetune(compose_config("finetune", tmp_path / "whole", fiu_dir, tiny_dir, *overrides))
    killed_after(monkeypatch, 2)
    config = compose_config("finetune", tmp_path / "resumed", fiu_dir, tiny_dir, *overrides)
    with pytest.raises(KeyboardInterrupt):
        finetune(config)
    monkeypatch.undo()
    caplog.set_level("INFO")
    resumed = finetune(config)
    assert "resuming at optimiser step 2 of 5" in caplog.text
    ours, theirs = weights(resumed), weights(whole)
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key

    killed_after(monkeypatch, 2)
    again = compose_config("finetune", tmp_path / "again", fiu_dir, tiny_dir, *overrides)
    with pytest.raises(KeyboardInterrupt):
        finetune(again)
    monkeypatch.undo()
    caplog.clear()
    finetune(compose_config("finetune", tmp_path / "again", fiu_dir, tiny_dir, *overrides, "resume=false"))
    assert "resuming" not in caplog.text and "an earlier attempt at this run that did not finish" in caplog.text
