"""Sequential passes (MLLMU-Bench's GA_Diff / KL_Min form): forget batches, then retain batches, never mixed."""

import pytest

from unlearning.data.examples import DataError, Example
from unlearning.training.passes import PassBatches, PassItems


def _examples(prefix: str, n: int) -> list[Example]:
    return [Example(f"{prefix} q{i}", f"a{i}", uid=f"{prefix}{i}") for i in range(n)]


def test_each_epoch_is_every_forget_batch_then_every_retain_batch():
    items = PassItems(_examples("f", 5), _examples("r", 7))
    in_order = PassBatches(items, batch_size=2, shuffle=False, seed=0)
    batches = list(in_order)
    assert len(batches) == len(in_order) == 3 + 4
    assert [[items[i][0] for i in batch] for batch in batches] == [["forget"] * 2, ["forget"] * 2, ["forget"],
                                                                   ["retain"] * 2, ["retain"] * 2, ["retain"] * 2,
                                                                   ["retain"]]
    assert [i for batch in batches for i in batch] == list(range(12))  # file order
    shuffled = PassBatches(items, batch_size=2, shuffle=True, seed=3)
    first, second = list(shuffled), list(shuffled)
    assert first != second  # reshuffled per epoch, within each pass
    for epoch in (first, second):
        flat = [i for batch in epoch for i in batch]
        assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:]) == list(range(5, 12))
    assert first == list(PassBatches(items, batch_size=2, shuffle=True, seed=3))  # seeded
    with pytest.raises(DataError, match="need forget and retain"):
        PassItems(_examples("f", 2), [])
