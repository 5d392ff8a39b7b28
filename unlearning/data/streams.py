"""Named data streams for forgetting: what a benchmark provides and how a method pairs them with forget examples.

A benchmark provides streams by name (``forget``, ``retain``, ``refusal``, or its own, such as SafeEraser's
``decoupled``). Training iterates over the ``forget`` stream; each step's batch holds, for every stream a method
consumes, one example per forget example:

- ``aligned``: the stream's example that belongs to this forget example (same ``uid``): the forget example
  itself for ``forget``, its refusal for ``refusal``, its harmless-image twin for ``decoupled``;
- ``random``: an example drawn from the stream with the run's seed (FIUBench's retain pairing).

The rows of one batch are grouped by stream in the method's order, so one forward pass scores them all.
"""

from __future__ import annotations

import dataclasses
import difflib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from unlearning.data.collator import ChatCollator
from unlearning.data.examples import DataError, Example
from unlearning.data.images import open_image
from unlearning.runs.progress import progress

ANCHOR = "forget"  # the stream training iterates over
MODALITIES = ("multimodal", "unimodal")
ALIGNED, RANDOM = "aligned", "random"
PAIRINGS = (ALIGNED, RANDOM)


class StreamError(ValueError):
    """A method asks for a stream the benchmark cannot give it."""


@dataclass(frozen=True)
class StreamUse:
    """One stream a method scores, and how its examples are paired with the forget examples."""

    name: str
    pairing: str = ALIGNED

    def __post_init__(self) -> None:
        if self.pairing not in PAIRINGS:
            raise ValueError(f"stream {self.name!r}: pairing must be one of {PAIRINGS}, got {self.pairing!r}")
        if self.name == ANCHOR and self.pairing != ALIGNED:
            raise ValueError(f"the {ANCHOR!r} stream is what training iterates over: its pairing is {ALIGNED!r}")


def merge_uses(uses: Sequence[StreamUse], method: str) -> tuple[StreamUse, ...]:
    """Uses in first-seen order, each stream once; one stream paired two ways is an error."""
    merged: dict[str, StreamUse] = {}
    for use in uses:
        known = merged.setdefault(use.name, use)
        if known.pairing != use.pairing:
            raise StreamError(f"method {method!r} pairs stream {use.name!r} both {known.pairing} and {use.pairing}")
    return tuple(merged.values())


