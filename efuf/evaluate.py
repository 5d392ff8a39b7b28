"""EFUF's caption evaluation: captions of images no curation file names, scored by CHAIR, BLEU and length.

Decoding is ``eval.decoding`` (greedy by default); compat switches give the original's defaults (beam search with 5
beams and length penalty 0: ``beam_search_captions``) and its BLEU (characters against one reference:
``character_bleu``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from efuf import chair, metrics
from efuf.release import EfufData
from unlearning.evaluation.general import general_results
from unlearning.evaluation.runner import EvalContext, EvalSettings, Evaluation, Part
from unlearning.inference.answers import generate_answers
from unlearning.inference.decoding import Decoding

FILE_VERSION = 1
OFFICIAL_BEAMS = 5  # common/args.py:259-261, passed to generate at common/models.py:634-648
OFFICIAL_LENGTH_PENALTY = 0.0  # finished beams ranked by summed log-probability
ORIGINAL_PROMPT = "Please describe the image in great detail. Your response should have at least 100 words."


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """EFUF's evaluation knobs (``benchmark.eval_options``)."""

    prompt: str = ORIGINAL_PROMPT
    n_images: int = 1600  # the first images (sorted) that no curation file names
    synonyms: str | None = None  # another synonym list (one "category, synonym, ..." line each); None: efuf's own

    def __post_init__(self) -> None:
        if self.n_images < 1:
            raise ValueError(f"eval_options.n_images must be positive, got {self.n_images}")

    def vocabulary(self) -> chair.ObjectVocabulary:
        return chair.ObjectVocabulary.from_file(Path(self.synonyms) if self.synonyms else chair.DEFAULT_SYNONYMS)


def decoding(settings: EvalSettings) -> Decoding:
    if settings.compat.beam_search_captions:
        return Decoding(max_new_tokens=settings.decoding.max_new_tokens, num_beams=OFFICIAL_BEAMS,
                        length_penalty=OFFICIAL_LENGTH_PENALTY)
    return settings.decoding


def evaluation(data: EfufData, options: EvalOptions, settings: EvalSettings) -> Evaluation:
    """The caption part; bad files fail here, before any model loads."""
    vocabulary = options.vocabulary()
    annotations = data.annotations
    examples = data.evaluation_examples(options.prompt, options.n_images)
    truth = {name: sorted(chair.ground_truth(vocabulary, annotations.categories.get(name, ()),
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
                   "synonyms": sorted(vocabulary.synonyms.items())}

    def compute(context: EvalContext) -> dict[str, Any]:
        net, collator = context.model.get()
        captions = generate_answers(net, collator, [example for _, example in examples], settings.batch_size, decode,
                                    context.accelerator, desc="captions")
        samples = []
        for (name, _), caption in zip(examples, captions, strict=True):
            result = chair.caption_chair(vocabulary, caption, truth[name])
            samples.append({"image": name, "caption": caption, "truth": truth[name],
                            "mentioned": [list(pair) for pair in result.mentioned],
                            "hallucinated": [list(pair) for pair in result.hallucinated],
                            "length": metrics.caption_length(caption),
                            **metrics.caption_bleu(references[name], caption, character_bleu)})
        return {"aggregate": aggregate(samples), "samples": samples}

    part = Part("captions", fingerprint, compute, data={"examples": [e for _, e in examples], "truth": truth,
                                                       "references": references})

    def summarize(results: Mapping[str, dict[str, Any]], reference_dir: Path | None) -> dict[str, Any]:
        return {"captions": results["captions"]["aggregate"], "general": general_results(results)}

    return Evaluation({"captions": part}, summarize)


def aggregate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """CHAIR over every caption, mean BLEU and length, and the objects a caption names that the image holds."""
    results = [chair.CaptionChair(tuple(map(tuple, s["mentioned"])), tuple(map(tuple, s["hallucinated"])))
               for s in samples]
    out: dict[str, Any] = dict(chair.chair_scores(results))
    n = len(samples)
    out["grounded_per_caption"] = (out["n_mentioned"] - out["n_hallucinated"]) / n if n else 0.0
    for key in (*metrics.BLEU_WEIGHTS, "length"):
        out[key] = sum(s[key] for s in samples) / n if n else 0.0
    return out
