"""Reading a yes/no answer out of free text."""

from __future__ import annotations

import re

_WORD = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def parse_yes_no(text: str) -> str | None:
    """'yes' or 'no' from the first yes/no word of the answer ("Yes, there is..." -> yes); None when absent.

    FIUBench read the first four characters and POPE's script treated anything without "no"/"not" as yes;
    an answer with neither word is counted as wrong here, not guessed.
    """
    match = _WORD.search(text)
    return match.group(1).lower() if match else None
