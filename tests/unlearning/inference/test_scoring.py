import math

import pytest
import torch

from unlearning.inference.scoring import AnswerLogits, answer_logits, kl_ref_to_policy, mean_nll


def _logits_for(probs_per_position: list[list[float]]) -> torch.Tensor:
    return torch.log(torch.tensor(probs_per_position)).unsqueeze(0)


def test_answer_logits_shifts_and_keeps_label_positions():
    # positions 0..3; labels on tokens 2 and 3 -> predicted from positions 1 and 2
    logits = _logits_for([[0.5, 0.5], [0.25, 0.75], [0.9, 0.1], [0.5, 0.5]])
    labels = torch.tensor([[-100, -100, 1, 0]])
    answer = answer_logits(logits, labels)
    assert answer.targets.tolist() == [1, 0]
    assert answer.token_logprobs().tolist() == pytest.approx([math.log(0.75), math.log(0.9)])
    assert mean_nll(answer).item() == pytest.approx(-(math.log(0.75) + math.log(0.9)) / 2)


def test_sequence_logprobs_sum_per_row_and_one_stream_alone():
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.2, 0.8], [0.5, 0.5]], [[0.5, 0.5], [0.6, 0.4], [0.3, 0.7]]]))
    # the last position predicts nothing; position t scores label t + 1
    labels = torch.tensor([[-100, 1, 1], [-100, 0, 1]])
    answer = answer_logits(logits, labels)
    assert answer.sequence_logprobs().tolist() == pytest.approx(
        [math.log(0.5) + math.log(0.8), math.log(0.5) + math.log(0.4)])
    second_only = answer.rows_between(1, 2)
    assert mean_nll(second_only).item() == pytest.approx(-(math.log(0.5) + math.log(0.4)) / 2)


def test_kl_reference_to_policy_hand_computed():
    policy = AnswerLogits(torch.log(torch.tensor([[0.25, 0.75]])), torch.tensor([0]), torch.tensor([0]), 1)
    reference = AnswerLogits(torch.log(torch.tensor([[0.5, 0.5]])), torch.tensor([0]), torch.tensor([0]), 1)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_ref_to_policy(policy, reference).item() == pytest.approx(expected, rel=1e-5)
    assert kl_ref_to_policy(reference, reference).item() == pytest.approx(0.0, abs=1e-7)


def test_mean_nll_rejects_nothing_to_score():
    answer = AnswerLogits(torch.zeros(1, 2), torch.tensor([0]), torch.tensor([0]), 1)
    with pytest.raises(ValueError, match="no scored tokens"):
        mean_nll(answer.rows_between(1, 1))