def check_streams(method: str, uses: Sequence[StreamUse], benchmark: str, provided: Sequence[str],
                  elsewhere: Mapping[str, Sequence[str]]) -> None:
    """Fail before any model loads when ``method`` needs a stream ``benchmark`` does not provide.

    ``elsewhere`` maps each stream name to the other benchmarks that provide it, to tell a misspelt
    stream from one that belongs to another benchmark.
    """
    for use in uses:
        if use.name in provided:
            continue
        if use.name in elsewhere:
            raise StreamError(
                f"method {method!r} needs stream {use.name!r}, which benchmark {benchmark!r} does not provide "
                f"(it provides {', '.join(provided)}; {use.name!r} comes with {', '.join(elsewhere[use.name])})")
        known = sorted({*provided, *elsewhere})
        close = difflib.get_close_matches(use.name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise StreamError(f"method {method!r} names unknown stream {use.name!r}; benchmark {benchmark!r} provides "
                          f"{', '.join(provided)}; streams known to any benchmark: {', '.join(known)}.{hint}")


class StreamSet(torch.utils.data.Dataset):
    """One item per forget example: the examples of every consumed stream, in the method's order.

    Random partners come from one ``random.Random(seed)`` consumed in fetch order, as FIUBench paired retain
    examples (so a run's pairing depends only on the seed and the data order).
    """

    def __init__(self, streams: Mapping[str, Sequence[Example]], uses: Sequence[StreamUse], seed: int = 0,
                 where: str = "") -> None:
        forget = list(streams.get(ANCHOR) or [])
        if not forget:
            raise DataError(f"{where}: the forget set is empty")
        self.forget, self.uses = forget, tuple(uses)
        self._random: dict[str, list[Example]] = {}
        self._aligned: dict[str, dict[str, Example]] = {}
        for use in self.uses:
            examples = list(streams[use.name])
            if use.name == ANCHOR:
                continue
            if not examples:
                raise DataError(f"{where}: stream {use.name!r} is empty")
            if use.pairing == RANDOM:
                self._random[use.name] = examples
            else:
                self._aligned[use.name] = _by_uid(examples, forget, use.name, where)
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.forget)

    def state_dict(self) -> dict[str, Any]:
        """Where the random partners stand (a resumed run draws an epoch's partners again from its start)."""
        return {"rng": self._rng.getstate()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._rng.setstate(state["rng"])

    def __getitem__(self, index: int) -> tuple[Example, ...]:
        forget = self.forget[index]
        item = []
        for use in self.uses:
            if use.name == ANCHOR:
                item.append(forget)
            elif use.pairing == RANDOM:
                pool = self._random[use.name]
                item.append(pool[self._rng.randrange(len(pool))])
            else:
                item.append(self._aligned[use.name][forget.uid])
        return tuple(item)


def _by_uid(examples: Sequence[Example], forget: Sequence[Example], name: str, where: str) -> dict[str, Example]:
    """An aligned stream indexed by uid; every forget example must have exactly one partner."""
    seen: set[str] = set()
    for example in forget:
        if example.uid in seen:
            raise DataError(f"{where}: forget examples share uid {example.uid!r}, so stream {name!r} cannot be "
                            "aligned with them")
        seen.add(example.uid)
    by_uid: dict[str, Example] = {}
    for example in examples:
        if example.uid in by_uid:
            raise DataError(f"{where}: stream {name!r} has two examples for forget example {example.uid!r}")
        by_uid[example.uid] = example
    missing = [example.uid for example in forget if example.uid not in by_uid]
    if missing:
        raise DataError(f"{where}: stream {name!r} has no example aligned with forget example {missing[0]!r} "
                        f"({len(missing)} of {len(forget)} forget examples have none)")
    return by_uid


class StreamCollator:
    """Rows grouped by stream (in the method's order) in one batch; ``streams`` maps each name to its rows.

    With ``reference_streams`` naming some of the streams only, the batch also holds ``reference``: those streams'
    rows collated on their own, for a reference pass that skips the rows whose reference scores no loss reads.
    """

    def __init__(self, collator: ChatCollator, uses: Sequence[StreamUse],
                 reference_streams: Sequence[str] | None = None) -> None:
        self.collator, self.names = collator, [use.name for use in uses]
        self.reference_streams = [n for n in self.names if reference_streams is None or n in reference_streams]

    def _collate(self, items: Sequence[tuple[Example, ...]], names: Sequence[str]) -> dict[str, Any]:
        rows: list[Example] = []
        spans: dict[str, tuple[int, int]] = {}
        for name in names:
            start = len(rows)
            rows += [item[self.names.index(name)] for item in items]
            spans[name] = (start, len(rows))
        batch = self.collator(rows)
        batch["streams"] = spans
        return batch

    def __call__(self, items: Sequence[tuple[Example, ...]]) -> dict[str, Any]:
        batch = self._collate(items, self.names)
        if self.reference_streams != self.names:
            batch["reference"] = self._collate(items, self.reference_streams)
        return batch


def validate_examples(collator: ChatCollator, streams: Mapping[str, Sequence[Example]], where: str) -> None:
    """Render every example's prompt and scored span and fully decode its images once before training, so a
    bad record (or a truncated image) stops the run before anything is written, naming the stream and example."""
    for name, examples in streams.items():
        for example in progress(examples, total=len(examples), desc=f"check {name}"):  # images decoded: slow
            try:
                collator.target_text(example)  # its errors name the example
                for source in example.images():
                    try:
                        open_image(source)
                    except DataError as error:
                        raise DataError(f"example {example.uid!r}: {error}") from error
            except DataError as error:
                raise DataError(f"{where}, stream {name!r}: {error}") from error


def with_modality(examples: Sequence[Example], modality: str) -> list[Example]:
    """multimodal: the examples with their images; unimodal: the same examples as text only (forgetting from
    text alone, MLLMU-Bench's comparison; any benchmark's streams can be used this way)."""
    if modality not in MODALITIES:
        raise ValueError(f"forget_modality must be one of {MODALITIES}, got {modality!r}")
    if modality == "multimodal":
        return list(examples)
    return [dataclasses.replace(example, image=None) for example in examples]
