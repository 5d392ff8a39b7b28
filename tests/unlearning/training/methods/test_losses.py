"""Each method's loss on a hand-made batch: value, sign of the gradient, and which rows it may see."""

import math

import pytest
import torch

from unlearning.inference.scoring import AnswerLogits
from unlearning.training.methods import METHODS, StreamScores, build_method
from unlearning.training.progress import Progress

# Rows 0-1 forget (or refusal), rows 2-3 retain; two answer tokens per row, vocabulary of 3.
ROWS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
TARGETS = torch.tensor([0, 1, 2, 0, 1, 1, 0, 2])
START = Progress(0, 10)


def scores(seed: int = 0, requires_grad: bool = True) -> AnswerLogits:
    logits = torch.randn(8, 3, generator=torch.Generator().manual_seed(seed)).requires_grad_(requires_grad)
    return AnswerLogits(logits, TARGETS, ROWS, 4)


def streams(answer: AnswerLogits, first: str = "forget") -> StreamScores:
    return StreamScores(answer, {first: (0, 2), "retain": (2, 4)})


def loss_of(method, policy, reference=None, first: str = "forget", progress: Progress = START):
    return method.loss(streams(policy, first), None if reference is None else streams(reference, first), progress)


def token_nll(answer: AnswerLogits) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(answer.logits, answer.targets, reduction="none")


def test_registry_finds_the_methods_and_rejects_unknown_ones():
    assert {"ga", "gd", "kl", "npo", "po"} <= set(METHODS)  # discovered, not listed
    with pytest.raises(KeyError, match="Did you mean 'gd'"):
        build_method({"name": "gdd"})
    with pytest.raises(ValueError, match="method 'ga'"):
        build_method({"name": "ga", "beta": 1.0})


def test_ga_is_negative_forget_nll_and_ignores_retain_rows():
    policy = scores()
    loss, logs = loss_of(build_method({"name": "ga"}), policy)
    assert loss.item() == pytest.approx(-token_nll(policy)[:4].mean().item())
    assert logs["forget_nll"] == pytest.approx(-loss.item())
    loss.backward()
    assert torch.all(policy.logits.grad[4:] == 0)  # retain rows do not reach the loss
    # descending the loss raises the forget NLL (gradient ascent on it)
    stepped = AnswerLogits(policy.logits.detach() - 0.1 * policy.logits.grad, TARGETS, ROWS, 4)
    assert token_nll(stepped)[:4].mean() > token_nll(policy)[:4].mean()


def test_gd_adds_weighted_retain_nll():
    policy = scores()
    nll = token_nll(policy)
    loss, _ = loss_of(build_method({"name": "gd", "retain_weight": 0.5}), policy)
    assert loss.item() == pytest.approx(-nll[:4].mean().item() + 0.5 * nll[4:].mean().item())
    loss.backward()
    stepped = AnswerLogits(policy.logits.detach() - 0.1 * policy.logits.grad, TARGETS, ROWS, 4)
    assert token_nll(stepped)[4:].mean() < nll[4:].mean()  # retain NLL goes down


def test_kl_is_zero_at_the_reference_and_counts_retain_answer_tokens_only():
    policy, reference = scores(), scores(requires_grad=False)
    method = build_method({"name": "kl"})
    loss, logs = loss_of(method, policy, reference)
    assert logs["retain_kl"] == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(-token_nll(policy)[:4].mean().item())
    # a different reference on forget rows changes nothing: the KL sees retain rows only
    other = scores(requires_grad=False)
    other.logits[:4] += 5.0
    assert loss_of(method, policy, other)[1]["retain_kl"] == pytest.approx(0.0, abs=1e-6)
    shifted = scores(requires_grad=False)
    shifted.logits[4:, 0] += 1.0
    p = torch.softmax(policy.logits[4:].detach(), -1)
    q = torch.softmax(shifted.logits[4:], -1)
    expected = (q * (q.log() - p.log())).sum(-1).mean().item()
    assert loss_of(method, policy, shifted)[1]["retain_kl"] == pytest.approx(expected, rel=1e-5)


def test_po_descends_on_refusals_and_retain():
    policy = scores()
    nll = token_nll(policy)
    method = build_method({"name": "po"})
    loss, _ = loss_of(method, policy, first="refusal")
    assert loss.item() == pytest.approx(nll[:4].mean().item() + nll[4:].mean().item())
    assert [(u.name, u.pairing) for u in method.streams()] == [("refusal", "aligned"), ("retain", "random")]


def test_po_joint_is_one_token_mean_over_the_concatenated_batch():
    """The originals' NLL([refusals; retain]): by hand on two refusal rows of 1 and 3 tokens and one retain row of
    2 tokens, the mean of the six token NLLs (not the mean of the two sets' means)."""
    rows = torch.tensor([0, 1, 1, 1, 2, 2])
    targets = torch.tensor([0, 1, 2, 0, 1, 1])
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    answer = AnswerLogits(logits, targets, rows, 3)
    nll = token_nll(answer)
    joint = build_method({"name": "po", "joint": True})
    loss, logs = joint.loss(StreamScores(answer, {"refusal": (0, 2), "retain": (2, 3)}), None, START)
    assert loss.item() == pytest.approx(nll.mean().item())  # (4 refusal + 2 retain tokens) / 6
    assert logs["refusal_nll"] == pytest.approx(nll[:4].mean().item())
    separate, _ = build_method({"name": "po"}).loss(StreamScores(answer, {"refusal": (0, 2), "retain": (2, 3)}),
                                                    None, START)
    assert separate.item() == pytest.approx(nll[:4].mean().item() + nll[4:].mean().item())


