"""Where a scoring command (of outputs made elsewhere) writes its scores, without replacing another's.

The file records the inputs it was scored from; an existing file scored from other inputs is refused unless the
user says ``overwrite=true``, so re-running the same command replaces its own result and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unlearning.runs.io import read_json


def scores_target(source: Path, out: str | None, compat_mode: str, inputs: dict[str, Any], overwrite: bool) -> Path:
    """``out``, or ``<source stem>.scores[.<compat mode>].json`` beside ``source``; refused when it holds scores of
    other inputs (unless ``overwrite``)."""
    target = Path(out) if out else source.with_name(
        f"{source.stem}.scores{'' if compat_mode == 'default' else '.' + compat_mode}.json")
    if target.exists() and not overwrite and read_json(target).get("inputs") != inputs:
        raise FileExistsError(f"{target} holds scores of other inputs; pass overwrite=true to replace it, or out=")
    return target
