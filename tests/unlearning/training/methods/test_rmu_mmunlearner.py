"""RMU and MMUnlearner (issue 23): RMU's loss against a hand computation on made-up hidden states, its fixed
random direction and position rule; MMUnlearner's Fisher diagonals and mask on a two-weight model whose squared
gradients are worked out by hand, its forget-only masking, and short runs on the small model through the recipe."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

from unlearning.inference.scoring import AnswerLogits
from unlearning.recipes.common import CONFIG_DIR
from unlearning.recipes.forget import forget
from unlearning.training.hidden_states import HiddenStates
from unlearning.training.methods import StreamScores, build_method
from unlearning.training.methods.mmunlearner import MMUnlearner, masked_gradient
from unlearning.training.methods.rmu import RepresentationMisdirection, control_vector
from unlearning.training.preparation import STATISTICS_FILE
from unlearning.training.progress import Progress

START = Progress(0, 10)
NO_LOGITS = AnswerLogits(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), 4)


def compose_forget(*overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose("forget", overrides=list(overrides))


# --- RMU ---------------------------------------------------------------------------------------------------------

def test_the_direction_is_a_seeded_unit_vector_times_c():
    u = control_vector(8, 2.5, seed=42)
    assert torch.equal(u, control_vector(8, 2.5, seed=42))  # the same on every run
    assert not torch.equal(u, control_vector(8, 2.5, seed=43))
    expected = torch.rand(1, 1, 8, generator=torch.Generator().manual_seed(42))  # WMDP's draw: U[0, 1), normalised
    assert torch.allclose(u, (expected / expected.norm() * 2.5).flatten())
    assert u.norm().item() == pytest.approx(2.5) and bool((u >= 0).all())
    method = RepresentationMisdirection(layer=1, steering_coeff=2.5)
    assert method.control(8) is method.control(8)  # drawn once, kept for the run


def states(values: torch.Tensor, attention: list[list[int]], answer: list[list[int]]) -> HiddenStates:
    return HiddenStates(values, torch.tensor(attention, dtype=torch.bool), torch.tensor(answer, dtype=torch.bool))


def made_up_batch(values: torch.Tensor | None = None):
    """Rows 0-1 forget, 2-3 retain, 4 tokens, D = 3 (right padding); the reference pass holds the retain rows alone,
    padded to their own length (3): the positions line up by the masks, not by the shapes."""
    g = torch.Generator().manual_seed(0)
    drawn = torch.randn(4, 4, 3, generator=g).requires_grad_(True)
    values = drawn if values is None else values
    attention = [[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]]
    answer = [[0, 1, 1, 0], [0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 1, 0]]
    ref_values = torch.randn(2, 3, 3, generator=g)
    policy = StreamScores(NO_LOGITS, {"forget": (0, 2), "retain": (2, 4)},
                          {"layers.1": states(values, attention, answer)})
    reference = StreamScores(NO_LOGITS, {"retain": (0, 2)},
                             {"layers.1": states(ref_values, [[1, 1, 0], [1, 1, 1]], [[0, 1, 0], [0, 0, 1]])})
    return values, ref_values, attention, answer, policy, reference


def by_hand(values, ref_values, attention, answer, u, positions: str, gamma: float, alpha: float) -> float:
    chosen = answer if positions == "answer" else attention
    ref_rows = [[(t, ref_values[r][t]) for t in range(3) if mask[t]]
                for r, mask in enumerate([[0, 1, 0], [0, 0, 1]] if positions == "answer"
                                         else [[1, 1, 0], [1, 1, 1]])]

    def token(h, target) -> float:
        return sum((float(h[d]) - float(target[d])) ** 2 for d in range(3)) / 3

    forget_tokens = [[token(values[r][t], u) for t in range(4) if chosen[r][t]] for r in (0, 1)]
    retain_tokens = [[token(values[r][t], ref_rows[r - 2][i][1]) for i, t in
                      enumerate([t for t in range(4) if chosen[r][t]])] for r in (2, 3)]
    if positions == "answer":  # each row's mean, then the rows' mean
        forget = sum(sum(row) / len(row) for row in forget_tokens) / 2
        retain = sum(sum(row) / len(row) for row in retain_tokens) / 2
    else:  # every token of the stream alike
        forget = sum(map(sum, forget_tokens)) / sum(map(len, forget_tokens))
        retain = sum(map(sum, retain_tokens)) / sum(map(len, retain_tokens))
    return gamma * forget + alpha * retain


@pytest.mark.parametrize("positions", ["answer", "attention"])
def test_rmu_loss_matches_a_hand_computation(positions: str):
    values, ref_values, attention, answer, policy, reference = made_up_batch()
    method = RepresentationMisdirection(layer=1, steering_coeff=3.0, alpha=7.0, forget_weight=0.5,
                                        positions=positions, seed=5)
    loss, logs = method.loss(policy, reference, START)
    u = control_vector(3, 3.0, seed=5)
    assert loss.item() == pytest.approx(by_hand(values.detach(), ref_values, attention, answer, u, positions,
                                                0.5, 7.0), rel=1e-5)
    assert logs["forget_mse"] * 0.5 + logs["retain_mse"] * 7.0 == pytest.approx(loss.item(), rel=1e-5)
    loss.backward()
    mask = torch.tensor(answer if positions == "answer" else attention, dtype=torch.bool)
    assert bool((values.grad[~mask] == 0).all())  # padding (and, for answer, the prompt) never reaches the loss
    assert bool((values.grad[mask].abs().sum(-1) > 0).all())


def test_the_positions_rule_answer_tokens_by_default_and_padding_never():
    values, *_, policy, reference = made_up_batch()
    default = build_method({"name": "rmu", "layer": 1})
    assert default.positions == "answer" and default.reference_streams == ("retain",) and default.needs_reference
    prompt, padding = values.detach().clone(), values.detach().clone()
    prompt[0, 0] += 10.0  # a prompt token of a forget row: counts for attention only
    padding[0, 3] += 10.0  # padding: counts for neither
    for positions, prompt_counts in (("answer", False), ("attention", True)):
        method = RepresentationMisdirection(layer=1, positions=positions)
        before = method.loss(policy, reference, START)[0].item()
        after_prompt = method.loss(made_up_batch(prompt)[-2], reference, START)[0].item()
        after_padding = method.loss(made_up_batch(padding)[-2], reference, START)[0].item()
        assert (after_prompt != pytest.approx(before)) is prompt_counts
        assert after_padding == pytest.approx(before)
    with pytest.raises(ValueError, match="positions must be one of"):
        RepresentationMisdirection(positions="all")


def test_a_row_without_answer_tokens_counts_for_nothing():
    values = torch.randn(2, 3, 4)
    answer = [[0, 1, 1], [0, 0, 0]]
    policy = StreamScores(NO_LOGITS, {"forget": (0, 1), "retain": (1, 2)},
                          {"layers.0": states(values, [[1, 1, 1], [1, 1, 1]], answer)})
    reference = StreamScores(NO_LOGITS, {"retain": (0, 1)},
                             {"layers.0": states(values[1:], [[1, 1, 1]], [[0, 0, 0]])})
    method = RepresentationMisdirection(layer=0, alpha=1.0)
    loss, logs = method.loss(policy, reference, START)
    assert math.isfinite(loss.item()) and logs["retain_mse"] == 0.0


def test_rmu_layers_and_trained_modules_follow_the_settings():
    tiny = build_method(compose_forget("method=rmu").method)
    assert tiny.layer == 1 and tiny.hidden_layers == ("layers.1",)  # the tiny models: 2-4 layers
    assert tiny.trained_modules == ("layers.0.mlp", "layers.1.mlp")
    large = build_method(compose_forget("method=rmu", "model=llava_phi3_mini").method)
    assert large.layer == 7 and large.trained_modules == ("layers.5.mlp", "layers.6.mlp", "layers.7.mlp")
    assert (large.steering_coeff, large.alpha, large.seed) == (20.0, 100.0, 42)
    exact = build_method(compose_forget("method=rmu", "method.layer=3", "method.trained_layers=[3]",
                                        "method.module=mlp.down_proj").method)
    assert exact.hidden_layers == ("layers.3",) and exact.trained_modules == ("layers.3.mlp.down_proj",)


def tiny_forget(root: Path, data: Path, model: Path, *overrides: str):
    return compose_forget(f"run_root={root}", f"data_dir={data}", f"model.path={model}", f"model_path={model}",
                          "max_steps=2", "batch_size=2", "lora.r=4", "lora.alpha=8", "lr=1e-2", "log_every=1",
                          *overrides)


def test_rmu_trains_only_the_mlps_up_to_its_layer(tmp_path: Path, fiu_dir: Path, tiny_dir: Path):
    run = forget(tiny_forget(tmp_path, fiu_dir, tiny_dir, "method=rmu", "method.layer=0"))
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(math.isfinite(r["forget_mse"]) and math.isfinite(r["retain_mse"]) for r in log)
    assert log[0]["retain_mse"] < 1e-10  # the adapter starts as the reference
    adapter = load_file(str(run / "checkpoint" / "adapter_model.safetensors"))
    moved = {key for key, value in adapter.items() if "lora_B" in key and value.abs().max() > 0}
    assert moved and all(".layers.0.mlp." in key for key in moved)


# --- MMUnlearner -------------------------------------------------------------------------------------------------

class TwoWeights(torch.nn.Module):
    """One scored token, two classes, logits (w0 * x0, w1 * x1), target class 0, and an unused weight: at w = 0,
    p1 = 1/2, so dNLL/dw0 = -x0 / 2 and dNLL/dw1 = x1 / 2."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.unused = torch.nn.Parameter(torch.zeros(1))


