"""MANU (issue 23): its statistics, score and top-k selection against hand computations, and one run through the
forget recipe on the small model: exactly the selected output rows are zero, every other weight is the base
model's, and the run's checkpoint loads as evaluation loads it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

from unlearning.models.loading import load_model
from unlearning.recipes.common import CONFIG_DIR
from unlearning.recipes.forget import forget
from unlearning.runs.checkpoints import BaseModels, model_source
from unlearning.training.methods import build_method
from unlearning.training.methods.manu import (
    RunningStatistics,
    activation_statistics,
    neuron_scores,
    spread,
    top_percent,
)
from unlearning.training.preparation import STATISTICS_FILE


def close(actual: torch.Tensor, expected: list[float]) -> None:
    assert torch.allclose(actual.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-9), actual


def test_every_statistic_against_a_hand_computation():
    # column 0: 1, 3, 2, 2; column 1: 0, -0.05, 0.2, 5000 (clamped to 1000)
    values = torch.tensor([[1.0, 0.0], [3.0, -0.05], [2.0, 0.2], [2.0, 5000.0]], dtype=torch.float64)
    stats = activation_statistics(values, threshold=0.1)
    close(stats["abs"], [8 / 4, (0.05 + 0.2 + 1000) / 4])
    close(stats["freq"], [1.0, 2 / 4])  # |a| > 0.1
    mean1, square1 = (-0.05 + 0.2 + 1000) / 4, (0.0025 + 0.04 + 1e6) / 4
    close(stats["var"], [math.sqrt(((1 - 2) ** 2 + 1 + 0 + 0) / 4), math.sqrt(square1 - mean1**2)])  # std, /N
    close(stats["rms"], [math.sqrt((1 + 9 + 4 + 4) / 4), math.sqrt(square1)])


def test_statistics_are_per_batch_then_averaged_over_batches():
    running = RunningStatistics(threshold=0.1)
    running.add("m", torch.tensor([[1.0], [3.0]]))  # abs 2, std 1
    running.add("m", torch.tensor([[4.0]]))  # abs 4, std 0
    running.add("m", torch.zeros(0, 1))  # no positions: not a batch
    means = running.means()["m"]
    close(means["abs"], [3.0])  # (2 + 4) / 2, not (1 + 3 + 4) / 3
    close(means["var"], [0.5])
    close(means["rms"], [(math.sqrt(5) + 4) / 2])


def test_the_score_against_a_hand_computation():
    forget = {"abs": torch.tensor([2.0, 1.0]), "freq": torch.tensor([0.5, 1.0]), "var": torch.tensor([3.0, 0.0]),
              "rms": torch.tensor([4.0, 2.0])}
    retain = {"abs": torch.tensor([1.0, 1.0]), "freq": torch.tensor([0.25, 0.0]), "var": torch.tensor([1.0, 2.0]),
              "rms": torch.tensor([2.0, 4.0])}
    eps = 1e-5
    expected = [
        1.0 * (2 / (1 + eps) - 1) + 0.5 * (0.5 / (0.25 + eps) - 1) + 2.0 * (3 / (1 + eps) - 1)
        + 3.0 * (4 / (2 + eps) - 1),
        1.0 * (1 / (1 + eps) - 1) + 0.5 * (1 / (0 + eps) - 1) + 2.0 * (0 / (2 + eps) - 1) + 3.0 * (2 / (4 + eps) - 1),
    ]
    weights = {"abs": 1.0, "freq": 0.5, "var": 2.0, "rms": 3.0}
    assert torch.allclose(neuron_scores(forget, retain, weights, eps), torch.tensor(expected), rtol=1e-6)
    # the defaults: freq weighs 0
    default = [2 * (2 / (1 + eps) - 1) + 2 * (3 / (1 + eps) - 1) + 2 * (4 / (2 + eps) - 1),
               2 * (1 / (1 + eps) - 1) + 2 * (0 / (2 + eps) - 1) + 2 * (2 / (4 + eps) - 1)]
    method = build_method({"name": "manu"})
    assert torch.allclose(neuron_scores(forget, retain, method.weights, method.epsilon), torch.tensor(default))
    with pytest.raises(ValueError, match="every metric weight is 0"):
        neuron_scores(forget, retain, {"abs": 0.0}, eps)


def test_top_percent_across_modules():
    scores = {"a": torch.tensor([5.0, 1.0, 3.0]), "b": torch.tensor([4.0, 0.0, 2.0, 6.0, -1.0])}  # N = 8
    picked = top_percent(scores, 25)  # k = 2: 6 and 5
    assert picked["a"].tolist() == [True, False, False] and picked["b"].tolist() == [False, False, False, True, False]
    picked = top_percent(scores, 50)  # k = 4: 6, 5, 4, 3
    assert picked["a"].tolist() == [True, False, True] and picked["b"].tolist() == [True, False, False, True, False]
    picked = top_percent(scores, 10)  # int(0.8) = 0: at least one
    assert sum(int(m.sum()) for m in picked.values()) == 1 and picked["b"][3]
    assert not any(m.any() for m in top_percent(scores, 0).values())
    ties = top_percent({"a": torch.tensor([1.0, 1.0]), "b": torch.tensor([1.0, 0.0])}, 25)  # k = 1, ties kept
    assert ties["a"].tolist() == [True, True] and ties["b"].tolist() == [True, False]
    with pytest.raises(ValueError, match="percent"):
        top_percent(scores, 101)


def test_retain_examples_are_spread_over_the_stream():
    assert spread(list(range(10)), 4) == [0, 2, 5, 7]
    assert spread(list(range(3)), 4) == [0, 1, 2]


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="unknown metric weights"):
        build_method({"name": "manu", "weights": {"abs": 1.0, "mean": 1.0}})
    with pytest.raises(ValueError, match="percent"):
        build_method({"name": "manu", "percent": 200})


def manu_config(root: Path, data: Path, model: Path, *overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose("forget", overrides=[f"run_root={root}", f"data_dir={data}", f"model.path={model}",
                                            f"model_path={model}", "method=manu", "batch_size=2", *overrides])


def test_a_run_zeroes_exactly_the_selected_rows_and_its_checkpoint_loads(tmp_path: Path, fiu_dir: Path,
                                                                         tiny_dir: Path):
    cfg = manu_config(tmp_path, fiu_dir, tiny_dir)
    run = forget(cfg)
    statistics = load_file(str(run / STATISTICS_FILE))
    method = build_method(cfg.method)
    method.use_statistics(statistics)  # the selection the run made, from the statistics it kept
    vision = {p for p, m in method.modality.items() if m == "vision"}
    language = {p for p, m in method.modality.items() if m == "language"}
    assert {path.split("encoder.")[-1] for path in vision} == {"layers.0.mlp.fc1", "layers.0.mlp.fc2"}
    assert all(path.startswith("model.vision_tower.") for path in vision)  # the CLIP layer's MLP
    assert language == {f"model.language_model.layers.{i}.mlp.{n}" for i in (0, 1)  # 2 layers < 3: all of them
                        for n in ("gate_proj", "up_proj", "down_proj")}
    assert {key.split("|")[1] for key in statistics} == {"forget", "retain"} and len(statistics) == 2 * 4 * 8

    base = dict(load_model(tiny_dir).named_parameters())
    counts = {"vision": 0, "language": 0}
    for path, mask in method.masks.items():
        counts[method.modality[path]] += int(mask.sum())
    sizes = {"vision": 64 + 32, "language": 2 * (128 + 128 + 64)}  # the small model's MLP widths
    for modality in counts:  # k = int(2% of N), at least 1, plus ties
        assert max(1, int(2 * sizes[modality] / 100)) <= counts[modality] < sizes[modality] // 10
    info = json.loads((run / "run.json").read_text())
    assert info["method"] == "manu" and info["train"]["steps"] == 0
    assert info["train"]["edit"] == {"pruned": counts,
                                     "modules": {path: int(mask.sum()) for path, mask in method.masks.items()}}

    source = model_source(run)
    assert source.adapter is None  # a full model, loaded the way evaluation loads a run
    edited = BaseModels("float32", "sdpa", merge=False).load(source)
    zeroed = 0
    for name, parameter in edited.named_parameters():
        module, kind = name.rsplit(".", 1)
        if module in method.masks:
            rows = method.masks[module]
            assert torch.all(parameter[rows] == 0), name
            assert torch.equal(parameter[~rows], base[name][~rows]), name
            if kind == "weight":
                assert torch.all(base[name][rows].abs().sum(-1) > 0), name  # they were not zero before
                zeroed += int(rows.sum())
        else:
            assert torch.equal(parameter, base[name]), name
    assert zeroed == counts["vision"] + counts["language"]


def test_language_statistics_come_from_the_text_only_forward(tmp_path: Path, fiu_dir: Path, tiny_dir: Path):
    """With text_only_language false the language statistics are those of the image+text forward: other
    numbers; the vision ones do not change. vision_layers 0: language neurons only."""
    text_only = load_file(str(forget(manu_config(tmp_path, fiu_dir, tiny_dir)) / STATISTICS_FILE))
    joint = load_file(str(forget(manu_config(tmp_path, fiu_dir, tiny_dir, "method.text_only_language=false"))
                          / STATISTICS_FILE))
    assert text_only.keys() == joint.keys()
    for key in text_only:
        same = torch.allclose(text_only[key], joint[key])
        if key.startswith("vision|"):
            assert same, key
        elif "|abs|" in key:  # (a fraction of |a| > 0.1 can be the same on both)
            assert not same, key
    language_only = load_file(str(forget(manu_config(tmp_path, fiu_dir, tiny_dir, "method.vision_layers=0"))
                                  / STATISTICS_FILE))
    assert language_only.keys() == {key for key in text_only if key.startswith("language|")}


def test_prepare_measures_the_attended_positions_of_each_forward(tiny_model, collator, fiu_dir: Path):
    """The preparation pass against hooks of our own: language neurons on the text-only batch at its tokens (not
    its padding), vision neurons on every patch of the image+text forward; retain capped at the forget batches."""
    from dataclasses import replace

    from accelerate import Accelerator

    from unlearning.data.examples import Example
    from unlearning.inference.scoring import prepare_inputs
    from unlearning.training.hidden_states import capture
    from unlearning.training.preparation import Preparation

    images = sorted((fiu_dir / "SFHQ").glob("*.jpg"))
    forget = [Example("Who is this?", "juno fairbanks.", images[0], "a"),
              Example("What does this person do for a living?", "she bakes bread in a small town.", images[1], "b")]
    retain = [Example("Who is this?", "a teacher" + " of music" * i + ".", images[i], f"r{i}") for i in range(5)]
    preparation = Preparation(tiny_model, collator, {"forget": forget, "retain": retain}, 2, Accelerator(cpu=True),
                              ("model.language_model", "lm_head"))
    method = build_method({"name": "manu", "vision_tower": ["model.vision_tower"]})
    statistics = method.prepare(preparation)
    language = "model.language_model.layers.1.mlp.down_proj"
    (vision,) = [key.split("|")[3] for key in statistics if key.startswith("vision|forget|abs|") and "fc1" in key]

    def measured(examples: list, path: str, text_only: bool) -> dict[str, torch.Tensor]:
        batch = collator([replace(e, image=None) if text_only else e for e in examples])
        with torch.no_grad(), capture(tiny_model, [path]) as caught:
            tiny_model(**prepare_inputs(tiny_model, batch["inputs"]))
        values = caught[path]
        if not text_only:
            return activation_statistics(values.reshape(-1, values.shape[-1]), 0.1)
        attention = batch["inputs"]["attention_mask"].bool()
        assert not attention.all()  # padding there, and left out
        return activation_statistics(values[attention], 0.1)

    for metric in ("abs", "freq", "var", "rms"):
        assert torch.allclose(statistics[f"language|forget|{metric}|{language}"],
                              measured(forget, language, True)[metric], atol=1e-6)
        assert torch.allclose(statistics[f"vision|forget|{metric}|{vision}"], measured(forget, vision, False)[metric],
                              atol=1e-6)
        # one forget batch: one retain batch, 2 examples spread over the 5 (the first and the third)
        assert torch.allclose(statistics[f"language|retain|{metric}|{language}"],
                              measured([retain[0], retain[2]], language, True)[metric], atol=1e-6)
