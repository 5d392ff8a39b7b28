"""EFUF's own CHAIR reader (evaluate/eval_auto.py:54-188), for ``compat=official`` (switch ``chair_as_original``).

A caption is lower-cased and cut into nltk's words (``word_tokenize``: Punkt sentences, then the Treebank-style
word tokenizer, so "dog's" is "dog" + "'s"); every token becomes its WordNet noun lemma (``WordNetLemmatizer``:
the shortest lemma WordNet knows, so "men" stays "men" and "vases" becomes "vas"); consecutive tokens are joined
into the synonym list's two-word names and the original's extras ("baby/adult <animal>", "passenger jet/train",
"bow tie", "toilet seat", "home plate", "train track", "wine glas"); "seat" is dropped when "toilet" is there; the
remaining tokens that the synonym list holds are the caption's objects. Each distinct object word counts once per
caption. An image's ground truth is its COCO instance category names and the categories its reference captions
name, read the same way.

WordNet 3.0 comes from the system (Debian's ``wordnet-base`` and ``wordnet-sense-index``, which ``make install``
installs where it can, or any WordNet dict folder named by ``WORDNET_DIR``): nltk's WordNet reader needs it in
its corpus layout, so the files are copied once (34 MB) into a cache folder with the ``lexnames`` index the
Debian package leaves out. nltk's trained English Punkt model is a download; when it is not installed, sentences
are split by Punkt's algorithm without the trained parameters (the same split for captions without
abbreviations such as "Mr." or "St.") and the part fingerprint says which tokenizer ran.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from efuf.chair import CaptionChair

WORDNET_ENV = "WORDNET_DIR"
SYSTEM_WORDNET = Path("/usr/share/wordnet")  # Debian/Ubuntu: apt-get install wordnet-base wordnet-sense-index
WORDNET_FILES = (*(f"{kind}.{pos}" for kind in ("index", "data") for pos in ("noun", "verb", "adj", "adv")),
                 "noun.exc", "verb.exc", "adj.exc", "adv.exc", "index.sense")
# The 45 lexicographer files of WordNet 3.0, in file-number order (lexnames(5WN)); nltk's reader needs the index.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
_SYNTACTIC_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub")
VEHICLES = ("jet", "train")


class WordNetMissing(RuntimeError):
    """No WordNet 3.0 dict folder where the original's CHAIR reader looks for one."""


def wordnet_source() -> Path:
    """The WordNet dict folder: ``$WORDNET_DIR``, else the system's (Debian's packages)."""
    folder = Path(os.environ.get(WORDNET_ENV) or SYSTEM_WORDNET)
    missing = [name for name in WORDNET_FILES if not (folder / name).is_file()]
    if missing:
        raise WordNetMissing(
            f"the original's CHAIR reader (compat switch chair_as_original) needs WordNet 3.0, and {folder} lacks "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}: on Debian or Ubuntu run `sudo apt-get "
            f"install wordnet-base wordnet-sense-index` (make install does it when it runs as root), or set "
            f"{WORDNET_ENV} to a WordNet 3.0 dict folder; or pass compat.chair_as_original=false for the toolkit's "
            "reader")
    return folder


def has_wordnet() -> bool:
    """Whether ``wordnet_source`` finds a WordNet dict folder."""
    try:
        wordnet_source()
    except WordNetMissing:
        return False
    return True


