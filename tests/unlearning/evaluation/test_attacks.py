"""Attacks (``attack=``): quantized weights really are 8/4-bit with the LoRA merged first, image transforms are
seeded and change the image, text-only drops it, bad input says what to pass, and end to end on the small FIUBench
world the attacked parts are written apart from the unattacked ones, next to a robustness table; the relearning
attack relearns one half of the forget set (the reference too) and evaluates the other (its units:
``test_relearn.py``)."""

from __future__ import annotations

import csv
import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tests.reliability.test_faults import (  # the small trained FIUBench world: fixtures and helpers
    World,
    eval_config,
    monkeypatch_module,  # noqa: F401
    snapshot,
    trained,  # noqa: F401
    world,  # noqa: F401
)
from unlearning.data.examples import Example
from unlearning.evaluation.attacks import ATTACK_NAMES, Attack, AttackError, ExampleTransform, parse_attacks
from unlearning.evaluation.attacks.images import TRANSFORMS, ImageOptions, changed_fraction, transform_image
from unlearning.evaluation.attacks.quantize import BackendMissing, QuantizeOptions, quantizable, quantize
from unlearning.evaluation.attacks.relearn import split_forget
from unlearning.evaluation.cells import number, row_intervals, with_spread
from unlearning.evaluation.intervals import SINGLE_UNIT_NOTE
from unlearning.recipes.evaluate import evaluate
from unlearning.runs.io import read_json


class Small(nn.Module):
    """Two linear layers and a head, widths chosen so one layer is grouped at 16 and one is not."""

    def __init__(self) -> None:
        super().__init__()
        self.up, self.down, self.head = nn.Linear(32, 24), nn.Linear(24, 32), nn.Linear(32, 10)

    def get_output_embeddings(self) -> nn.Module:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.down(torch.relu(self.up(x))))