def test_npo_value_at_reference_and_per_sequence_log_ratio():
    beta = 0.5
    method = build_method({"name": "npo", "beta": beta})
    assert [u.name for u in method.streams()] == ["forget"] and method.needs_reference
    policy, reference = scores(), scores(requires_grad=False)
    loss, _ = loss_of(method, policy, reference)
    assert loss.item() == pytest.approx(2 / beta * math.log(2), rel=1e-6)
    shifted = scores(requires_grad=False)
    shifted.logits[:2, :] = shifted.logits[:2, :] - 1.0  # row 0 log-prob unchanged: uniform shift per token
    shifted.logits[2, TARGETS[2]] -= 2.0  # lower the reference log-prob of row 1
    delta = (policy.sequence_logprobs() - shifted.sequence_logprobs())[:2].detach()
    expected = (2 / beta) * torch.nn.functional.softplus(beta * delta).mean().item()
    assert loss_of(method, policy, shifted)[0].item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    stepped = AnswerLogits(policy.logits.detach() - 0.1 * policy.logits.grad, TARGETS, ROWS, 4)
    assert stepped.sequence_logprobs()[:2].sum() < policy.sequence_logprobs()[:2].sum()


def test_npo_with_retain_weight_needs_retain_and_rejects_bad_beta():
    assert [u.name for u in build_method({"name": "npo", "retain_weight": 1.0}).streams()] == ["forget", "retain"]
    with pytest.raises(ValueError):
        build_method({"name": "npo", "beta": 0.0})


def _full_batch(seed: int) -> AnswerLogits:
    """Two rows of three positions over a vocabulary of 2; the scored tokens are the last position of each row."""
    full = torch.randn(2, 3, 2, generator=torch.Generator().manual_seed(seed))
    return AnswerLogits(full[:, 1, :], torch.tensor([0, 1]), torch.tensor([0, 1]), 2, None, full)


def _kl(p_ref: list[float], p: list[float]) -> float:
    return sum(r * math.log(r / q) for r, q in zip(p_ref, p, strict=True))


def test_originals_kl_over_every_position_by_hand():
    """FIUBench/SafeEraser: kl_div(view(-1, V), batchmean) = the mean of the 6 positions' KL; MLLMU-Bench: kl_div on
    (B, T, V) with batchmean = their sum / 2 rows; ours: the 2 scored tokens only."""
    from unlearning.inference.scoring import kl_all_positions

    policy, reference = _full_batch(0), _full_batch(1)

    def probs(logits: torch.Tensor) -> list[float]:
        return torch.softmax(logits, dim=-1).tolist()

    kls = [_kl(probs(reference.full[b, t]), probs(policy.full[b, t])) for b in range(2) for t in range(3)]
    assert kl_all_positions(policy, reference, "position").item() == pytest.approx(sum(kls) / 6, rel=1e-5)
    assert kl_all_positions(policy, reference, "row").item() == pytest.approx(sum(kls) / 2, rel=1e-5)
    torch_mean = torch.nn.functional.kl_div(torch.log_softmax(policy.full.view(-1, 2), -1),
                                            torch.log_softmax(reference.full.view(-1, 2), -1),
                                            reduction="batchmean", log_target=True)
    assert kl_all_positions(policy, reference, "position").item() == pytest.approx(torch_mean.item(), rel=1e-5)
    scored = [_kl(probs(reference.full[b, 1]), probs(policy.full[b, 1])) for b in range(2)]
    answer_only = build_method({"name": "kl"})
    official = build_method({"name": "kl", "reduction": "all_positions_per_row", "retain_nll": 1.0})
    assert official.needs_full_logits and not answer_only.needs_full_logits
    forget = _full_batch(2)

    def batch(retain: AnswerLogits) -> StreamScores:
        joined = AnswerLogits(torch.cat([forget.logits, retain.logits]), torch.cat([forget.targets, retain.targets]),
                              torch.tensor([0, 1, 2, 3]), 4, None, torch.cat([forget.full, retain.full]))
        return StreamScores(joined, {"forget": (0, 2), "retain": (2, 4)})

    loss, logs = answer_only.loss(batch(policy), batch(reference), START)
    assert logs["retain_kl"] == pytest.approx(sum(scored) / 2, rel=1e-5)
    loss, logs = official.loss(batch(policy), batch(reference), START)
    retain_nll = token_nll(policy).mean().item()
    forget_nll = token_nll(forget).mean().item()
    assert loss.item() == pytest.approx(-forget_nll + sum(kls) / 2 + retain_nll, rel=1e-5)
    with pytest.raises(ValueError, match="reduction must be one of"):
        build_method({"name": "kl", "reduction": "tokens"})


def test_npo_on_the_batch_mean_token_nll_by_hand():
    """MLLMU-Bench's NPO.py: one log-ratio per batch, -(CE_theta - CE_ref) of the batch-mean token NLLs."""
    beta = 0.4
    policy, reference = scores(0), scores(1, requires_grad=False)
    method = build_method({"name": "npo", "beta": beta, "granularity": "batch_token_mean"})
    loss, _ = loss_of(method, policy, reference)
    ce_theta, ce_ref = token_nll(policy)[:4].mean().item(), token_nll(reference)[:4].mean().item()
    expected = (2 / beta) * math.log1p(math.exp(beta * (ce_ref - ce_theta)))  # (2/beta) softplus(beta * log ratio)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    per_sequence = build_method({"name": "npo", "beta": beta})
    assert loss_of(per_sequence, policy, reference)[0].item() != pytest.approx(expected)
    with pytest.raises(ValueError, match="granularity must be one of"):
        build_method({"name": "npo", "granularity": "token"})