class StubPreparation:
    """What MMUnlearner's prepare reads of a Preparation: the model, batches per stream, a forward."""

    def __init__(self, model: TwoWeights, streams: dict[str, list[torch.Tensor]]) -> None:
        self.model, self.streams = model, streams

    def batches(self, stream: str):
        yield from self.streams[stream]

    def forward(self, batch: torch.Tensor, layers=()):
        logits = (self.model.w * batch).reshape(1, 2)
        return AnswerLogits(logits, torch.tensor([0]), torch.tensor([0]), 1), {}


def test_fisher_diagonals_and_the_mask_on_a_hand_made_case():
    model = TwoWeights()
    forget_batches = [torch.tensor([2.0, 1.0]), torch.tensor([0.0, 1.0])]  # grads (-1, 1/2), (0, 1/2)
    retain_batches = [torch.tensor([1.0, 2.0])]  # grads (-1/2, 1)
    method = MMUnlearner()
    statistics = method.prepare(StubPreparation(model, {"forget": forget_batches, "retain": retain_batches}))
    assert torch.allclose(statistics["forget:w"], torch.tensor([0.5, 0.25]))  # mean over batches of grad^2
    assert torch.allclose(statistics["retain:w"], torch.tensor([0.25, 1.0]))
    assert torch.equal(statistics["forget:unused"], torch.zeros(1))
    assert model.w.grad is None  # .grad left alone
    method.use_statistics(statistics)
    # ratios (2, 0.25) and (0 + eps) / (0 + eps) = 1 for the weight no gradient reaches: kept at threshold 1
    assert torch.equal(method.masks["w"], torch.tensor([1.0, 0.0]))
    assert torch.equal(method.masks["unused"], torch.ones(1))
    strict = MMUnlearner(threshold=3.0)
    strict.use_statistics(statistics)
    assert torch.equal(strict.masks["w"], torch.zeros(2)) and torch.equal(strict.masks["unused"], torch.zeros(1))


