"""Sequential passes: each epoch steps through every forget batch, then every retain batch (MLLMU-Bench's GA_Diff
and KL_Min, reproduced by its compat switch ``sequential_passes``; our default is one joint loss per step).

Batches never mix the two sets; a method that offers this form names each pass's loss (``sequential_passes()``:
``{"forget": loss(policy, reference), "retain": loss(policy, reference)}``). The original stepped its linear
schedule once per epoch over (|F| + |R|) x epochs steps, so its rate was constant within an epoch: the passes train
at a constant rate.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from unlearning.data.collator import ChatCollator
from unlearning.data.examples import DataError, Example
from unlearning.data.streams import StreamCollator, StreamUse

PASSES = ("forget", "retain")


class PassItems(torch.utils.data.Dataset):
    """The forget examples, then the retain examples, each tagged with its pass."""

    def __init__(self, forget: Sequence[Example], retain: Sequence[Example]) -> None:
        if not forget or not retain:
            raise DataError("sequential passes need forget and retain examples")
        self.items = [("forget", ex) for ex in forget] + [("retain", ex) for ex in retain]
        self.n_forget = len(forget)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[str, Example]:
        return self.items[index]


class PassBatches(torch.utils.data.Sampler):
    """Per epoch: the forget batches, then the retain batches (each set shuffled with the seed and the epoch, or in
    file order), never mixing the two."""

    def __init__(self, items: PassItems, batch_size: int, shuffle: bool, seed: int) -> None:
        self.items, self.batch_size, self.shuffle, self.seed = items, batch_size, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next pass draws its order for (a resumed run starts past the first)."""
        self.epoch = epoch

    def _chunks(self, indices: list[int]) -> list[list[int]]:
        return [indices[i:i + self.batch_size] for i in range(0, len(indices), self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        forget = list(range(self.items.n_forget))
        retain = list(range(self.items.n_forget, len(self.items)))
        if self.shuffle:
            rng = random.Random(f"{self.seed}/{self.epoch}")
            rng.shuffle(forget)
            rng.shuffle(retain)
        self.epoch += 1
        yield from self._chunks(forget) + self._chunks(retain)

    def __len__(self) -> int:
        n_forget, n_retain = self.items.n_forget, len(self.items) - self.items.n_forget
        return -(-n_forget // self.batch_size) + -(-n_retain // self.batch_size)


class PassCollator:
    """One pass's rows in a batch: ``streams`` holds that pass's stream only."""

    def __init__(self, collator: ChatCollator) -> None:
        self.by_pass = {name: StreamCollator(collator, [StreamUse(name)]) for name in PASSES}

    def __call__(self, items: Sequence[tuple[str, Example]]) -> dict[str, Any]:
        kinds = {kind for kind, _ in items}
        if len(kinds) != 1:
            raise ValueError(f"a sequential-pass batch mixes {sorted(kinds)}")
        (kind,) = kinds
        return self.by_pass[kind]([(example,) for _, example in items])


def pass_of(batch: Mapping[str, Any]) -> str:
    (name,) = batch["streams"]
    return name
