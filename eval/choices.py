"""Reading the chosen option letter out of a multiple-choice answer, the way each benchmark's own scorer does.

ScienceQA follows LLaVA's ``eval_science_qa.py``: the answer is the letter alone, or starts with "<letter>. ", or
holds exactly one "The answer is <letter>."; anything else is a failed answer (wrong). MMBench follows its
official prefetch (VLMEvalKit's ``can_infer``, as in lmms-eval's ``mmbench_evals.py``): exactly one option letter
standing as a word (an "A" among more than three words is taken for the article and not trusted), else exactly
one letter in one of the usual wrappings ("B.", "(C)", ": D", ...), else exactly one option's text inside the
answer. Where that fails the official evaluation asks ChatGPT to match the answer to an option; here it counts
as wrong and is reported (``n_unparsed``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence

LETTERS = string.ascii_uppercase
_THE_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")
_WRAPPINGS = (("", "."), ("", ","), ("", ":"), ("", ")"), ("", ")."), ("(", ")"), ("(", ")."), (":", ""),
              (":", ","), (":", "."), (":", ")"), (":", ")."))


def option_letters(n: int) -> str:
    if not 2 <= n <= len(LETTERS):
        raise ValueError(f"a multiple-choice question needs 2 to {len(LETTERS)} options, got {n}")
    return LETTERS[:n]


def scienceqa_letter(answer: str, n_options: int, letters: str = "ABCDE") -> str | None:
    """LLaVA's reading of a ScienceQA answer (letters A-E as its script lists them); None: failed."""
    answer = answer.strip()
    if answer in tuple(letters):
        letter = answer
    elif len(answer) >= 3 and answer[0] in letters and answer[1:3] == ". ":
        letter = answer[0]
    else:
        found = _THE_ANSWER_IS.findall(answer)
        letter = found[0] if len(found) == 1 else None
    return letter if letter is not None and letter in LETTERS[:n_options] else None


def mmbench_letter(answer: str, options: Mapping[str, str]) -> str | None:
    """MMBench's prefetch of the chosen letter (letters A-E, options by letter); None: not inferable."""
    candidates = "ABCDE"
    words = [w.strip() for w in answer.split()]

    def present(prefix: str = "", suffix: str = "") -> list[str]:
        return [c for c in candidates if f"{prefix}{c}{suffix}" in words]

    bare = present()
    if len(bare) == 1 and not ("A" in words and len(words) > 3):
        return bare[0]
    for prefix, suffix in _WRAPPINGS:
        wrapped = present(prefix, suffix)
        if len(wrapped) == 1:
            return wrapped[0]
    lowered = answer.lower()
    named = [letter for letter, text in options.items() if str(text).lower() in lowered]
    return named[0] if len(named) == 1 else None


def options_text(letters: Sequence[str], texts: Sequence[str]) -> str:
    """The options as the prompts list them, one per line: "A. text"."""
    return "\n".join(f"{letter}. {text}" for letter, text in zip(letters, texts, strict=True))
