"""One example type for every benchmark: an (image, question, answer) triple with its context and weight, and
the error every bad input raises (naming its file and record)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image


class DataError(ValueError):
    """Bad benchmark input; the message names the file and the record."""


ImageSource = Path | Image.Image | bytes  # a file, a decoded image, or encoded bytes (parquet releases)


@dataclass(frozen=True)
class Example:
    """One (image, question, answer) triple; ``uid`` ties per-sample results back to the source record.

    ``shots`` are earlier (question, answer) turns of the same conversation: few-shot demonstrations,
    rendered as user/assistant turns before this question, their images included; never scored.
    ``context`` is assistant text before the scored ``answer`` (EFUF's caption up to a sub-sentence): it
    conditions the span and is never scored. ``final`` says the answer ends the assistant's turn, so the
    end-of-turn marker and EOS are scored with it; a span inside a longer response is scored alone.
    ``weight`` multiplies this example's loss (1 for every benchmark but those that weight examples).
    """

    question: str
    answer: str
    image: ImageSource | None = None
    uid: str = ""
    shots: tuple[Example, ...] = ()
    context: str = ""
    final: bool = True
    weight: float = 1.0

    def images(self) -> list[ImageSource]:
        """Every image of the conversation, in the order the chat template places them."""
        return [ex.image for ex in (*self.shots, self) if ex.image is not None]


def span_example(question: str, text: str, start: int, end: int, *, final: bool, where: str,
                 image: ImageSource | None = None, uid: str = "", weight: float = 1.0) -> Example:
    """The characters ``text[start:end]`` as the scored span of a response, ``text[:start]`` its context.

    Raises a DataError naming ``where`` when the span is empty or lies outside the text.
    """
    if not 0 <= start < end <= len(text):
        raise DataError(f"{where}: span [{start}, {end}) lies outside its text of {len(text)} characters "
                        f"({text[:60]!r})")
    return Example(question, text[start:end], image, uid=uid, context=text[:start], final=final, weight=weight)
