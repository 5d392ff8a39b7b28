"""Checkpoint selection's engine parts on hand-made inputs: the validation split (disjoint, seeded, every unit on one
side), the subset draws (a benchmark's resampling restricted to one side), the blanked summary (no number of the
full evaluation reaches the validation numbers) and the rule on hand-made steps."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from unlearning.evaluation.intervals import BootstrapSettings, Resampler
from unlearning.evaluation.selection import (
    SelectionRule,
    StepValidation,
    ValidationSplit,
    blank,
    choose,
    selection_file,
    split_metrics,
    unit_subset,
    validation_units,
)

UNITS = [f"person_{i:02d}" for i in range(40)]


def test_the_split_is_seeded_disjoint_and_covers_every_unit():
    split = ValidationSplit(0.2, seed=3)
    first = validation_units(UNITS, "forget", split)
    assert len(first) == 8 and first <= set(UNITS)
    assert validation_units(list(reversed(UNITS)) * 2, "forget", split) == first  # order and repeats do not matter
    assert validation_units(UNITS, "forget", ValidationSplit(0.2, seed=4)) != first  # another seed, other units
    assert validation_units(UNITS, "retain", split) != first  # each stratum its own draw
    reported = set(UNITS) - first
    assert reported and not reported & first and reported | first == set(UNITS)


@pytest.mark.parametrize(("n", "expected"), [(0, 0), (1, 0), (2, 1), (3, 1), (10, 2), (100, 20)])
def test_each_side_keeps_a_unit_where_it_can(n: int, expected: int):
    assert len(validation_units(UNITS[:n] if n <= 40 else [str(i) for i in range(n)], "s", ValidationSplit(0.2))) == (
        expected)


def test_split_settings_are_checked():
    for bad in ({"validation_fraction": 1.0}, {"validation_fraction": -0.1}, {"seed": -1}, {"seed": 1.5},
                {"fraction": 0.2}):
        with pytest.raises(ValueError, match="eval.selection"):
            ValidationSplit.from_config(bad)
    assert selection_file("summary.json") == "selection.json"
    assert selection_file("summary.forget5.json") == "selection.forget5.json"


def test_a_subset_draw_weighs_its_units_once_and_the_others_never():
    units = {"forget": ["a", "b", "c", "d"]}
    subset = unit_subset(units, {"forget": {"b", "d"}})
    samples = ["a", "a", "b", "c", "d", "d"]
    values = [10.0, 10.0, 1.0, 10.0, 3.0, 5.0]
    assert subset.mean("forget", samples, values)[0] == pytest.approx(3.0)  # (1 + 3 + 5) / 3
    boot = unit_subset(units, {"forget": {"b", "d"}}, BootstrapSettings(resamples=50, seed=1))
    counts = boot.counts("forget", samples)
    assert counts.shape == (50, 4) and not counts[:, [0, 2]].any() and (counts.sum(axis=1) == 2).all()
    # the same draws as the engine's bootstrap over a stratum holding only the kept units
    plain = Resampler(BootstrapSettings(resamples=50, seed=1)).counts("forget", ["b", "d"])
    assert np.array_equal(counts[:, [1, 3]], plain)
    with pytest.raises(ValueError, match="not drawn over"):
        subset.counts("retain", ["x"])


def test_blank_replaces_every_number():
    out = blank({"a": 1, "b": [0.5, {"c": 2}], "d": "text", "e": True, "f": None})
    assert math.isnan(out["a"]) and math.isnan(out["b"][0]) and math.isnan(out["b"][1]["c"])
    assert out["d"] == "text" and out["e"] is True and out["f"] is None


def _replicate(results: Mapping[str, dict[str, Any]], reference_dir: Path | None, resampler: Resampler
               ) -> dict[str, np.ndarray]:
    """A benchmark's resampling, hand-made: the forget and retain means, and a composite (their difference)."""
    out = {}
    for role in ("forget", "retain"):
        samples = results[role]["samples"]
        out[f"{role}.score"] = resampler.mean(role, [s["unit"] for s in samples], [s["score"] for s in samples])
    out["gap"] = out["retain.score"] - out["forget.score"]
    out["general"] = np.full(resampler.resamples, np.nan)  # no per-sample results
    return out


