"""Which objects a caption names: the COCO synonym list (default, offline), or an LLM asked through the engine's
judge client (``curation.objects=llm``; any OpenAI-compatible server), as the original's insight/object.py did
with Llama-2-13B.

An LLM reply is read as the original read it: the text after its first ``:`` (when it has one) and before its
first ``(``, split on commas. An object is kept only where it stands in the caption as a whole word (case
ignored); the first such place is its mention. Objects the synonym list knows get their COCO category (for
``labels=coco``); others are their own category.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from efuf.chair import Mention, ObjectVocabulary
from efuf.data import Caption

DEFAULT_PROMPT = Path(__file__).with_name("object_prompt.txt")


def read_prompt(path: Path | None) -> str:
    path = path or DEFAULT_PROMPT
    text = path.read_text(encoding="utf-8")
    if "{caption}" not in text:
        raise ValueError(f"{path}: an object-extraction prompt must hold '{{caption}}' where the caption goes")
    return text


def parse_objects(reply: str) -> list[str]:
    """The object names of an LLM reply (lower case, in order, each once)."""
    text = reply.split(":", 1)[1] if ":" in reply else reply
    text = text.split("(", 1)[0]
    names = [name.strip().strip(".").strip().lower() for name in text.replace("\n", ",").split(",")]
    return list(dict.fromkeys(name for name in names if name))


def mentions_of(caption: Caption, names: Sequence[str], vocabulary: ObjectVocabulary) -> list[Mention]:
    """Each name's first whole-word place in the caption; names the caption does not hold are dropped."""
    out = []
    for name in names:
        match = re.search(rf"\b{re.escape(name)}\b", caption.text, flags=re.IGNORECASE)
        if match is None:
            continue
        word = vocabulary.singular(name) if " " not in name else name
        out.append(Mention(name, vocabulary.synonyms.get(word, name), match.start(), match.end(), match.group(0)))
    return sorted(out, key=lambda mention: mention.start)
