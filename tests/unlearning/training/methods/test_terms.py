"""Composed methods (a base method plus weighted terms on named streams), schedules, and example weights,
against hand-computed values."""


import pytest
import torch

from unlearning.inference.scoring import AnswerLogits, mean_nll, sequence_mean_nll
from unlearning.training.methods import StreamScores, build_method
from unlearning.training.methods.terms import Schedule, parse_schedule
from unlearning.training.progress import Progress

# rows: 0-1 forget, 2 decoupled (aligned), 3 positive; tokens per row 2, 1, 2, 3
ROWS = torch.tensor([0, 0, 1, 2, 2, 3, 3, 3])
TARGETS = torch.tensor([0, 1, 2, 0, 1, 1, 0, 2])
SPANS = {"forget": (0, 2), "decoupled": (2, 3), "positive": (3, 4)}


def answer(weights=None) -> AnswerLogits:
    logits = torch.randn(8, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
    return AnswerLogits(logits, TARGETS, ROWS, 4, weights)


def nll(a: AnswerLogits) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(a.logits, a.targets, reduction="none").detach()


def test_schedules():
    assert Schedule(0.5).at(Progress(7, 10)) == 0.5
    linear = Schedule(1.0, 0.5)  # EFUF's positive weight
    assert [linear.at(Progress(s, 10)) for s in (0, 5, 10)] == pytest.approx([1.0, 0.75, 0.5])
    delayed = Schedule(0.3, 0.0, begin=0.4)  # EFUF's negative weight: 0.3 until 40%, then linearly to 0
    assert [delayed.at(Progress(s, 10)) for s in (0, 4, 7, 10)] == pytest.approx([0.3, 0.3, 0.15, 0.0])
    exp = Schedule(1.0, 0.25, kind="exp")
    assert exp.at(Progress(5, 10)) == pytest.approx(0.5)
    assert parse_schedule(2, "w") == Schedule(2.0)
    with pytest.raises(ValueError, match="method 'm' terms\\[0\\] weight: schedule needs 0 <= begin < until"):
        parse_schedule({"start": 1, "end": 0, "begin": 0.9, "until": 0.5}, "method 'm' terms[0] weight")


def test_a_term_added_to_a_method_is_one_yaml():
    """SafeEraser's Prompt Decouple on GA: L = -NLL(forget) + 0.5 NLL(decoupled, aligned)."""
    method = build_method({"name": "ga_pd", "base": {"name": "ga"},
                           "terms": [{"loss": "nll", "stream": "decoupled", "weight": 0.5}]})
    assert [(u.name, u.pairing) for u in method.streams()] == [("forget", "aligned"), ("decoupled", "aligned")]
    policy = answer()
    loss, logs = method.loss(StreamScores(policy, SPANS), None, Progress(0, 1))
    token = nll(policy)
    assert loss.item() == pytest.approx(-token[:3].mean().item() + 0.5 * token[3:5].mean().item(), rel=1e-6)
    assert logs["nll_decoupled"] == pytest.approx(token[3:5].mean().item(), rel=1e-6)
    gd_pd = build_method({"name": "gd_pd", "base": {"name": "gd", "retain_weight": 0.5},
                          "terms": [{"loss": "nll", "stream": "decoupled", "weight": 0.5}]})
    assert [u.name for u in gd_pd.streams()] == ["forget", "retain", "decoupled"] and gd_pd.base.retain_weight == 0.5


def test_a_method_of_weighted_scheduled_terms_only():
    """EFUF-shaped: per-example weighted ascent on hallucinated spans, descent on grounded ones, both scheduled."""
    method = build_method({"name": "fine", "terms": [
        {"loss": "sequence_ascent", "stream": "forget", "weight": {"start": 0.3, "end": 0.0, "begin": 0.4}},
        {"loss": "sequence_nll", "stream": "positive", "pairing": "random", "weight": {"start": 1.0, "end": 0.5}},
    ]})
    assert not method.needs_reference
    weights = torch.tensor([20.0, 35.0, 1.0, 40.0])
    policy = answer(weights)
    progress = Progress(7, 10)  # w_neg 0.15, w_pos 0.65
    loss, logs = method.loss(StreamScores(policy, SPANS), None, progress)
    token = nll(policy)
    per_row = [token[0:2].mean(), token[2:3].mean(), token[3:5].mean(), token[5:8].mean()]
    forget = (20.0 * per_row[0] + 35.0 * per_row[1]) / 2
    expected = -0.15 * forget + 0.65 * 40.0 * per_row[3]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert logs["w_sequence_nll_positive"] == pytest.approx(0.65)


def test_weighted_token_mean_and_sequence_mean_by_hand():
    weights = torch.tensor([2.0, 1.0, 1.0, 0.5])
    policy = answer(weights)
    token = nll(policy)
    w = weights[ROWS]
    assert mean_nll(policy).item() == pytest.approx((w * token).mean().item(), rel=1e-6)
    rows = [token[0:2].mean(), token[2:3].mean(), token[3:5].mean(), token[5:8].mean()]
    assert sequence_mean_nll(policy).item() == pytest.approx(
        sum(wi * r for wi, r in zip(weights, rows, strict=True)).item() / 4, rel=1e-6)
    assert policy.rows_between(1, 3).n_rows == 2 and policy.rows_between(1, 3).rows.tolist() == [0, 1, 1]


def test_bad_compositions_name_the_method():
    with pytest.raises(KeyError, match="unknown loss term 'nl'"):
        build_method({"name": "m", "base": {"name": "ga"}, "terms": [{"loss": "nl", "stream": "retain"}]})
    with pytest.raises(ValueError, match="method 'm' terms\\[0\\]: a term has loss, stream"):
        build_method({"name": "m", "terms": [{"loss": "nll", "stream": "retain", "scale": 2}]})
    with pytest.raises(ValueError, match="method 'm' terms\\[0\\]: stream 'retain': pairing must be one of"):
        build_method({"name": "m", "terms": [{"loss": "nll", "stream": "retain", "pairing": "any"}]})
    with pytest.raises(ValueError, match="needs a base method or terms"):
        build_method({"name": "m", "base": None, "terms": []})
    kl = build_method({"name": "m", "terms": [{"loss": "kl", "stream": "retain", "pairing": "random"}]})
    assert kl.needs_reference
