"""An EFUF data folder: COCO images and annotations, the curated (or released) files, and the streams they make.

Layout (file names are ``benchmark.options``, relative to the data folder)::

    images/                          the COCO images the captions describe (train2014 for the original)
    annotations/instances_*.json     CHAIR's ground truth (with captions_*.json) and labels=coco curation
    captions.txt                     curation's input: the captions of the model under study
    pos_neg.json, sentences.json     curated here (scripts/curate_efuf.bash) or the released efuf-unlearning-30k
    gold.json                        instruction data in LLaVA's conversation format (llava_v1_5_mix665k.json)

Streams for forgetting (the only split is ``curated``):

- ``forget``: the hallucinated clauses (score below ``neg_threshold``), each after its caption context, weighted
  ``neg_threshold + pos_threshold - score`` (the original's 55 - score);
- ``positive``: the grounded clauses (score above ``pos_threshold``), weighted by their score;
- ``sentence``: whole captions whose objects all pass ``neg_threshold`` and whose mean passes
  ``sentence_threshold``, weighted by the mean;
- ``gold``: the first ``gold_size`` instruction conversations (first turn), weighted ``gold_score``; with
  ``gold_skip_unusable`` (compat switch ``gold_as_original``) those without an image or whose image is missing
  are skipped, as the original did.

A clause is a span inside a response: only it is scored, with no end-of-turn (``final=False``); whole captions and
gold answers end their turn. Every error names the file and the record.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from efuf.data import (
    Caption,
    ClauseScore,
    CocoAnnotations,
    InstructTurn,
    SentenceScore,
    read_captions,
    read_instruct,
    read_pos_neg,
    read_sentences,
)
from unlearning.data.examples import DataError, Example, span_example
from unlearning.data.records import check_image, resolve_image

SPLIT = "curated"
log = logging.getLogger(__name__)
STREAMS = ("forget", "positive", "sentence", "gold")


@dataclass(frozen=True)
class EfufOptions:
    """How the folder is read and weighted (``benchmark.options``; part of a run's identity)."""

    prompt: str = "Please describe the image."  # the curation captions' and the training examples' question
    images: str = "images"
    instances: str = "annotations/instances_train2014.json"
    captions: str = "annotations/captions_train2014.json"
    curated_captions: str = "captions.txt"
    objects: str = "objects.txt"  # the release's object list: its images are curation images too
    pos_neg: str = "pos_neg.json"
    sentences: str = "sentences.json"
    instruct: str = "instruct.json"  # what finetune trains on (split=full): a captioner's instruction data
    gold: str = "gold.json"
    gold_size: int = 10000
    # False: a text-only gold record trains without an image and a missing image stops the run; True (the
    # original's finetune/data.py:40-45): both are skipped among the first gold_size records, counted in the log
    gold_skip_unusable: bool = False
    neg_threshold: float = 23.0
    pos_threshold: float = 32.0
    sentence_threshold: float = 27.5
    gold_score: float = 40.0

    def __post_init__(self) -> None:
        if not self.neg_threshold <= self.pos_threshold:
            raise ValueError(f"EFUF needs neg_threshold <= pos_threshold, got {self.neg_threshold} and "
                             f"{self.pos_threshold}")
        if self.gold_size < 0:
            raise ValueError(f"gold_size must be >= 0, got {self.gold_size}")

    @property
    def max_score(self) -> float:
        """What a negative's weight is counted down from (the original's hal + norm thresholds)."""
        return self.neg_threshold + self.pos_threshold


class EfufData:
    def __init__(self, data_dir: Path, options: EfufOptions) -> None:
        self.data_dir, self.options = Path(data_dir), options
        self._decoded: set[Path] = set()

    def path(self, name: str) -> Path:
        return self.data_dir / name

    @functools.cached_property
    def annotations(self) -> CocoAnnotations:
        return CocoAnnotations.read(self.path(self.options.instances), self.path(self.options.captions))

    @functools.cached_property
    def clauses(self) -> list[ClauseScore]:
        return read_pos_neg(self.path(self.options.pos_neg))

    @functools.cached_property
    def sentences(self) -> list[SentenceScore]:
        return read_sentences(self.path(self.options.sentences))

    def image(self, name: str, where: str) -> Path:
        return self._checked(self.path(self.options.images), name, where)

    def instruct_image(self, name: str | None, where: str) -> Path | None:
        return None if name is None else self._checked(self.data_dir, name, where)

    def _exists(self, name: str) -> bool:
        try:
            resolve_image(self.data_dir, name, "")
        except DataError:
            return False
        return True

    def _checked(self, root: Path, name: str, where: str) -> Path:
        """The image's path, decoded in full the first time it is named (many clauses share one image)."""
        path = resolve_image(root, name, where)
        if path not in self._decoded:
            check_image(path, where)
            self._decoded.add(path)
        return path

    # ------------------------------------------------------------------------------------------ streams

    def stream(self, name: str) -> list[Example]:
        o = self.options
        pos_neg = self.path(o.pos_neg)
        if name == "forget":
            return [self._clause(c, i, pos_neg, o.max_score - c.score)
                    for i, c in enumerate(self.clauses) if c.score < o.neg_threshold]
        if name == "positive":
            return [self._clause(c, i, pos_neg, c.score)
                    for i, c in enumerate(self.clauses) if c.score > o.pos_threshold]
        if name == "sentence":
            where = self.path(o.sentences)
            return [Example(o.prompt, s.sentence, self.image(s.image, f"{where}: record {i}"), uid=f"sentence-{i}",
                            weight=s.mean)
                    for i, s in enumerate(self.sentences)
                    if s.min > o.neg_threshold and s.mean > o.sentence_threshold]
        if name == "gold":
            path = self.path(o.gold)
            turns = list(enumerate(read_instruct(path, o.gold_size)))
            if o.gold_skip_unusable:
                usable = [(i, turn) for i, turn in turns if turn.image is not None and self._exists(turn.image)]
                log.info("%s: %d of the first %d records kept as gold data; %d without an image and %d whose image "
                         "is missing skipped (gold_skip_unusable, the original's)", path, len(usable), len(turns),
                         sum(turn.image is None for _, turn in turns),
                         len(turns) - len(usable) - sum(turn.image is None for _, turn in turns))
                turns = usable
            return [self._turn(turn, i, path, o.gold_score) for i, turn in turns]
        raise ValueError(f"efuf has no stream {name!r}; it has {', '.join(STREAMS)}")

    def _clause(self, clause: ClauseScore, index: int, path: Path, weight: float) -> Example:
        where = f"{path}: record {index}"
        return span_example(self.options.prompt, clause.sentence, clause.position, len(clause.sentence), final=False,
                            where=where, image=self.image(clause.image, where), uid=f"clause-{index}", weight=weight)

    def _turn(self, turn: InstructTurn, index: int, path: Path, weight: float = 1.0) -> Example:
        where = f"{path}: record {index}"
        return Example(turn.question, turn.answer, self.instruct_image(turn.image, where), uid=f"{path.stem}-{index}",
                       weight=weight)

    def instruct_examples(self) -> list[Example]:
        path = self.path(self.options.instruct)
        return [self._turn(turn, i, path) for i, turn in enumerate(read_instruct(path))]

    # ------------------------------------------------------------------------------------------ images

    def curated_images(self) -> set[str]:
        """Images named by any curation file present (captions.txt, objects.txt, pos_neg.json, sentences.json)."""
        o = self.options
        names: set[str] = set()
        if self.path(o.curated_captions).is_file():
            names |= {c.image for c in read_captions(self.path(o.curated_captions))}
        if self.path(o.objects).is_file():
            names |= {c.image for c in read_captions(self.path(o.objects))}
        if self.path(o.pos_neg).is_file():
            names |= {c.image for c in self.clauses}
        if self.path(o.sentences).is_file():
            names |= {s.image for s in self.sentences}
        return names

    def curation_images(self, count: int) -> list[str]:
        """The first ``count`` annotated images (sorted): what curation captions."""
        return self.annotations.images()[:count]

    def evaluation_images(self, count: int) -> list[str]:
        """The first ``count`` annotated images (sorted) that no curation file names (the original's rule)."""
        used = self.curated_images()
        return [name for name in self.annotations.images() if name not in used][:count]

    def evaluation_examples(self, prompt: str, count: int) -> list[tuple[str, Example]]:
        where = f"{self.path(self.options.instances)}"
        names = self.evaluation_images(count)
        if not names:
            raise DataError(f"{self.data_dir}: no annotated image is left for evaluation once the curation files' "
                            "images are set aside")
        return [(name, Example(prompt, "", self.image(name, f"{where}: image {name}"), uid=name)) for name in names]


def caption_lines(captions: list[Caption]) -> str:
    return "".join(f"{c.image} ### {c.text}\n" for c in captions)
