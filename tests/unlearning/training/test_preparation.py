"""What a method can ask of the engine beyond its loss (issue 23): hidden states of named layers caught in the step's
forward pass, only some modules trained, a preparation pass cached by the run's identity, masks on the gradients,
and a training-free edit saved as the run's checkpoint. Methods made here for the test stand in for real ones
(``build_method`` is patched), so the mechanics are checked apart from any method's formula."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

from unlearning.data.streams import RANDOM, StreamUse
from unlearning.inference.scoring import mean_nll
from unlearning.models.loading import load_model
from unlearning.recipes.common import CONFIG_DIR
from unlearning.recipes.forget import forget
from unlearning.training.hidden_states import capture, find_modules
from unlearning.training.preparation import PREPARED, STATISTICS_FILE, preparation_key

COMMON = ("method=ga", "max_steps=2", "batch_size=2", "lora.r=4", "lora.alpha=8", "lr=1e-2")


def forget_config(root: Path, data: Path, model: Path, *overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose("forget", overrides=[f"run_root={root}", f"data_dir={data}", f"model.path={model}",
                                            f"model_path={model}", *COMMON, *overrides])


def with_method(monkeypatch, method) -> None:
    monkeypatch.setattr("unlearning.recipes.forget.build_method", lambda cfg: method)


def test_captured_layer_outputs_are_the_models_hidden_states(tiny_model, tiny_processor, fiu_dir: Path):
    from unlearning.data.collator import ChatCollator, stop_token_ids
    from unlearning.data.examples import Example
    from unlearning.inference.scoring import prepare_inputs

    collator = ChatCollator(tiny_processor, stop_token_ids(tiny_processor.tokenizer, tiny_model.generation_config))
    image = next((fiu_dir / "SFHQ").glob("*.jpg"))
    batch = collator([Example("Who is this?", "juno fairbanks.", image, "a"), Example("Job?", "a baker.", None, "b")])
    with torch.no_grad(), capture(tiny_model, ["model.language_model.layers.0"]) as caught:
        outputs = tiny_model(**prepare_inputs(tiny_model, batch["inputs"]), output_hidden_states=True)
    assert torch.equal(caught["model.language_model.layers.0"], outputs.hidden_states[1])
    with pytest.raises(ValueError, match="layer 'model.language_model.layers.9': no modules"):
        find_modules(tiny_model, ["model.language_model.layers.9"])


@dataclass
class HiddenGA:
    """GA plus a term on a layer's output: checks the states reach the loss for policy and reference."""

    needs_reference = True
    hidden_layers = ("layers.1",)
    seen: list = field(default_factory=list)

    def streams(self):
        return (StreamUse("forget"), StreamUse("retain", RANDOM))

    def loss(self, policy, reference, progress):
        ours, theirs = policy.hidden("retain", "layers.1"), reference.hidden("retain", "layers.1")
        self.seen.append((ours.values.shape, int(ours.attention.sum()), int(ours.answer.sum()),
                          float((ours.values - theirs.values).detach().abs().max())))
        drift = (ours.positions() - theirs.positions()).square().sum(-1).mean()
        return -mean_nll(policy["forget"]) + drift, {"drift": drift.item()}


def test_hidden_states_of_policy_and_reference_reach_the_loss(tmp_path: Path, fiu_dir: Path, tiny_dir: Path,
                                                              monkeypatch):
    method = HiddenGA()
    with_method(monkeypatch, method)
    run = forget(forget_config(tmp_path, fiu_dir, tiny_dir))
    (shape, tokens, answers, first_gap), (_, _, _, second_gap) = method.seen
    assert shape[0] == 2 and shape[2] == 64 and 0 < answers < tokens <= shape[0] * shape[1]
    assert first_gap < 1e-6 < second_gap  # the adapter starts as the reference (B = 0), then moves away from it
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["drift"] < 1e-10 < log[1]["drift"]


