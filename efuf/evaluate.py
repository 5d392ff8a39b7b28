"""EFUF's caption evaluation: captions of images no curation file names, scored by CHAIR, BLEU and length.

Decoding is ``eval.decoding`` (greedy by default); compat switches give the original's defaults (beam search with 5
beams and length penalty 0: ``beam_search_captions``), its BLEU (characters against one reference:
``character_bleu``) and its CHAIR reader (nltk tokens and WordNet lemmas: ``chair_as_original``). Both readers use
the data folder's synonyms.txt when it has one.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from efuf import chair, metrics
from efuf.chair_original import OriginalChair, punkt_model, wordnet_source
from efuf.release import EfufData
from unlearning.compat import Compat
from unlearning.evaluation.general import general_results
from unlearning.evaluation.intervals import Resampler
from unlearning.evaluation.runner import EvalContext, EvalSettings, Evaluation, Part
from unlearning.inference.answers import generate_answers
from unlearning.inference.decoding import Decoding

FILE_VERSION = 1
RELEASED_SYNONYMS = "synonyms.txt"  # EFUF's dataset/synonyms.txt, in the data folder
log = logging.getLogger(__name__)
OFFICIAL_BEAMS = 5  # common/args.py:259-261, passed to generate at common/models.py:634-648
OFFICIAL_LENGTH_PENALTY = 0.0  # finished beams ranked by summed log-probability
ORIGINAL_PROMPT = "Please describe the image in great detail. Your response should have at least 100 words."


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """EFUF's evaluation knobs (``benchmark.eval_options``)."""

    prompt: str = ORIGINAL_PROMPT
    n_images: int = 1600  # the first images (sorted) that no curation file names
    # a synonym list (one "category, synonym, ..." line each); None: the data folder's synonyms.txt (the file EFUF
    # ships) when it has one, else efuf/synonyms.txt (which holds every word of the released list)
    synonyms: str | None = None

    def __post_init__(self) -> None:
        if self.n_images < 1:
            raise ValueError(f"eval_options.n_images must be positive, got {self.n_images}")

    def synonyms_file(self, data_dir: Path) -> Path:
        if self.synonyms:
            path = Path(self.synonyms)
            if not path.is_file():
                raise FileNotFoundError(f"benchmark.eval_options.synonyms: {path} is not a file")
            return path
        released = Path(data_dir) / RELEASED_SYNONYMS
        return released if released.is_file() else chair.DEFAULT_SYNONYMS


class ToolkitReader:
    """The toolkit's CHAIR reader (``efuf/chair.py``) behind the interface both readers share."""

    def __init__(self, synonyms_path: Path) -> None:
        self.vocabulary = chair.ObjectVocabulary.from_file(synonyms_path)

    def ground_truth(self, instance_categories: Iterable[str], reference_captions: Sequence[str]) -> set[str]:
        return chair.ground_truth(self.vocabulary, instance_categories, reference_captions)

    def caption_chair(self, caption: str, truth: Iterable[str]) -> chair.CaptionChair:
        return chair.caption_chair(self.vocabulary, caption, truth)


def caption_reader(options: EvalOptions, data_dir: Path, compat: Compat
                   ) -> tuple[ToolkitReader | OriginalChair, dict[str, Any]]:
    """The CHAIR reader (the original's with compat switch ``chair_as_original``) and what its numbers depend on."""
    path = options.synonyms_file(data_dir)
    identity = {"synonyms": path.read_text(encoding="utf-8").splitlines()}
    if not compat.chair_as_original:
        return ToolkitReader(path), {**identity, "reader": "toolkit"}
    if path == chair.DEFAULT_SYNONYMS:
        log.warning("CHAIR as the original reads captions, but with the toolkit's synonym list: put the release's "
                    "synonyms.txt in %s or pass benchmark.eval_options.synonyms=<file> for its vocabulary", data_dir)
    reader = OriginalChair(path)  # WordNet is checked here, before any model loads
    return reader, {**identity, "reader": "original", "tokenizer": punkt_model(), "wordnet": str(wordnet_source())}


def decoding(settings: EvalSettings) -> Decoding:
    if settings.compat.beam_search_captions:
        return Decoding(max_new_tokens=settings.decoding.max_new_tokens, num_beams=OFFICIAL_BEAMS,
                        length_penalty=OFFICIAL_LENGTH_PENALTY)
    return settings.decoding


