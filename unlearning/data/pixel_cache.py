"""Each image's preprocessing done once per run: the image processor's output remembered per example's images.

A training run collates every example again in every epoch, and an evaluation command processes the same images
for every checkpoint; resizing and normalising an image is the collation's main cost. ``CachedImageProcessor``
stands in for a processor's image processor: it splits a batch into its examples' image lists, computes each list
once (remembered, least recently used first out, up to a byte budget), and joins the lists' outputs into the
batch's output as the image processor itself does. Image processors lay a batch out one of two ways, which a probe
on two images tells apart: one entry per image (LLaVA's CLIP, Qwen2-VL's patches), joined by concatenation, or
one entry per example with its images (and tiles, pixels) padded to the batch's largest (Idefics2, Mllama), joined
by padding (zeros for tiles and pixels, and for a missing image what the probe's processor wrote for one).
``tests/unlearning/test_families.py`` compares the joined output with the processor's own on every family.

Images are identified by their sources (a path, encoded bytes; a decoded image by its id, the entry keeping it
alive), which the collator gives for each batch (``serving``); any other call is passed through uncached.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import BatchFeature

log = logging.getLogger(__name__)

PIXEL_CACHE_MB = 512  # default budget per collator (each DataLoader worker process holds its own)


def _nbytes(value: Any) -> int:
    return value.numel() * value.element_size() if isinstance(value, torch.Tensor) else 0


def _padded(tensor: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``tensor`` padded with zeros at the end of every dimension but the first, to ``shape[1:]``."""
    pad: list[int] = []
    for have, want in zip(reversed(tensor.shape[1:]), reversed(shape[1:]), strict=True):
        pad += [0, want - have]
    return F.pad(tensor, pad) if any(pad) else tensor


@dataclass
class _Layout:
    """How an image processor lays out a batch, probed once per image processor settings."""

    per_example: bool  # one entry per example (images padded to the batch's most), else one per image
    missing: dict[str, torch.Tensor]  # per-example layout: what each output holds for a missing image


class CachedImageProcessor:
    """Remembers image processors' outputs per example's images (see the module); one may serve several collators
    (an evaluation command's runs), entries keyed by the image processor's settings too. ``serving`` puts it in a
    processor's place for one call, under a lock: threads collating with it take turns, and the processor object is
    left as it was (it is saved with checkpoints)."""

    def __init__(self, budget_mb: float = PIXEL_CACHE_MB) -> None:
        self.budget = int(budget_mb * 2**20)
        self._entries: OrderedDict[Any, tuple[dict[str, Any], int, Any]] = OrderedDict()  # output, bytes, pinned
        self._bytes = 0
        self._lock = threading.Lock()
        self._settings: dict[int, tuple[str, Any]] = {}  # id(image processor) -> (its settings, itself: pinned)
        self._layouts: dict[str, _Layout] = {}
        self._inner: Any = None
        self._keys: list[list[Any]] | None = None
        self._pinned: Any = None
        self.hits = self.misses = 0

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers started by spawn begin empty
        state = dict(self.__dict__)
        state.update(_entries=OrderedDict(), _bytes=0, _lock=None, _settings={})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # the processor reads the image processor's settings through it
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    @contextlib.contextmanager
    def serving(self, processor: Any, keys: list[list[Any]], pinned: Any) -> Iterator[None]:
        """Stand in for ``processor``'s image processor while it processes a batch whose examples show the images
        ``keys`` (one list per example; ``pinned`` keeps decoded images alive while their ids are keys)."""
        original = getattr(processor, "image_processor", None)
        if original is None or self.budget <= 0:
            yield
            return
        with self._lock:
            self._inner, self._keys, self._pinned = original, keys, pinned
            processor.image_processor = self
            try:
                yield
            finally:
                processor.image_processor = original
                self._inner = self._keys = self._pinned = None

    def __call__(self, images: Any, *args: Any, **kwargs: Any) -> BatchFeature:
        keys = self._keys
        nested = isinstance(images, (list, tuple)) and all(isinstance(sample, (list, tuple)) for sample in images)
        if (args or keys is None or not nested or len(keys) != len(images)
                or [len(sample) for sample in images] != [len(k) for k in keys]):
            return self._inner(images, *args, **kwargs)
        settings = self._settings_of(self._inner) + repr(sorted(kwargs.items()))
        if settings not in self._layouts:
            self._layouts[settings] = self._probe(images, kwargs)
        layout = self._layouts[settings]
        outputs = [self._output(sample, (settings, tuple(key)), kwargs) if sample else None
                   for sample, key in zip(images, keys, strict=True)]
        return self._join(outputs, layout)

    def _settings_of(self, image_processor: Any) -> str:
        known = self._settings.get(id(image_processor))
        if known is None or known[1] is not image_processor:
            described = getattr(image_processor, "to_json_string", None)
            known = (described() if described else repr(vars(image_processor)), image_processor)
            self._settings[id(image_processor)] = known
        return known[0]

    def _output(self, sample: Sequence[Any], key: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if key in self._entries:
            self.hits += 1
            self._entries.move_to_end(key)
            return self._entries[key][0]
        self.misses += 1
        output = dict(self._inner([list(sample)], **kwargs))
        size = sum(_nbytes(value) for value in output.values())
        if size <= self.budget:
            self._entries[key] = output, size, self._pinned
            self._bytes += size
            while self._bytes > self.budget:
                _, (_, evicted, _) = self._entries.popitem(last=False)
                self._bytes -= evicted
        return output

    def _probe(self, images: Sequence[Sequence[Any]], kwargs: dict[str, Any]) -> _Layout:
        """Two examples holding one and two images: 2 rows of pixel values when the layout is per example (the
        first example's second entry then shows what stands for a missing image: zeros, but Mllama marks a padding
        image's first tile in its aspect-ratio mask), 3 (or 3 images' patches) when it is per image."""
        image = next(image for sample in images for image in sample)
        output = self._inner([[image], [image, image]], **kwargs)
        per_example = output["pixel_values"].shape[0] == 2
        log.debug("image processor %s lays batches out per %s", type(self._inner).__name__,
                  "example" if per_example else "image")
        return _Layout(per_example, {name: value[0, 1] for name, value in output.items()
                                     if isinstance(value, torch.Tensor) and value.dim() > 1})

    @staticmethod
    def _join(outputs: list[dict[str, Any] | None], layout: _Layout) -> BatchFeature:
        present = [output for output in outputs if output is not None]
        joined: dict[str, Any] = {}
        for name, first in present[0].items():
            if not isinstance(first, torch.Tensor):  # lists: per example (Mllama's tile counts), or per image
                absent = [[]] if layout.per_example else []
                joined[name] = [item for output in outputs for item in (output[name] if output else absent)]
                continue
            if not layout.per_example or first.dim() < 2:  # one entry per image: an example without images adds none
                joined[name] = torch.cat([output[name] for output in present])
                continue
            shape = [max(output[name].shape[d] for output in present) for d in range(first.dim())]
            rows = []
            for output in outputs:
                own = _padded(output[name], [1, output[name].shape[1], *shape[2:]]) if output else None
                missing = _padded(layout.missing[name][None], [1, *shape[2:]])[:, None].expand(
                    1, shape[1] - (0 if own is None else own.shape[1]), *shape[2:])
                rows.append(missing if own is None else torch.cat([own, missing], dim=1))
            joined[name] = torch.cat(rows)
        return BatchFeature(joined)
