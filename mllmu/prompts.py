"""MLLMU-Bench's question wordings (``eval.py``), as user-turn text for the model's own chat template."""

from __future__ import annotations

from collections.abc import Sequence

CLASSIFICATION_INSTRUCTION = "Just give ONE letter representing the answer directly."
CLOZE_INSTRUCTION = "Please **ONLY** provide the correct answer that should replace the [Blank]."
GENERATION_INSTRUCTION = {
    "image_text": "Answer the question based on your trained knowledge in one sentence accurately in ENGLISH.",
    "text": "Answer the question based on your trained knowledge in one sentence in ENGLISH.",
}


def classification_prompt(question: str, options: Sequence[tuple[str, str]]) -> str:
    lines = [question, *(f"{letter}: {text}" for letter, text in options), CLASSIFICATION_INSTRUCTION]
    return "\n".join(lines)


def cloze_prompt(question: str) -> str:
    return f"{question.replace('__', '[Blank]')}\n{CLOZE_INSTRUCTION}"


def generation_prompt(question: str, modality: str) -> str:
    return f"{question}\n{GENERATION_INSTRUCTION[modality]}"