def evaluation(data: EfufData, options: EvalOptions, settings: EvalSettings) -> Evaluation:
    """The caption part; bad files fail here, before any model loads."""
    reader, reader_identity = caption_reader(options, data.data_dir, settings.compat)
    annotations = data.annotations
    examples = settings.limited(data.evaluation_examples(options.prompt, options.n_images))  # eval.limit: the first
    truth = {name: sorted(reader.ground_truth(annotations.categories.get(name, ()),
                                              annotations.captions.get(name, ())))
             for name, _ in examples}
    references = {name: list(annotations.captions.get(name, ())) for name, _ in examples}
    missing = [name for name, refs in references.items() if not refs]
    if missing:
        raise ValueError(f"{data.path(data.options.captions)}: no reference caption for {len(missing)} evaluation "
                         f"images (e.g. {missing[0]}); BLEU needs them")
    decode = decoding(settings)
    character_bleu = settings.compat.character_bleu  # the switches on are in every part's fingerprint
    fingerprint = {"version": FILE_VERSION, "decoding": dataclasses.asdict(decode), "prompt": options.prompt,
                   "chair": reader_identity}

    def compute(context: EvalContext) -> dict[str, Any]:
        net, collator = context.model.get()
        captions = generate_answers(net, collator, [example for _, example in examples], settings.batch_size, decode,
                                    context.accelerator, desc="captions")
        samples = [score_caption(reader, name, caption, truth[name], references[name], character_bleu)
                   for (name, _), caption in zip(examples, captions, strict=True)]
        return {"aggregate": aggregate(samples), "samples": samples}

    part = Part("captions", fingerprint, compute, data={"examples": [e for _, e in examples], "truth": truth,
                                                       "references": references})

    def summarize(results: Mapping[str, dict[str, Any]], reference_dir: Path | None) -> dict[str, Any]:
        return {"captions": results["captions"]["aggregate"], "general": general_results(results)}

    def resample(results: Mapping[str, dict[str, Any]], reference_dir: Path | None, resampler: Resampler
                 ) -> dict[str, np.ndarray]:
        return resample_captions(results, resampler)

    return Evaluation({"captions": part}, summarize, resample)


def score_caption(reader: ToolkitReader | OriginalChair, image: str, caption: str, truth: Sequence[str],
                  references: Sequence[str], character_bleu: bool) -> dict[str, Any]:
    """One caption's objects (mentioned, hallucinated), length and BLEU: what ``aggregate`` sums."""
    result = reader.caption_chair(caption, truth)
    return {"image": image, "caption": caption, "truth": list(truth),
            "mentioned": [list(pair) for pair in result.mentioned],
            "hallucinated": [list(pair) for pair in result.hallucinated],
            "length": metrics.caption_length(caption), **metrics.caption_bleu(references, caption, character_bleu)}


def _caption_chair(sample: Mapping[str, Any]) -> chair.CaptionChair:
    return chair.CaptionChair(tuple(map(tuple, sample["mentioned"])), tuple(map(tuple, sample["hallucinated"])))


def aggregate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """CHAIR over every caption, mean BLEU and length, and the objects a caption names that the image holds."""
    out: dict[str, Any] = dict(chair.chair_scores([_caption_chair(s) for s in samples]))
    n = len(samples)
    out["grounded_per_caption"] = (out["n_mentioned"] - out["n_hallucinated"]) / n if n else 0.0
    for key in (*metrics.BLEU_WEIGHTS, "length"):
        out[key] = sum(s[key] for s in samples) / n if n else 0.0
    return out


STRATUM = "images"  # one caption per evaluation image: the images are the unit, all in one group


def resample_captions(results: Mapping[str, dict[str, Any]], resampler: Resampler) -> dict[str, np.ndarray]:
    """Bootstrap replicates of every caption metric the table reads, images resampled: CHAIR_s, CHAIR_i (a ratio
    of the drawn captions' summed counts, ``chair.weighted_chair``) and objects per caption from the drawn counts,
    BLEU and length as means over the drawn captions. MME and POPE keep no per-image results: no interval (NaN)."""
    samples = results["captions"]["samples"]
    out: dict[str, np.ndarray] = {}
    if general_results(results) is not None:
        out["general"] = np.full(resampler.resamples, np.nan)
    if not samples:  # nothing to draw: the point values are placeholders, with no interval
        nothing = np.full(resampler.resamples, np.nan)
        return {**out, **{f"captions.{key}": nothing for key in ("chair_s", "chair_i", "grounded_per_caption",
                                                                 *metrics.BLEU_WEIGHTS, "length")}}
    weights = resampler.weights(STRATUM, [s["image"] for s in samples]).astype(float)  # drawn once, used by all
    scores = chair.weighted_chair(weights, [_caption_chair(s) for s in samples])
    out["captions.chair_s"], out["captions.chair_i"] = scores["chair_s"], scores["chair_i"]
    # a bootstrap resample draws as many captions as there are; a resampler that weighs some images 0 (the
    # relearning attack's halves) may draw none: NaN there
    captions = np.where(scores["n_captions"] > 0, scores["n_captions"], np.nan)
    out["captions.grounded_per_caption"] = (scores["n_mentioned"] - scores["n_hallucinated"]) / captions
    for key in (*metrics.BLEU_WEIGHTS, "length"):  # every caption has them: plain weighted means
        out[f"captions.{key}"] = weights @ np.array([float(s[key]) for s in samples]) / captions
    return out
