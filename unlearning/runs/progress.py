"""Progress bars for the long loops that have no accelerator at hand (checking examples, hashing data, asking the
judge): shown on a terminal of the local main process only, as the inference and training bars are."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def local_main() -> bool:
    """Whether this is the first process on its machine (``LOCAL_RANK`` 0, or a launch without one)."""
    return os.environ.get("LOCAL_RANK", "0") in ("", "0")


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str) -> tqdm:
    """A bar over ``iterable`` (or updated by hand up to ``total``); None for ``disable`` turns it off when the output
    is not a terminal, so logs stay clean."""
    return tqdm(iterable, total=total, desc=desc, leave=False, disable=None if local_main() else True)