def _metrics(summary: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    general = summary.get("general")
    return {"all": {name: {"value": None if v is None or (isinstance(v, float) and math.isnan(v)) else v,
                           "direction": "higher", "n": 1, "judge": "none", "interval": None, "note": None}
                    for name, v in (("forget", summary["forget"]["score"]), ("retain", summary["retain"]["score"]),
                                    ("gap", summary["gap"]), ("general", general))}}


def _results(poison: frozenset[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """Three samples per unit; the units in ``poison`` get random values far outside the others'."""
    rng = np.random.default_rng(0)
    out = {}
    for role, base in (("forget", 0.2), ("retain", 0.8)):
        samples = []
        for unit in (f"{role}_{u}" for u in UNITS[:10]):
            for _ in range(3):
                value, junk = base + float(rng.uniform(0, 0.1)), float(rng.uniform(-9, 9))
                samples.append({"unit": unit, "score": junk if unit in poison else value})
        out[role] = {"samples": samples}
    return out


def _summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    means = {role: float(np.mean([s["score"] for s in results[role]["samples"]])) for role in results}
    return {"forget": {"score": means["forget"], "n": 30}, "retain": {"score": means["retain"], "n": 30},
            "gap": means["retain"] - means["forget"], "general": 0.7}


def test_validation_numbers_never_read_the_reported_units():
    """Poisoning every reported unit's per-sample values (and, through the summary, every full-evaluation number)
    leaves the validation numbers exactly as they were; the reported numbers move."""
    split, none = ValidationSplit(0.2, seed=0), BootstrapSettings(resamples=0)
    clean = _results()
    first = split_metrics(_summary(clean), clean, None, _replicate, _metrics, split, none)
    validation = {unit for role in ("forget", "retain")
                  for unit in validation_units([f"{role}_{u}" for u in UNITS[:10]], role, split)}
    reported = frozenset(s["unit"] for part in clean.values() for s in part["samples"]) - validation
    assert len(validation) == 4 and len(reported) == 16
    poisoned = _results(poison=reported)
    second = split_metrics(_summary(poisoned), poisoned, None, _replicate, _metrics, split, none)
    assert second["validation"] == first["validation"] and second["units"] == first["units"]
    assert second["reported"]["all"]["forget"]["value"] != first["reported"]["all"]["forget"]["value"]
    expected = np.mean([s["score"] for s in clean["forget"]["samples"] if s["unit"] in validation])
    assert first["validation"]["all"]["forget"] == pytest.approx(expected)
    assert first["validation"]["all"]["gap"] == pytest.approx(  # a composite, recomputed from validation units
        np.mean([s["score"] for s in clean["retain"]["samples"] if s["unit"] in validation]) - expected)
    assert first["validation"]["all"]["general"] is None  # no per-sample results: never on validation
    assert first["reported"]["all"]["general"]["value"] == 0.7 and first["not_split"] == ["general"]
    assert first["units"]["forget"] == {**first["units"]["forget"], "validation": 2, "reported": 8}


def test_reported_intervals_resample_the_reported_units_alone():
    split, clean = ValidationSplit(0.2), _results()
    out = split_metrics(_summary(clean), clean, None, _replicate, _metrics, split, BootstrapSettings(resamples=200))
    low, high = out["reported"]["all"]["forget"]["interval"]
    values = [s["score"] for s in clean["forget"]["samples"]]
    assert min(values) <= low <= out["reported"]["all"]["forget"]["value"] <= high <= max(values)
    assert out["reported"]["all"]["general"]["interval"] is None


RULE = SelectionRule("forget ROUGE-L", "ROUGE-L", "lower", "higher", tolerance=0.1)
STEPS = [StepValidation(2, 80.0, 60.0), StepValidation(4, 50.0, 57.0), StepValidation(6, 30.0, 55.0),
         StepValidation(8, 30.0, 54.5), StepValidation(10, 10.0, 40.0)]


def test_the_rule_picks_the_hand_computed_step():
    # starting utility 60: the floor is 54; steps 2-8 keep it, step 10 does not; the lowest forget among them is
    # 30, at steps 6 and 8: the earliest wins
    choice = choose(STEPS, RULE, baseline=60.0)
    assert choice.step == 6 and choice.eligible == (2, 4, 6, 8)
    assert "≥ 54" in choice.reason and "lowest validation forget ROUGE-L (30)" in choice.reason
    assert choose(STEPS, RULE, baseline=63.0).step == 4  # floor 56.7: steps 2 and 4
    assert choose(STEPS, RULE, baseline=65.0).step == 2  # floor 58.5: step 2 alone
    none = choose(STEPS, RULE, baseline=80.0)  # floor 72: no step keeps it, the best utility is chosen
    assert none.step == 2 and "no step keeps" in none.reason
    # no starting model: the earliest step's utility stands in (60)
    assert choose(STEPS, RULE, baseline=None).step == 6
    assert choose(list(reversed(STEPS)), RULE, baseline=60.0).step == 6  # the order steps come in does not matter


def test_other_rules_and_directions():
    assert choose(STEPS, SelectionRule("f", "u", "lower", "higher", rule="best_forget"), None).step == 10
    assert choose(STEPS, SelectionRule("f", "u", "lower", "higher", rule="last"), None).step == 10
    # forget quality: higher is better; a lower-is-better utility (a perplexity) may rise by the tolerance
    higher = SelectionRule("forget quality", "ppl", "higher", "lower", tolerance=0.5)
    steps = [StepValidation(1, 0.01, 10.0), StepValidation(2, 0.5, 14.0), StepValidation(3, 0.9, 16.0)]
    assert choose(steps, higher, baseline=10.0).step == 2  # ppl <= 15
    missing = [StepValidation(1, None, 10.0), StepValidation(2, 0.2, None), StepValidation(3, 0.1, 10.0)]
    assert choose(missing, higher, baseline=10.0).step == 3  # a step without both numbers is not a candidate
    for bad in ({"rule": "best"}, {"tolerance": -1}, {"forget_better": None}):
        with pytest.raises(ValueError):
            SelectionRule(**{"forget_metric": "f", "utility_metric": "u", "forget_better": "lower",
                             "utility_better": "higher", **bad})
