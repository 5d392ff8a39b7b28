"""SimNPO, IdkDPO, UNDIAL and WGA: each objective computed by hand (plain math over tiny logits) against the method,
the direction its gradient moves the model, its defaults against its YAML, and each run through the launcher."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import REPO
from unlearning.inference.scoring import AnswerLogits
from unlearning.training.methods import METHODS, StreamScores, build_method
from unlearning.training.progress import Progress

NEW = ("simnpo", "idkdpo", "undial", "wga")
START = Progress(0, 10)


def logits(n: int, seed: int, vocab: int = 3) -> torch.Tensor:
    return torch.randn(n, vocab, generator=torch.Generator().manual_seed(seed))


def probs(row: torch.Tensor) -> list[float]:
    """softmax of one position's logits, by hand."""
    exps = [math.exp(v) for v in row.tolist()]
    return [e / sum(exps) for e in exps]


def logp(row: torch.Tensor, target: int) -> float:
    return math.log(probs(row)[target])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def stepped(answer: AnswerLogits, lr: float = 0.1) -> AnswerLogits:
    """The scores after one gradient step on the logits themselves."""
    return AnswerLogits(answer.logits.detach() - lr * answer.logits.grad, answer.targets, answer.rows, answer.n_rows)


# Two forget rows of 1 and 3 answer tokens (so length normalisation matters), then two retain rows of 2 tokens.
FR_ROWS = torch.tensor([0, 1, 1, 1, 2, 2, 3, 3])
FR_TARGETS = torch.tensor([2, 0, 1, 1, 0, 2, 1, 0])
FR_SPANS = {"forget": (0, 2), "retain": (2, 4)}


def forget_retain(seed: int, requires_grad: bool = True) -> AnswerLogits:
    return AnswerLogits(logits(8, seed).requires_grad_(requires_grad), FR_TARGETS, FR_ROWS, 4)


def rows_of(answer: AnswerLogits, row: int) -> list[tuple[torch.Tensor, int]]:
    return [(answer.logits[i].detach(), int(answer.targets[i])) for i in range(len(answer.targets))
            if int(answer.rows[i]) == row]


def retain_nll_by_hand(answer: AnswerLogits, rows: tuple[int, ...] = (2, 3)) -> float:
    tokens = [-logp(z, y) for row in rows for z, y in rows_of(answer, row)]
    return sum(tokens) / len(tokens)


def test_the_new_methods_are_registered_and_their_yaml_holds_the_reference_defaults():
    assert set(NEW) <= set(METHODS)
    expected = {"simnpo": {"beta": 4.5, "delta": 0.0, "forget_weight": 0.125, "retain_weight": 1.0},
                "idkdpo": {"beta": 0.1, "forget_weight": 1.0, "retain_weight": 1.0},
                "undial": {"beta": 10.0, "forget_weight": 1.0, "retain_weight": 0.0},
                "wga": {"beta": 1.0, "forget_weight": 1.0, "retain_weight": 1.0}}
    for name, defaults in expected.items():
        config = yaml.safe_load((REPO / "config" / "method" / f"{name}.yaml").read_text())
        assert config == {"name": name, **defaults}
        method = build_method(config)
        assert {key: getattr(method, key) for key in defaults} == defaults
        assert {key: getattr(METHODS.get(name)(), key) for key in defaults} == defaults  # the class agrees
    for name in ("simnpo", "idkdpo"):
        with pytest.raises(ValueError, match="beta must be positive"):
            build_method({"name": name, "beta": 0.0})


def test_simnpo_by_hand_length_normalised_without_reference():
    beta, delta, forget_weight, retain_weight = 2.0, 0.3, 0.5, 0.7
    method = build_method({"name": "simnpo", "beta": beta, "delta": delta, "forget_weight": forget_weight,
                           "retain_weight": retain_weight})
    assert not method.needs_reference
    assert [(u.name, u.pairing) for u in method.streams()] == [("forget", "aligned"), ("retain", "random")]
    policy = forget_retain(0)
    loss, logs = method.loss(StreamScores(policy, FR_SPANS), None, START)
    per_row = []
    for row in (0, 1):  # summed NLL over the row's tokens, divided by its token count
        tokens = rows_of(policy, row)
        per_row.append(sum(-logp(z, y) for z, y in tokens) / len(tokens))
    # -(2/beta) log sigmoid(beta * (NLL/|y| - delta)) = (2/beta) log(1 + exp(-beta * (NLL/|y| - delta)))
    forget_term = sum((2 / beta) * softplus(-beta * (nll - delta)) for nll in per_row) / 2
    expected = forget_weight * forget_term + retain_weight * retain_nll_by_hand(policy)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert logs["simnpo"] == pytest.approx(forget_term, rel=1e-6)
    assert logs["forget_nll"] == pytest.approx(sum(per_row) / 2, rel=1e-6)
    # descending the forget term alone lowers the forget answers' likelihood
    alone = build_method({"name": "simnpo", "retain_weight": 0.0})
    assert [u.name for u in alone.streams()] == ["forget"]
    policy = forget_retain(0)
    alone.loss(StreamScores(policy, FR_SPANS), None, START)[0].backward()
    assert torch.all(policy.logits.grad[4:] == 0)
    assert stepped(policy).sequence_logprobs()[:2].sum() < policy.sequence_logprobs()[:2].sum()


