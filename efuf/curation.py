"""EFUF's data curation in one command: captions -> objects -> scores -> ``pos_neg.json`` + ``sentences.json``.

    bash scripts/curate_efuf.bash                                   # built-in scenes, the tiny captioner, tiny CLIP
    bash scripts/curate_efuf.bash model=llava_1_5_7b data_dir=dataset/efuf benchmark.curation.labels=coco

1. The model forgetting starts from (as ``forget_lora.bash`` finds it) captions the first ``curation.n_images``
   annotated images, greedily, with the training prompt: ``captions.txt`` (``{image} ### {caption}``).
2. Objects: the COCO synonym list on word boundaries (``objects=synonyms``) or an LLM (``objects=llm``, the judge
   client with ``eval.judge``'s endpoint settings).
3. Scores: CLIP window scores (``labels=clip``; the model a hub name or folder; a tiny CLIP is trained on the
   pretraining scenes when the folder is missing and ``clip.tiny`` is set), or the COCO annotations
   (``labels=coco``: ``coco_scores.present`` / ``absent``).
4. ``pos_neg.json``, ``sentences.json`` and ``curation.json`` (the counts, and how well the scores separate objects
   the annotations hold from the others) written into the data folder.

Curated files already there are kept: the same settings and model find them and stop; others need
``benchmark.curation.overwrite=true``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from efuf import chair, objects
from efuf.clip_scores import ClipScorer, WindowSettings, score_objects
from efuf.curate import ObjectScore, coco_label_score, curate
from efuf.data import Caption, ClauseScore, SentenceScore
from efuf.release import EfufData, caption_lines
from efuf.tiny_clip import train_tiny_clip
from unlearning.data.examples import Example
from unlearning.data.images import load_image
from unlearning.evaluation.judge.client import Judge
from unlearning.evaluation.judge.judgments import judge_all
from unlearning.evaluation.judge.settings import JudgeSettings, judge_unavailable_reason
from unlearning.inference.answers import generate_answers
from unlearning.inference.decoding import Decoding
from unlearning.models.loading import load_model
from unlearning.recipes.common import (
    CONFIG_DIR,
    build_benchmark,
    load_processor_for,
    make_accelerator,
    make_collator,
    setup_logging,
    starting_model,
    to_dict,
    with_compat,
)
from unlearning.recipes.slices import BenchmarkSlice, ModelSlice
from unlearning.runs.fingerprint import content_fingerprint, content_hash
from unlearning.runs.io import atomic_write_json, atomic_write_text, read_json, redact

log = logging.getLogger(__name__)

OBJECT_SOURCES = ("synonyms", "llm")
LABELS = ("clip", "coco")
STATS_FILE = "curation.json"


def check_choices(curation: Mapping[str, Any]) -> None:
    if curation["objects"] not in OBJECT_SOURCES:
        raise ValueError(f"benchmark.curation.objects must be one of {OBJECT_SOURCES}, got {curation['objects']!r}")
    if curation["labels"] not in LABELS:
        raise ValueError(f"benchmark.curation.labels must be one of {LABELS}, got {curation['labels']!r}")
    if int(curation["n_images"]) < 1:
        raise ValueError(f"benchmark.curation.n_images must be positive, got {curation['n_images']}")


def outputs(data: EfufData) -> list[Path]:
    o = data.options
    return [data.path(o.curated_captions), data.path(o.pos_neg), data.path(o.sentences), data.path(STATS_FILE)]


def existing_curation(data: EfufData, identity: dict[str, Any], overwrite: bool) -> bool:
    """True when these settings' curation is already there; raises when other curated files would be replaced."""
    present = [path for path in outputs(data) if path.exists()]
    if not present or overwrite:
        return False
    stats = data.path(STATS_FILE)
    if len(present) == len(outputs(data)) and read_json(stats).get("identity") == identity:
        return True
    raise FileExistsError(f"{data.data_dir} already holds curated files ({', '.join(p.name for p in present)}) made "
                          "with other settings or another model; pass benchmark.curation.overwrite=true to replace "
                          "them")