def _lora_model() -> nn.Module:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(Small(), LoraConfig(r=4, lora_alpha=8, target_modules=["up", "down"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(param, std=0.5)  # a LoRA that changes the weights a lot
    return model


@pytest.mark.parametrize("bits, low, high", [(8, -128, 127), (4, -8, 7)])
def test_quantized_weights_are_stored_in_their_bits_after_the_lora_is_merged(bits, low, high):
    model = _lora_model()
    merged = {name: module.weight.detach().clone() for name, module in
              quantizable(_lora_model().merge_and_unload())}
    base = {name.removeprefix("base_model.model."): module.base_layer.weight.detach().clone()
            for name, module in model.named_modules() if hasattr(module, "base_layer")}
    out = quantize(model, bits, QuantizeOptions(backend="torchao", group_size=16), "cpu")
    assert not any("lora" in name for name, _ in out.named_modules())  # merged before quantizing
    for name, linear in quantizable(out):
        weight = linear.weight
        assert weight.qdata.dtype == torch.int8  # torchao's storage: int8 codes
        assert low <= int(weight.qdata.min()) and int(weight.qdata.max()) <= high
        if bits == 4:  # 16 levels at most per scale group
            assert len(torch.unique(weight.qdata)) <= 16
        restored = weight.dequantize()
        error = (restored - merged[name]).abs().max()
        assert error < (merged[name] - base[name]).abs().max() / 2  # the merged weights were quantized, not the base
    assert type(out.head.weight) is nn.Parameter and out.head.weight.dtype == torch.float32  # the head stays as it was


def test_missing_backend_names_the_package_to_install(monkeypatch):
    quantize_module = importlib.import_module("unlearning.evaluation.attacks.quantize")
    monkeypatch.setattr(quantize_module, "_installed", lambda package: None)
    with pytest.raises(BackendMissing, match="pip install torchao"):
        quantize(Small(), 4, QuantizeOptions(), "cpu")
    with pytest.raises(BackendMissing, match="CUDA device only"):
        quantize(Small(), 8, QuantizeOptions(backend="bitsandbytes"), "cpu")


def test_unknown_attack_lists_the_known_ones():
    with pytest.raises(AttackError, match="known attacks: quantize_8bit, quantize_4bit.*Did you mean 'quantize_4bit'"):
        parse_attacks("quantise_4bit")
    with pytest.raises(AttackError, match="unknown settings"):
        parse_attacks("text_only", {"quantise": {}})
    assert [a.name for a in parse_attacks(["quantize_8bit", "text_only"])] == ["quantize_8bit", "text_only"]
    assert parse_attacks(None) == []
    with pytest.raises(AttackError, match=r"known attacks: .*relearn \(or relearn_<steps>\).*Did you mean 'relearn'"):
        parse_attacks("relearm")


def _image(seed: int = 0) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (40, 48, 3), generator=generator, dtype=torch.uint8).numpy(), "RGB")


@pytest.mark.parametrize("name", [*TRANSFORMS, "rephrase"])
def test_image_transforms_are_seeded_and_change_the_image(name):
    image = _image()
    first = transform_image(image, name, ImageOptions(seed=1))
    assert first == transform_image(image.copy(), name, ImageOptions(seed=1))  # same pixels, same seed: same bytes
    after = Image.open(__import__("io").BytesIO(first))
    assert after.size == image.size and changed_fraction(image, first) > 0.005
    if name in ("crop", "rotate", "noise"):  # random parameters: another seed, another image
        assert transform_image(image, name, ImageOptions(seed=2)) != first


def test_text_only_drops_every_image_and_input_attacks_transform_once():
    shot = Example("q0", "a0", _image(1), uid="s")
    example = Example("q", "a", _image(2), uid="x", shots=(shot,))
    text = ExampleTransform(Attack("text_only"))(example)
    assert text.images() == [] and text.question == "q" and text.shots[0].question == "q0"
    blur = ExampleTransform(Attack("image_blur"))
    once = blur(example)
    assert all(isinstance(image, bytes) for image in once.images())
    assert blur(once) == once  # a transformed example is not transformed again


def test_an_attack_on_a_benchmark_without_a_reference_says_what_to_pass(world: World):  # noqa: F811
    with pytest.raises(AttackError, match="pass reference_run=<run folder>"):
        evaluate(eval_config(world, "benchmark=safeeraser", "attack=text_only"))
    with pytest.raises(AttackError, match="known attacks"):
        evaluate(eval_config(world, "attack=relearn_now"))


def test_attacked_evaluations_are_written_apart_with_a_robustness_table(world: World, tmp_path: Path):  # noqa: F811
    runs = sorted(p for p in world.runs.iterdir() if (p / "run.json").is_file())
    unattacked = {run.name: snapshot(run / "eval") for run in runs}
    attacks = ["quantize_4bit", "image_rephrase", "text_only"]
    tables = tmp_path / "results"
    summaries = evaluate(eval_config(world, f"attack=[{','.join(attacks)}]", f"attacks.table_dir={tables}"))
    assert len(summaries) == len(runs) * len(attacks)
    for run in runs:
        now = snapshot(run / "eval")
        assert {k: v for k, v in now.items() if not k.startswith("attacks/")} == unattacked[run.name]  # untouched
        plain = read_json(run / "eval" / "forget10.json")
        for attack in attacks:
            folder = run / "eval" / "attacks" / attack
            summary = read_json(folder / "summary.json")
            assert summary["attack"]["name"] == attack
            forget = read_json(folder / "forget10.json")
            assert f'"name": "{attack}"' in forget["fingerprint"]["model"]  # cached under the attack's key
            retain = read_json(folder / "retain15.json")
            if attack == "quantize_4bit":  # the model is attacked: every part
                assert '"backend": "torchao", "bits": 4' in retain["fingerprint"]["model"]
                assert retain["samples"] != read_json(run / "eval" / "retain15.json")["samples"]
            else:  # an input attack: the retain part is the unattacked one
                assert {k: v for k, v in retain.items() if k != "fingerprint"} == {
                    k: v for k, v in read_json(run / "eval" / "retain15.json").items() if k != "fingerprint"}
                assert summary["attacked_parts"] == ["forget"]
        text_only = read_json(run / "eval" / "attacks" / "text_only" / "forget10.json")
        assert [s["uid"] for s in text_only["samples"]] == [s["uid"] for s in plain["samples"]]
    reference = read_json(world.run("finetune_retain_") / "eval" / "attacks" / "text_only" / "summary.json")
    assert reference["forget_quality"] == 1.0  # forget quality under attack: against the attacked reference
    ga = read_json(world.run("ga_forget10_") / "eval" / "attacks" / "text_only" / "summary.json")
    assert ga["forget_quality_reference"].endswith("attacks/text_only/forget10.json")

    table = json.loads((tables / "fiubench_robustness.json").read_text())
    assert (tables / "fiubench_robustness.csv").is_file()
    markdown = (tables / "fiubench_robustness.md").read_text()
    assert "| run | method | attack | forget ROUGE-L ↓" in markdown
    pairs = [(row["run"], row["attack"]) for row in table["rows"]]
    order = ("none", *sorted(attacks, key=ATTACK_NAMES.index))
    assert pairs == [(run.name, attack) for run in runs for attack in order]
    row, summary = table["rows"][0], read_json(runs[0] / "eval" / "summary.json")  # intervals as the summary's
    assert row["intervals"] and row["intervals"] == row_intervals(summary, "all")
    name, (low, high) = next((n, i) for n, i in row["intervals"].items() if i[1] > i[0])
    assert f"| {number(row[name])} ± {number((high - low) / 2)} |" in markdown
    with (tables / "fiubench_robustness.csv").open() as handle:
        first = next(csv.DictReader(handle))
    assert (float(first[f"{name} low"]), float(first[f"{name} high"])) == pytest.approx((low, high))
    view = markdown.split("## forget ROUGE-L ↓ under each attack", 1)[1]  # the headline metric, one row per run
    assert f"| run | method | {' | '.join(order)} |" in view
    cells = [with_spread(r["forget ROUGE-L"], r["intervals"].get("forget ROUGE-L"))
             for r in table["rows"] if r["run"] == runs[0].name]
    assert f"| {runs[0].name} | {table['rows'][0]['method']} | {' | '.join(cells)} |" in view

    again = evaluate(eval_config(world, f"attack=[{','.join(attacks)}]", f"attacks.table_dir={tables}"))
    assert not any(summary["cost"]["model_loaded"] for summary in again)  # every attacked part reused


def test_relearning_on_one_half_evaluates_the_other_with_the_reference_and_a_curve(world: World,  # noqa: F811
                                                                                     tmp_path: Path):
    from fiubench.benchmark import FiuBenchTask

    ga, reference = world.run("ga_forget10_"), world.run("finetune_retain_")
    unattacked = {run.name: snapshot(run / "eval") for run in (ga, reference)}
    tables = tmp_path / "results"
    overrides = ("attack=relearn", "attacks.relearn.steps=[0,3]", "attacks.relearn.lr=3e-3", f"run_dirs=[{ga}]",
                 f"attacks.table_dir={tables}", "eval.bootstrap.resamples=50",
                 "++eval.selection.validation_fraction=0")  # the world's forget10 has 2 identities: 1 per half
    summaries = evaluate(eval_config(world, *overrides))
    assert len(summaries) == 4  # the reference first, then GA; two budgets each
    split = split_forget(FiuBenchTask(world.data).stream("forget", "forget10"), 0.5, seed=233)  # eval.yaml's seed
    evaluated = set(split.eval_units)
    for run in (reference, ga):  # the reference is relearned too
        now = snapshot(run / "eval")
        assert {k: v for k, v in now.items() if not k.startswith("attacks/")} == unattacked[run.name]
        plain = read_json(run / "eval" / "forget10.json")["samples"]
        zero, three = (run / "eval" / "attacks" / f"relearn_{n}" for n in (0, 3))
        forget = read_json(three / "forget10.json")
        assert '"steps": 3' in forget["fingerprint"]["model"]  # cached under the relearned weights' key
        relearned = [s for s in forget["samples"] if s["unique_id"] in split.relearn_units]
        before = [s for s in plain if s["unique_id"] in split.relearn_units]
        assert np.mean([s["answer_nll"] for s in relearned]) < np.mean([s["answer_nll"] for s in before]) - 0.01
        assert [s["uid"] for s in forget["samples"]] == [s["uid"] for s in plain]
        assert read_json(zero / "forget10.json")["samples"] == plain  # budget 0: the unattacked model
        assert read_json(three / "retain15.json")["samples"] == read_json(run / "eval" / "retain15.json")["samples"]
        for folder in (zero, three):  # the summary: the evaluation half
            summary = read_json(folder / "summary.json")
            half = [s for s in read_json(folder / "forget10.json")["samples"] if s["unique_id"] in evaluated]
            assert summary["forget"]["rougeL_recall"] == pytest.approx(np.mean([s["rougeL_recall"] for s in half]))
            assert summary["relearn"]["evaluated_units"] == len(evaluated) == 1
            assert summary["relearn"]["restricted_fields"] and all(  # the fields the relearned unit changes
                field.startswith(("forget", "membership_auc")) for field in summary["relearn"]["restricted_fields"])
            assert summary["attack"]["relearn"]["split"]["n_relearn"] == 1
            assert summary["bootstrap"]["strata"]["forget"]["units"] == 1  # intervals over the evaluation half
            assert all(m["n"] is None for row in summary["metrics"].values() for m in row.values())  # not the half's
    assert read_json(reference / "eval" / "attacks" / "relearn_3" / "summary.json")["forget_quality"] == 1.0
    ga_summary = read_json(ga / "eval" / "attacks" / "relearn_3" / "summary.json")
    assert ga_summary["forget_quality_reference"].endswith("attacks/relearn_3/forget10.json")

    table = json.loads((tables / "fiubench_robustness.json").read_text())
    assert [(row["run"], row["attack"]) for row in table["rows"]] == [
        (run.name, attack) for run in (reference, ga) for attack in ("none", "relearn_0", "relearn_3")]
    curve = (tables / "fiubench_relearn.md").read_text()
    assert "| run | method | metric | 0 steps | 3 steps |" in curve and "| forget ROUGE-L ↓ |" in curve
    rows = json.loads((tables / "fiubench_relearn.json").read_text())["rows"]
    zero_row = next(r for r in rows if r["run"] == ga.name and r["metric"] == "forget ROUGE-L ↓")
    zero_summary = read_json(ga / "eval" / "attacks" / "relearn_0" / "summary.json")
    assert zero_row["steps_0"] == pytest.approx(100 * zero_summary["forget"]["rougeL_recall"])
    metric = zero_summary["metrics"]["all"]["forget ROUGE-L"]  # the evaluation half is 1 identity: no interval
    assert metric["interval"] is None and metric["note"] == SINGLE_UNIT_NOTE
    assert zero_summary["bootstrap"]["single_unit_strata"] == ["forget"]
    assert "steps_0" not in (zero_row.get("intervals") or {}) and f"| {number(zero_row['steps_0'])} |" in curve
    assert "forget ROUGE-L" not in row_intervals(zero_summary, "all") and "ROUGE-L" in row_intervals(zero_summary,
                                                                                                   "all")

    again = evaluate(eval_config(world, *overrides))
    assert not any(summary["cost"]["model_loaded"] for summary in again)  # every relearned part reused
    with pytest.raises(AttackError, match="pass reference_run=<run folder>"):
        evaluate(eval_config(world, "benchmark=safeeraser", "attack=relearn"))