@dataclass
class MaskedGA:
    """GA whose preparation pass sums squared forget gradients (a Fisher diagonal) and keeps the larger half of
    each LoRA parameter's entries: the other half must never move."""

    needs_reference = False
    calls: list = field(default_factory=list)
    start: dict = field(default_factory=dict)
    masks: dict = field(default_factory=dict)
    trained_modules = ("layers.1.mlp",)

    def streams(self):
        return (StreamUse("forget"),)

    def loss(self, policy, reference, progress):
        return -mean_nll(policy["forget"]), {}

    def prepare(self, preparation):
        self.calls.append(1)
        sums = {name: torch.zeros_like(p) for name, p in preparation.model.named_parameters() if p.requires_grad}
        for batch in preparation.batches("forget"):
            answer, _ = preparation.forward(batch)
            preparation.model.zero_grad()
            mean_nll(answer).backward()
            for name, parameter in preparation.model.named_parameters():
                if name in sums and parameter.grad is not None:
                    sums[name] += parameter.grad.square()
        preparation.model.zero_grad()
        return {name.replace(".", "|"): value for name, value in sums.items()}

    def use_statistics(self, statistics):
        self.statistics = {name.replace("|", "."): value for name, value in statistics.items()}

    def gradient_masks(self, model):
        for name, parameter in model.named_parameters():
            if name in self.statistics and parameter.requires_grad:
                fisher = self.statistics[name] + torch.arange(parameter.numel()).reshape(parameter.shape) * 1e-12
                self.masks[name] = (fisher >= fisher.flatten().median()).float()
                self.start[name] = parameter.detach().clone()
        return self.masks


def test_masked_entries_never_move_and_only_the_named_modules_train(tmp_path: Path, fiu_dir: Path, tiny_dir: Path,
                                                                    monkeypatch):
    method = MaskedGA()
    with_method(monkeypatch, method)
    run = forget(forget_config(tmp_path, fiu_dir, tiny_dir))  # weight decay 0.01 in the recipe: set to 0
    adapter = load_file(str(run / "checkpoint" / "adapter_model.safetensors"))
    assert method.masks and all(".layers.1.mlp." in name for name in method.masks)
    for name, mask in method.masks.items():
        saved = next(value for key, value in adapter.items() if key in name.replace(".default", ""))
        start = method.start[name]
        assert torch.equal(saved[mask == 0], start[mask == 0])  # masked: not moved at all
        if "lora_B" in name:
            assert not torch.equal(saved[mask == 1], start[mask == 1])  # the rest trained
    untouched = [key for key in adapter if ".layers.1.mlp." not in key and "lora_B" in key]
    assert untouched and all(adapter[key].abs().max() == 0 for key in untouched)  # B starts at 0 and never trained


def test_the_preparation_pass_is_reused_on_resume_and_redone_on_other_data(tmp_path: Path, fiu_dir: Path,
                                                                           tiny_dir: Path, monkeypatch):
    method = MaskedGA()
    with_method(monkeypatch, method)
    run = forget(forget_config(tmp_path, fiu_dir, tiny_dir))
    group = run.parent
    (cached,) = (group / PREPARED).iterdir()
    assert (cached / STATISTICS_FILE).is_file() and (run / STATISTICS_FILE).is_file() and method.calls == [1]
    forget(forget_config(tmp_path, fiu_dir, tiny_dir, "overwrite=true"))  # the same identity: reused
    assert method.calls == [1]
    other_rate = forget(forget_config(tmp_path, fiu_dir, tiny_dir, "lr=5e-3"))  # another run, the same statistics
    assert other_rate != run and method.calls == [1] and len(list((group / PREPARED).iterdir())) == 1
    assert load_file(str(other_rate / STATISTICS_FILE)).keys() == load_file(str(run / STATISTICS_FILE)).keys()
    forget(forget_config(tmp_path, fiu_dir, tiny_dir, "lora.r=2", "lora.alpha=4"))  # other LoRA: other gradients
    assert method.calls == [1, 1]
    method.calls.clear()
    data = tmp_path / "data"
    shutil.copytree(fiu_dir, data)
    records = [json.loads(line) for line in (data / "full.json").read_text().splitlines()]
    forgotten = json.loads((data / "split.json").read_text())["forget10"][0]
    record = next(r for r in records if r["unique_id"] == forgotten)
    record["qa_list"][0]["answer"] += " Indeed."  # one forgotten answer changed: another identity
    (data / "full.json").write_text("".join(json.dumps(r) + "\n" for r in records))
    forget(forget_config(tmp_path, data, tiny_dir))
    assert method.calls == [1] and len(list((group / PREPARED).iterdir())) == 3