def _cache_root() -> Path:
    """Where the nltk data folder goes: the user's cache, else (not writable) the temporary folder."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vlm-unlearning"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        base = Path(tempfile.gettempdir()) / "vlm-unlearning"
    return base / "nltk_data"


@functools.cache
def nltk_wordnet_root() -> Path:
    """An nltk data folder holding ``corpora/wordnet`` made from the WordNet dict folder, registered with nltk
    (first on its path, so this WordNet is the one read); built once, in a temporary folder renamed into place."""
    import nltk

    source = wordnet_source()
    root = _cache_root()
    target = root / "corpora" / "wordnet"
    stamp = target / "SOURCE"

    def built() -> bool:
        return stamp.is_file() and stamp.read_text(encoding="utf-8") == str(source.resolve())

    if not built():
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="wordnet-", dir=target.parent))
        for name in WORDNET_FILES:  # copies: nltk refuses links (a link could point outside its data folder)
            shutil.copyfile(source / name, work / name)
        lines = (f"{i:02d}\t{name}\t{_SYNTACTIC_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))
        (work / "lexnames").write_text("".join(lines), encoding="utf-8")
        (work / "SOURCE").write_text(str(source.resolve()), encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(work, target)
        except OSError:  # another process put its copy there first
            shutil.rmtree(work, ignore_errors=True)
            if not built():
                raise
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    return root


@functools.cache
def punkt_model() -> str:
    """Which sentence splitter ``word_tokens`` uses: nltk's trained English Punkt when installed, else Punkt's
    algorithm with no trained parameters."""
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        return "punkt untrained"
    return "punkt_tab english"


def word_tokens(text: str) -> list[str]:
    """nltk's ``word_tokenize`` (with the untrained Punkt splitter when the English model is not installed)."""
    import nltk

    if punkt_model() == "punkt_tab english":
        return nltk.word_tokenize(text)
    sentences, words = _tokenizers()
    return [token for sentence in sentences.tokenize(text) for token in words.tokenize(sentence)]


@functools.cache
def _tokenizers() -> tuple[Any, Any]:
    """The untrained Punkt sentence splitter and nltk's word tokenizer, built once."""
    from nltk.tokenize import NLTKWordTokenizer, PunktSentenceTokenizer

    return PunktSentenceTokenizer(), NLTKWordTokenizer()


@functools.cache
def _lemmatizer():
    nltk_wordnet_root()
    from nltk.stem import WordNetLemmatizer

    return WordNetLemmatizer()


class OriginalChair:
    """eval_auto.py's CHAIR class without its file reading: the synonym list's mappings and the caption reader."""

    def __init__(self, synonyms_path: Path) -> None:
        self.synonyms_path = Path(synonyms_path)
        lines = [line.strip().split(", ") for line in self.synonyms_path.read_text(encoding="utf-8").splitlines(True)]
        self.objects: set[str] = set()  # every category and synonym
        self.synonym_map: dict[str, str] = {}
        for names in lines:
            for name in names:
                name = name.strip()
                self.objects.add(name)
                self.synonym_map[name] = names[0]
        double = [word for word in self.synonym_map if len(word.strip().split(" ")) >= 2] + ["home plate",
                                                                                            "train track"]
        self.double_words = {word: word for word in double}
        for animal in ANIMALS:
            self.double_words[f"baby {animal}"] = animal
            self.double_words[f"adult {animal}"] = animal
        for vehicle in VEHICLES:
            self.double_words[f"passenger {vehicle}"] = vehicle
        self.double_words.update({"bow tie": "tie", "toilet seat": "toilet", "wine glas": "wine glass"})
        self.lemma = _lemmatizer()

    def caption_objects(self, caption: str) -> tuple[list[str], list[str]]:
        """The caption's object words (repeats included) and their categories."""
        words = [self.lemma.lemmatize(word) for word in word_tokens(caption.lower())]
        joined, i = [], 0
        while i < len(words):
            pair = " ".join(words[i:i + 2])
            if pair in self.double_words:
                joined.append(self.double_words[pair])
                i += 2
            else:
                joined.append(words[i])
                i += 1
        if "toilet" in joined and "seat" in joined:
            joined = [word for word in joined if word != "seat"]
        found = [word for word in joined if word in self.objects]
        return found, [self.synonym_map[word] for word in found]

    def ground_truth(self, instance_categories: Iterable[str], reference_captions: Sequence[str]) -> set[str]:
        """The image's instance category names and the categories its reference captions name."""
        truth = set(instance_categories)
        for caption in reference_captions:
            truth.update(self.caption_objects(caption)[1])
        return truth

    def caption_chair(self, caption: str, truth: Iterable[str]) -> CaptionChair:
        """Each distinct object word once, hallucinated when its category is not in the truth."""
        truth = set(truth)
        seen: dict[str, str] = {}
        for word, category in zip(*self.caption_objects(caption), strict=True):
            seen.setdefault(word, category)
        mentioned = tuple(seen.items())
        return CaptionChair(mentioned, tuple(pair for pair in mentioned if pair[1] not in truth))