def clip_scorer(clip: Mapping[str, Any], windows: WindowSettings, data: EfufData) -> ClipScorer:
    path = Path(str(clip["path"]))
    if clip.get("tiny") and not path.exists():
        tiny = dict(clip["tiny"])
        images, instances = data.path(tiny.pop("images")), data.path(tiny.pop("instances"))
        log.info("training a tiny CLIP in %s on the windows of %s", path, instances)
        info = train_tiny_clip(path, images, instances, windows, **tiny)
        log.info("tiny CLIP trained: loss %.3f -> %.3f on %d window crops", info["loss_start"], info["loss_end"],
                 info["crops"])
    return ClipScorer(clip["path"], batch_size=int(clip["batch_size"]))


def llm_objects(cfg: DictConfig, captions: list[Caption], vocabulary: chair.ObjectVocabulary,
                accelerator: Any) -> dict[Caption, list[chair.Mention]]:
    settings = JudgeSettings(**{**to_dict(cfg.judge), "enabled": True})
    reason = judge_unavailable_reason(settings)
    if reason:
        raise ValueError(f"curation.objects=llm needs an LLM endpoint: {reason}")
    prompt = objects.read_prompt(Path(cfg.benchmark.curation.object_prompt)
                                 if cfg.benchmark.curation.object_prompt else None)
    judgments = judge_all(Judge(settings), [prompt.replace("{caption}", c.text) for c in captions],
                          lambda reply: 0.0, accelerator)
    failed = sum(j.failed for j in judgments)
    if failed:
        raise RuntimeError(f"object extraction: {failed} of {len(captions)} LLM requests failed (see the log); "
                           "nothing was written")
    return {c: objects.mentions_of(c, objects.parse_objects(j.reply or ""), vocabulary)
            for c, j in zip(captions, judgments, strict=True)}


def separation(scores: list[tuple[float, bool]], neg: float, pos: float) -> dict[str, Any]:
    """How the scores of objects the annotations hold compare with the others'."""
    shown = np.array([s for s, present in scores if present])
    absent = np.array([s for s, present in scores if not present])
    out: dict[str, Any] = {"n_present": int(shown.size), "n_absent": int(absent.size)}
    if shown.size and absent.size:
        # AUC: the chance a present object outscores an absent one (ties count half)
        wins = (shown[:, None] > absent[None, :]).mean() + 0.5 * (shown[:, None] == absent[None, :]).mean()
        out.update(mean_present=float(shown.mean()), mean_absent=float(absent.mean()), auc=float(wins),
                   present_above_pos=float((shown > pos).mean()), absent_below_neg=float((absent < neg).mean()),
                   present_below_neg=float((shown < neg).mean()), absent_above_pos=float((absent > pos).mean()))
    return out


def statistics(captions: list[Caption], found: dict[Caption, list[chair.Mention]], scored: list[tuple[float, bool]],
               clauses: list[ClauseScore], sentences: list[SentenceScore], data: EfufData) -> dict[str, Any]:
    o = data.options
    return {
        "captions": len(captions),
        "captions_with_objects": sum(bool(found[c]) for c in captions),
        "objects": sum(len({m.word for m in found[c]}) for c in captions),
        "clauses": len(clauses),
        "negatives": sum(c.score < o.neg_threshold for c in clauses),
        "positives": sum(c.score > o.pos_threshold for c in clauses),
        "sentences": len(sentences),
        "sentences_kept": sum(s.min > o.neg_threshold and s.mean > o.sentence_threshold for s in sentences),
        "separation": separation(scored, o.neg_threshold, o.pos_threshold),
    }


def curation_identity(curation: dict[str, Any]) -> dict[str, Any]:
    """The curation settings that decide the curated files (``overwrite`` does not; ``partial_edges`` only when
    on, so folders curated before the setting existed keep their identity)."""
    out = {k: v for k, v in curation.items() if k != "overwrite"}
    if not out.get("windows", {}).get("partial_edges", True):
        out["windows"] = {k: v for k, v in out["windows"].items() if k != "partial_edges"}
    return out