def test_the_preparation_key_leaves_out_what_acts_after_the_pass():
    identity = {"lr": 1e-3, "epochs": 8, "seed": 1, "lora": {"r": 4}, "data": "abc",
                "method": {"name": "m", "threshold": 1.0, "layers": 3}}

    class Listing:
        preparation_settings = ("layers",)

    def key(declaring=None, **changes):
        return preparation_key({**identity, **changes}, declaring or Listing())

    assert key(lr=1e-4, epochs=2) == key()  # the optimiser's settings
    assert key(method={**identity["method"], "threshold": 2.0}) == key()  # a setting the method does not list
    for changed in ({"method": {**identity["method"], "layers": 2}}, {"seed": 2}, {"lora": {"r": 8}},
                    {"data": "abd"}, {"method": {**identity["method"], "name": "n"}}):
        assert key(**changed) != key(), changed
    unlisted = object()  # a method listing nothing keeps every setting of its own
    assert key(unlisted, method={**identity["method"], "threshold": 2.0}) != key(unlisted)


@dataclass
class ZeroNeurons:
    """A training-free edit: the preparation pass averages |MLP activations| of layer 0 on the forget stream, the
    edit zeroes the two most active neurons (their down_proj columns)."""

    trains = False
    needs_reference = False
    chosen: list = field(default_factory=list)

    def streams(self):
        return (StreamUse("forget"),)

    def loss(self, policy, reference, progress):
        raise AssertionError("a training-free method has no loss to run")

    def prepare(self, preparation):
        total = None
        with torch.no_grad():
            for batch in preparation.batches("forget"):
                _, states = preparation.forward(batch, ["layers.0.mlp.act_fn"])
                values = states["layers.0.mlp.act_fn"].positions("answer").abs().sum(0)
                total = values if total is None else total + values
        return {"activation": total}

    def use_statistics(self, statistics):
        self.chosen = statistics["activation"].topk(2).indices.tolist()

    def edit(self, model):
        (down,) = find_modules(model, ["model.language_model.layers.0.mlp.down_proj"]).values()
        down.weight[:, self.chosen] = 0
        return {"zeroed": self.chosen}


def test_a_training_free_edit_zeroes_exactly_the_chosen_neurons(tmp_path: Path, fiu_dir: Path, tiny_dir: Path,
                                                                monkeypatch):
    method = ZeroNeurons()
    with_method(monkeypatch, method)
    run = forget(forget_config(tmp_path, fiu_dir, tiny_dir))
    info = json.loads((run / "run.json").read_text())
    assert info["train"]["steps"] == 0 and info["train"]["edit"] == {"zeroed": method.chosen}
    edited, base = load_model(run / "checkpoint"), load_model(tiny_dir)
    before = dict(base.named_parameters())
    for name, parameter in edited.named_parameters():
        if name.endswith("layers.0.mlp.down_proj.weight"):
            assert parameter[:, method.chosen].abs().max() == 0
            others = [i for i in range(parameter.shape[1]) if i not in method.chosen]
            assert torch.equal(parameter[:, others], before[name][:, others])
        else:
            assert torch.equal(parameter, before[name]), name