def test_only_the_forget_gradient_is_masked():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    mask = torch.tensor([1.0, 0.0, 1.0])
    forget_term = -(p ** 2).sum()
    retain_term = (p * torch.tensor([1.0, 1.0, 2.0])).sum()
    loss = masked_gradient(forget_term, [(p, mask)]) + retain_term
    assert loss.item() == pytest.approx(forget_term.item() + retain_term.item())
    loss.backward()
    assert torch.allclose(p.grad, mask * (-2 * p.detach()) + torch.tensor([1.0, 1.0, 2.0]))


def test_mmunlearner_loss_needs_its_masks_bound_and_checks_them():
    method = MMUnlearner()
    with pytest.raises(RuntimeError, match="not bound"):
        method.loss(StreamScores(NO_LOGITS, {"forget": (0, 2), "retain": (2, 4)}), None, START)
    method.masks = {"w": torch.ones(2)}
    with pytest.raises(ValueError, match="do not match the trainable parameters"):
        method.gradient_masks(TwoWeights())


class Recorded(MMUnlearner):
    """MMUnlearner keeping the parameters' values when training starts."""

    def gradient_masks(self, model):
        self.start = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
        self.names = list(self.start)
        return super().gradient_masks(model)


def test_masked_entries_do_not_move_in_a_real_run(tmp_path: Path, fiu_dir: Path, tiny_dir: Path, monkeypatch):
    method = Recorded(retain_weight=0.0)  # the forget gradient alone: masked entries must stay where they were
    run = forget_with(monkeypatch, method, tiny_forget(tmp_path, fiu_dir, tiny_dir, "method=mmunlearner"))
    statistics = load_file(str(run / STATISTICS_FILE))
    assert {key.partition(":")[0] for key in statistics} == {"forget", "retain"}
    final = trained_values(run)
    masked = moved = 0
    for name, mask in method.masks.items():
        start, end = method.start[name], final[name]
        assert torch.equal(end[mask == 0], start[mask == 0]), name
        masked += int((mask == 0).sum())
        moved += int((end[mask == 1] != start[mask == 1]).sum())
    assert masked > 0 and moved > 0
    assert all(bool(method.masks[name].all()) for name in method.masks if "lora_A" in name)  # B = 0: no A gradient

    retained = Recorded()  # with the retain NLL (unmasked), the masked entries move too
    run = forget_with(monkeypatch, retained, tiny_forget(tmp_path / "retain", fiu_dir, tiny_dir,
                                                         "method=mmunlearner"))
    final = trained_values(run)
    assert any(not torch.equal(final[name][mask == 0], retained.start[name][mask == 0])
               for name, mask in retained.masks.items() if bool((mask == 0).any()))


def test_mmunlearner_runs_in_sequential_passes(tmp_path: Path, fiu_dir: Path, tiny_dir: Path):
    run = forget(tiny_forget(tmp_path, fiu_dir, tiny_dir, "method=mmunlearner", "passes=sequential"))
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert log and all(math.isfinite(r["loss"]) for r in log)
    assert json.loads((run / "run.json").read_text())["passes"] == "sequential"


def forget_with(monkeypatch, method: MMUnlearner, config) -> Path:
    monkeypatch.setattr("unlearning.recipes.forget.build_method", lambda cfg: method)
    return forget(config)


def trained_values(run: Path) -> dict[str, torch.Tensor]:
    """The run's trainable parameters by the names they had while training (peft's adapter named ``default``)."""
    from unlearning.runs.checkpoints import BaseModels, model_source

    model = BaseModels("float32", "sdpa", merge=False).load(model_source(run))
    return {name: p.detach() for name, p in model.named_parameters()}
