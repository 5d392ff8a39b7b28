"""The questions CLEAR asks about an image: its data has captions and names, no questions.

The authors' code draws a caption question from a fixed list (mm/dataset.py:9-19, ``random.choice`` at every
fetch, unseeded) and asks for a name with one fixed sentence to complete (mm/dataset.py:119-120). These strings are
the benchmark's inputs, kept as the original wrote them; which caption question a row gets is drawn here once per
caption, seeded (docs/clear.md, "Choices").
"""

from __future__ import annotations

import zlib

CAPTION_QUESTIONS = (
    "What can you see in this picture?",
    "Tell me about the content of this image",
    "Can you give a description of the image?",
    "What is depicted in the image?",
    "Explain what you observe in the picture.",
    "Describe the image in detail.",
    "What is the main subject of this image?",
    "Can you describe the scene or objects in the image?",
    "What is happening in this image?",
)
NAME_QUESTION = "The name of the person on the image is "


def caption_question(caption: str, seed: int) -> str:
    """The caption question of one caption: a function of its text and the seed only, so the same image-caption
    pair gets the same question in every config it appears in (full, forget10, forget10_perturbed, ...)."""
    index = zlib.crc32(f"{seed}\x00{caption}".encode()) % len(CAPTION_QUESTIONS)
    return CAPTION_QUESTIONS[index]
