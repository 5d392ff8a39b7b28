"""The relearning attack (``attack=relearn``): the forget set's units split into two disjoint halves, relearning
really changes the weights (never the evaluated model's own) and brings the relearned half's NLL down, the
evaluation half is resampled alone, and every setting is in the fingerprint. End to end (the reference relearned
too, budget 0 the unattacked model on the evaluation half, the curve in the tables): ``test_attacks.py``, which
shares its trained world."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from unlearning.data.examples import Example
from unlearning.evaluation.attacks import AttackError, parse_attacks
from unlearning.evaluation.attacks.relearn import (
    Relearn,
    RelearnError,
    RelearnOptions,
    half_resampler,
    relearn_model,
    split_forget,
)
from unlearning.evaluation.intervals import BootstrapSettings, Resampler
from unlearning.inference.scoring import forward_answer_logits, mean_nll

LLAVA_MODULES = {"language_model": ("model.language_model", "lm_head"), "projector": ("model.multi_modal_projector",),
                 "vision_tower": ("model.vision_tower",)}


def _examples(units: int, per_unit: int = 3) -> list[Example]:
    return [Example(f"q{u}.{i}", f"a{u}.{i}", uid=f"id{u:02d}/{i}") for u in range(units) for i in range(per_unit)]


def test_the_halves_are_disjoint_whole_units_and_seeded():
    examples = _examples(11)
    split = split_forget(examples, 0.5, seed=3)
    assert not set(split.relearn_units) & set(split.eval_units)
    assert sorted(split.relearn_units + split.eval_units) == sorted({e.uid.split("/")[0] for e in examples})
    assert len(split.relearn_units) == 6 and len(split.eval_units) == 5  # round(5.5): 6
    assert {e.uid.split("/")[0] for e in split.examples} == set(split.relearn_units)  # whole units, every example
    assert len(split.examples) == 3 * len(split.relearn_units)
    assert split_forget(list(reversed(examples)), 0.5, seed=3).relearn_units == split.relearn_units  # order-free
    assert split_forget(examples, 0.5, seed=4).relearn_units != split.relearn_units
    assert len(split_forget(examples, 0.01, seed=3).relearn_units) == 1  # each half keeps a unit
    assert len(split_forget(examples, 0.99, seed=3).eval_units) == 1
    with pytest.raises(RelearnError, match="splits the forget set's units in two; it has 1"):
        split_forget(_examples(1), 0.5, seed=0)
    with pytest.raises(RelearnError, match="names no unit"):
        split_forget([Example("q", "a", uid="flat")], 0.5, seed=0)


def test_relearn_expands_to_one_attack_per_budget_and_its_settings_are_in_the_fingerprint():
    settings = {"relearn": {"steps": [0, 2, 5], "lr": 1e-3}}
    attacks = parse_attacks(["text_only", "relearn"], settings)
    assert [a.name for a in attacks] == ["text_only", "relearn_0", "relearn_2", "relearn_5"]
    assert [a.name for a in parse_attacks("relearn_7", settings)] == ["relearn_7"]
    with pytest.raises(AttackError, match="twice"):
        parse_attacks(["relearn", "relearn_2"], settings)
    with pytest.raises(AttackError, match="fraction must lie strictly between 0 and 1"):
        parse_attacks("relearn", {"relearn": {"fraction": 1.0}})
    with pytest.raises(AttackError, match="steps must list distinct budgets"):
        parse_attacks("relearn", {"relearn": {"steps": [2, 2]}})

    split = split_forget(_examples(6), 0.5, seed=0)

    def fingerprint(steps: int = 2, split=split, **options) -> dict:
        (attack,) = parse_attacks(f"relearn_{steps}", {"relearn": {"lr": 1e-3, **options}})
        return dataclasses.replace(attack, relearn=dataclasses.replace(attack.relearn, split=split)).fingerprint()

    base = fingerprint()
    assert base["relearn"]["split"]["n_relearn"] == 3 and base["relearn"]["lr"] == 1e-3
    changed = [fingerprint(steps=3), fingerprint(lr=2e-3), fingerprint(lora=True), fingerprint(batch_size=2),
               fingerprint(seed=1), fingerprint(fraction=0.3), fingerprint(tune=["language_model"]),
               fingerprint(split=split_forget(_examples(6), 0.5, seed=1))]
    assert all(other != base for other in changed)
    assert len({json.dumps(f, sort_keys=True) for f in changed}) == len(changed)
    with pytest.raises(RelearnError, match="not split yet"):
        Relearn(2, RelearnOptions(lr=1e-3)).fingerprint()


def test_the_evaluation_half_resamples_only_the_units_not_relearned():
    units = ["a", "a", "b", "c", "c", "d"]
    values = [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]
    settings = BootstrapSettings(resamples=200, seed=5)
    half = half_resampler(Resampler(settings), frozenset({"b", "d"}))
    kept = [(u, v) for u, v in zip(units, values, strict=True) if u not in {"b", "d"}]
    alone = Resampler(settings).mean("forget", [u for u, _ in kept], [v for _, v in kept])
    np.testing.assert_array_equal(half.mean("forget", units, values), alone)  # the same draws as the half alone
    assert half.dropped == {"b", "d"} and half.fingerprint()["forget"]["units"] == 2  # the kept units drawn
    np.testing.assert_array_equal(half.mean("celebrity", ["b", "e"], [2.0, 4.0]),  # another stratum's "b": another
                                  Resampler(settings).mean("celebrity", ["b", "e"], [2.0, 4.0]))  # person, kept
    with pytest.raises(ValueError, match="every unit was relearned"):
        half_resampler(Resampler(settings), frozenset({"x"})).mean("forget", ["x"], [1.0])


def _nll(model: torch.nn.Module, collator, examples: list[Example]) -> float:
    with torch.no_grad():
        return float(mean_nll(forward_answer_logits(model, collator(examples))))


@pytest.mark.parametrize("lora", [False, True])
def test_relearning_changes_a_copy_of_the_weights_and_lowers_the_relearned_halfs_nll(fiu_dir: Path, tiny_model,
                                                                                     collator, lora: bool):
    from fiubench.benchmark import FiuBenchTask

    split = split_forget(FiuBenchTask(fiu_dir).stream("forget", "forget10"), 0.5, seed=0)
    before = {name: p.detach().clone() for name, p in tiny_model.state_dict().items()}
    nll_before = _nll(tiny_model, collator, list(split.examples))
    options = RelearnOptions(steps=(3,), lr=3e-3 if lora else 1e-3, lora=lora, batch_size=4)
    relearned = relearn_model(tiny_model, collator, Relearn(3, options, split, LLAVA_MODULES, ("q_proj", "v_proj")),
                              Accelerator(cpu=True))
    assert all(torch.equal(before[name], p) for name, p in tiny_model.state_dict().items())  # the model is untouched
    after = relearned.state_dict()
    assert set(after) == set(before)  # a LoRA is merged back: the same weights, no adapter
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert changed and all(name.startswith("model.language_model") or name.startswith("model.multi_modal_projector")
                           or name.startswith("lm_head") for name in changed)
    assert not any(name.startswith("model.vision_tower") for name in changed)  # frozen, as Stage I
    assert not any(p.requires_grad for p in relearned.parameters()) and not relearned.training
    assert _nll(relearned, collator, list(split.examples)) < nll_before - 0.01