# IdkDPO's batch: forget rows 0-1, their refusals rows 2-3 (one and two tokens), retain rows 4-5.
DPO_ROWS = torch.tensor([0, 0, 1, 2, 3, 3, 4, 5, 5])
DPO_TARGETS = torch.tensor([1, 2, 0, 2, 1, 1, 0, 2, 1])
DPO_SPANS = {"forget": (0, 2), "refusal": (2, 4), "retain": (4, 6)}


def dpo_batch(seed: int, requires_grad: bool = True) -> AnswerLogits:
    return AnswerLogits(logits(9, seed).requires_grad_(requires_grad), DPO_TARGETS, DPO_ROWS, 6)


def sequence_logp(answer: AnswerLogits, row: int) -> float:
    return sum(logp(z, y) for z, y in rows_of(answer, row))


def test_idkdpo_by_hand_prefers_the_refusal_over_the_forget_answer():
    beta, forget_weight, retain_weight = 0.5, 0.8, 0.6
    method = build_method({"name": "idkdpo", "beta": beta, "forget_weight": forget_weight,
                           "retain_weight": retain_weight})
    assert method.needs_reference and method.reference_streams == ("forget", "refusal")
    assert [(u.name, u.pairing) for u in method.streams()] == [
        ("forget", "aligned"), ("refusal", "aligned"), ("retain", "random")]
    policy, reference = dpo_batch(0), dpo_batch(1, requires_grad=False)
    # the reference pass scores only the forget and refusal rows, collated on their own
    ref_rows = AnswerLogits(reference.logits[:6], DPO_TARGETS[:6], DPO_ROWS[:6], 4)
    loss, logs = method.loss(StreamScores(policy, DPO_SPANS),
                             StreamScores(ref_rows, {"forget": (0, 2), "refusal": (2, 4)}), START)
    terms = []
    for forget_row, refusal_row in ((0, 2), (1, 3)):
        chosen = sequence_logp(policy, refusal_row) - sequence_logp(reference, refusal_row)
        rejected = sequence_logp(policy, forget_row) - sequence_logp(reference, forget_row)
        terms.append(-(2 / beta) * math.log(1 / (1 + math.exp(-beta * (chosen - rejected)))))
    dpo = sum(terms) / 2
    assert loss.item() == pytest.approx(forget_weight * dpo + retain_weight * retain_nll_by_hand(policy, (4, 5)),
                                        rel=1e-6)
    assert logs["idkdpo"] == pytest.approx(dpo, rel=1e-6)
    # at the reference the preference term is (2/beta) log 2
    same = build_method({"name": "idkdpo", "beta": beta, "retain_weight": 0.0})
    assert [u.name for u in same.streams()] == ["forget", "refusal"]
    policy = dpo_batch(0)
    loss, _ = same.loss(StreamScores(policy, DPO_SPANS), StreamScores(dpo_batch(0, False), DPO_SPANS), START)
    assert loss.item() == pytest.approx(2 / beta * math.log(2), rel=1e-6)
    loss.backward()  # one step raises the refusals' likelihood and lowers the forget answers'
    after = stepped(policy).sequence_logprobs()
    assert after[2:4].sum() > policy.sequence_logprobs()[2:4].sum()
    assert after[:2].sum() < policy.sequence_logprobs()[:2].sum()
    with pytest.raises(ValueError, match="needs reference scores"):
        same.loss(StreamScores(policy, DPO_SPANS), None, START)


def test_idkdpo_without_a_refusal_stream_is_refused_naming_where_it_is():
    from mllmu.benchmark import MllmuTask
    from unlearning.benchmarks import streams_elsewhere
    from unlearning.data.streams import StreamError, check_streams

    expected = (r"method 'idkdpo' needs stream 'refusal', which benchmark 'mllmu' does not provide \(it provides "
                r"forget, retain; 'refusal' comes with clear, fiubench")
    with pytest.raises(StreamError, match=expected):
        check_streams("idkdpo", build_method({"name": "idkdpo"}).streams(), "mllmu", MllmuTask.stream_names,
                      streams_elsewhere("mllmu"))


