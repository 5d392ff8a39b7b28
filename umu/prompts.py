"""UMU-Bench's question wordings (``eval.py``, the LLaVA branch), as user-turn text for the model's own chat template.

Generation asks as MLLMU-Bench asks (the same two instructions, ``eval.py:539`` and ``:603``), so that wording is
MLLMU-Bench's (``mllmu.prompts.generation_prompt``).
"""

from __future__ import annotations

from collections.abc import Sequence

from mllmu.prompts import generation_prompt

CLOZE_INSTRUCTION = "Please **ONLY** provide the correct answer without any explanation"  # eval.py:353, :407

__all__ = ["CLOZE_INSTRUCTION", "classification_prompt", "cloze_prompt", "generation_prompt"]


def classification_prompt(question: str, options: Sequence[str]) -> str:
    """The question, then "Select answer in" and the options' texts as a Python list (``eval.py:140, 151, 224``:
    ``str(temp)``), no letters: the answer is an option's text."""
    return f"{question}\nSelect answer in {list(options)!s}"


def cloze_prompt(question: str) -> str:
    """The cloze sentence as written (no blank marker is replaced), then the instruction (``eval.py:353``)."""
    return f"{question}\n{CLOZE_INSTRUCTION}"