def curate_folder(cfg: DictConfig) -> dict[str, Any]:
    with_compat(cfg, "curate")
    accelerator = make_accelerator()
    curation = to_dict(cfg.benchmark.curation)
    check_choices(curation)
    windows = WindowSettings(**curation["windows"])
    bench, model_slice = BenchmarkSlice.from_config(cfg), ModelSlice.from_config(cfg.model)
    benchmark = build_benchmark(bench, accelerator)
    data: EfufData = benchmark.data
    vocabulary = chair.ObjectVocabulary.from_file()
    images = data.curation_images(int(curation["n_images"]))
    annotations = data.annotations
    examples = [Example(data.options.prompt, "", data.image(name, f"{data.path(data.options.instances)}: {name}"),
                        uid=name) for name in images]
    paths = {example.uid: example.image for example in examples}  # resolved and decoded once, above
    group = Path(cfg.run_root) / bench.name / model_slice.name
    model_path = starting_model(cfg.get("model_path"), bench, model_slice, group, benchmark, accelerator)
    identity = {"model": content_fingerprint(model_path), "images": content_hash(examples),
                "options": dataclasses.asdict(data.options),
                "curation": curation_identity(curation), "seed": cfg.seed}
    identity = redact(identity)
    if existing_curation(data, identity, bool(curation["overwrite"])):
        log.info("%s is already curated with these settings and this model; nothing to do", data.data_dir)
        return read_json(data.path(STATS_FILE))

    log.info("captioning %d images with %s", len(images), model_path)
    processor = load_processor_for(str(model_path), model_slice)
    model = load_model(model_path, model_slice.dtype, model_slice.attn_implementation).to(accelerator.device).eval()
    collator = make_collator(processor, model.generation_config, cfg.system_prompt)
    texts = generate_answers(model, collator, examples, int(cfg.batch_size),
                             Decoding(max_new_tokens=int(curation["max_new_tokens"])), accelerator, desc="captions")
    del model
    captions = [Caption(name, " ".join(text.split())) for name, text in zip(images, texts, strict=True)
                if text.strip()]

    if curation["objects"] == "llm":
        found = llm_objects(cfg, captions, vocabulary, accelerator)
    else:
        found = {c: vocabulary.mentions(c.text) for c in captions}

    truth = {name: chair.ground_truth(vocabulary, annotations.categories.get(name, ()),
                                      annotations.captions.get(name, ())) for name in images}
    if curation["labels"] == "coco":
        scores = curation["coco_scores"]
        score: ObjectScore = coco_label_score(truth, vocabulary, float(scores["present"]), float(scores["absent"]))
        table = {(c, m.word): score(c, m) for c in captions for m in found[c]}
    else:
        scorer = clip_scorer(curation["clip"], windows, data)
        table = {}
        for c in captions:
            words = list(dict.fromkeys(m.word for m in found[c]))
            for word, value in score_objects(load_image(paths[c.image]), words, scorer, windows).items():
                table[(c, word)] = value
    scored = [(table[(c, m.word)], m.category in truth.get(c.image, set()))
              for c in captions for m in {m.word: m for m in found[c]}.values()]
    clauses, sentences = curate(captions, lambda c: found[c], lambda c, m: table[(c, m.word)])

    stats = {**statistics(captions, found, scored, clauses, sentences, data), "identity": identity,
             "labels": curation["labels"], "objects_from": curation["objects"]}
    if accelerator.is_main_process:
        o = data.options
        atomic_write_text(data.path(o.curated_captions), caption_lines(captions))
        atomic_write_json(data.path(o.pos_neg), [dataclasses.asdict(c) for c in clauses])
        atomic_write_json(data.path(o.sentences), [dataclasses.asdict(s) for s in sentences])
        atomic_write_json(data.path(STATS_FILE), stats)
        log.info("curated %s: %s", data.data_dir, {k: v for k, v in stats.items() if k != "identity"})
    accelerator.wait_for_everyone()
    return stats


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="curate")
def main(cfg: DictConfig) -> None:
    setup_logging()
    curate_folder(cfg)


if __name__ == "__main__":
    main()