def test_undial_by_hand_distils_towards_the_reference_with_the_answer_logit_lowered():
    beta, forget_weight, retain_weight = 2.0, 1.5, 0.4
    method = build_method({"name": "undial", "beta": beta, "forget_weight": forget_weight,
                           "retain_weight": retain_weight})
    assert method.needs_reference and method.reference_streams == ("forget",)
    assert not getattr(method, "needs_full_logits", False)  # the answer positions' logits suffice
    policy, reference = forget_retain(0), forget_retain(1, requires_grad=False)
    ref_rows = AnswerLogits(reference.logits[:4], FR_TARGETS[:4], FR_ROWS[:4], 2)
    loss, logs = method.loss(StreamScores(policy, FR_SPANS), StreamScores(ref_rows, {"forget": (0, 2)}), START)
    cross_entropies = []
    for i in range(4):  # each forget answer token
        target = int(FR_TARGETS[i])
        adjusted = reference.logits[i].clone()
        adjusted[target] -= beta
        teacher, student = probs(adjusted), probs(policy.logits[i].detach())
        cross_entropies.append(-sum(q * math.log(p) for q, p in zip(teacher, student, strict=True)))
    undial = sum(cross_entropies) / 4
    assert logs["undial"] == pytest.approx(undial, rel=1e-6)
    assert loss.item() == pytest.approx(forget_weight * undial + retain_weight * retain_nll_by_hand(policy),
                                        rel=1e-6)
    # defaults: no retain stream; starting at the reference, a step lowers each answer token's probability
    default = build_method({"name": "undial"})
    assert [u.name for u in default.streams()] == ["forget"]
    policy = forget_retain(0)
    loss, _ = default.loss(StreamScores(policy, FR_SPANS), StreamScores(forget_retain(0, False), FR_SPANS), START)
    loss.backward()
    assert torch.all(policy.logits.grad[4:] == 0)
    assert torch.all(stepped(policy).token_logprobs()[:4] < policy.token_logprobs()[:4].detach())
    # beta 0 at the reference: the teacher is the model itself, nothing to learn
    policy = forget_retain(0)
    flat = build_method({"name": "undial", "beta": 0.0})
    flat.loss(StreamScores(policy, FR_SPANS), StreamScores(forget_retain(0, False), FR_SPANS), START)[0].backward()
    assert policy.logits.grad.abs().max() < 1e-6
    other = AnswerLogits(reference.logits[:4], torch.tensor([0, 0, 0, 0]), FR_ROWS[:4], 2)
    with pytest.raises(ValueError, match="reference scored other tokens"):
        default.loss(StreamScores(policy, FR_SPANS), StreamScores(other, {"forget": (0, 2)}), START)


def test_wga_by_hand_weights_each_forget_token_by_its_detached_probability():
    beta, forget_weight, retain_weight = 2.0, 0.9, 0.3
    method = build_method({"name": "wga", "beta": beta, "forget_weight": forget_weight,
                           "retain_weight": retain_weight})
    assert not method.needs_reference
    policy = forget_retain(0)
    loss, logs = method.loss(StreamScores(policy, FR_SPANS), None, START)
    weighted = []
    for i in range(4):  # token mean over every forget answer token of the batch (not per row)
        p = probs(policy.logits[i].detach())[int(FR_TARGETS[i])]
        weighted.append(p ** beta * -math.log(p))
    wga = -sum(weighted) / 4
    assert logs["wga"] == pytest.approx(wga, rel=1e-6)
    assert loss.item() == pytest.approx(forget_weight * wga + retain_weight * retain_nll_by_hand(policy), rel=1e-6)
    # the weight is a constant for the gradient: it equals that of -mean(w * CE) with w fixed
    loss.backward()
    manual = logits(8, 0).requires_grad_(True)
    token_logp = torch.log_softmax(manual, -1)[torch.arange(8), FR_TARGETS]
    weights = torch.tensor([w / -math.log(p) for w, p in zip(
        weighted, [probs(policy.logits[i].detach())[int(FR_TARGETS[i])] for i in range(4)], strict=True)])
    (forget_weight * (weights * token_logp[:4]).mean() - retain_weight * token_logp[4:].mean()).backward()
    assert torch.allclose(policy.logits.grad, manual.grad, atol=1e-6)
    # beta 0 is gradient ascent: -NLL(forget)
    policy = forget_retain(0)
    ascent = build_method({"name": "wga", "beta": 0.0, "retain_weight": 0.0})
    assert [u.name for u in ascent.streams()] == ["forget"]
    value = ascent.loss(StreamScores(policy, FR_SPANS), None, START)[0]
    assert value.item() == pytest.approx(-retain_nll_by_hand(policy, (0, 1)), rel=1e-6)


@pytest.mark.parametrize("method", NEW)
def test_each_new_method_runs_one_step_through_the_launcher(method: str, tmp_path: Path, fiu_dir: Path,
                                                            tiny_dir: Path):
    from tests.test_launchers import run

    run("bash", "scripts/forget_lora.bash", f"method={method}", "max_steps=1", "batch_size=2", "log_every=1",
        f"model_path={tiny_dir}", f"run_root={tmp_path}/runs", f"data_dir={fiu_dir}", f"model.path={tiny_dir}")
    (run_dir,) = (tmp_path / "runs" / "fiubench" / "tiny").glob(f"{method}_forget10_*")
    (record,) = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert math.isfinite(record["loss"]) and method in record  # the method's own term was logged
    info = json.loads((run_dir / "run.json").read_text())
    assert info["method"] == method
    assert ("refusal" in info["streams"]) == (method == "idkdpo")
