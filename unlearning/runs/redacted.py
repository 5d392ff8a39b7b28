"""``python -m unlearning.runs.redacted <module> [arguments]``: run ``<module>`` as ``python -m`` would, with its
stdout and stderr redacted (``unlearning.runs.console``).

For the launchers' ``accelerate launch``: when the recipe it starts fails, accelerate raises an error quoting the
whole command line ("Command '[..., 'eval.judge.api_key_env=sk-...']' returned non-zero exit status 1"), printed by
accelerate's process, which no ``@hydra.main`` of ours runs in. (A module of its own: ``-m`` on
``unlearning.runs.console``, which the package imports, would run that module twice.)
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence

from unlearning.runs.console import redact_console


def run_redacted(module: str, arguments: Sequence[str]) -> None:
    """Run ``module`` as ``__main__`` with ``arguments`` as its command line, after ``redact_console``."""
    sys.argv = [module, *arguments]
    redact_console(arguments)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m unlearning.runs.redacted <module> [arguments]")
    run_redacted(sys.argv[1], sys.argv[2:])
