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
4. Checks: curation stops when no caption names an object (the files would be empty), when a score is not a
   finite number, and when the scores do not separate the objects the annotations hold from the others (the AUC,
   below ``curation.min_separation`` with 95% confidence; ``curation.check_separation=warn`` logs it instead): an
   untrained or wrong scorer labels clauses at random.
5. ``captions.txt``, ``pos_neg.json``, ``sentences.json`` and ``curation.json`` (the counts and the separation)
   written into the data folder: all staged beside their places first and renamed in together, ``curation.json``
   (the record that the set is complete) last and removed first, so an interrupted curation never leaves a set a
   rerun would take for finished.

Curated files already there are kept: the same settings and model find them and stop; others need
``benchmark.curation.overwrite=true``. The tiny CLIP is trained in a temporary folder and moved to its path only
when trained (``efuf/tiny_clip.py``); a folder at that path without its training record is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from efuf import chair, objects
from efuf.clip_scores import ClipScorer, WindowSettings, score_objects
from efuf.curate import ObjectScore, coco_label_score, curate
from efuf.data import Caption, ClauseScore, SentenceScore
from efuf.release import EfufData, caption_lines
from efuf.tiny_clip import TRAINED_RECORD, is_trained, train_tiny_clip
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
    take_lock,
    to_dict,
    with_compat,
)
from unlearning.recipes.slices import BenchmarkSlice, ModelSlice
from unlearning.runs.console import hydra_app
from unlearning.runs.fingerprint import content_fingerprint, content_hash
from unlearning.runs.io import read_json, redact, umask_mode
from unlearning.runs.locks import Lock

log = logging.getLogger(__name__)

CURATION_LOCK = ".curation.lock"

OBJECT_SOURCES = ("synonyms", "llm")
LABELS = ("clip", "coco")
SEPARATION_CHECKS = ("error", "warn", "off")
STATS_FILE = "curation.json"
Z95 = 1.96  # the upper end of the AUC's 95% interval: a scorer is stopped only when surely below the minimum
# Settings that decide whether the files are written, not what they hold: left out of a curation's identity.
NOT_IDENTITY = ("overwrite", "check_separation", "min_separation")


class CurationError(RuntimeError):
    """Curation would write files that teach nothing or the wrong thing; the message says why and what to set."""


def check_choices(curation: Mapping[str, Any]) -> None:
    if curation["objects"] not in OBJECT_SOURCES:
        raise ValueError(f"benchmark.curation.objects must be one of {OBJECT_SOURCES}, got {curation['objects']!r}")
    if curation["labels"] not in LABELS:
        raise ValueError(f"benchmark.curation.labels must be one of {LABELS}, got {curation['labels']!r}")
    if int(curation["n_images"]) < 1:
        raise ValueError(f"benchmark.curation.n_images must be positive, got {curation['n_images']}")
    check, minimum = separation_settings(curation)
    if check not in SEPARATION_CHECKS:
        raise ValueError(f"benchmark.curation.check_separation must be one of {SEPARATION_CHECKS}, got {check!r}")
    if not 0.0 <= minimum <= 1.0:
        raise ValueError(f"benchmark.curation.min_separation is an AUC, between 0 and 1; got {minimum}")


def separation_settings(curation: Mapping[str, Any]) -> tuple[str, float]:
    """(check_separation, min_separation), with the defaults of config/benchmark/efuf.yaml for older configs."""
    check = curation.get("check_separation", "error")
    minimum = curation.get("min_separation", 0.6)
    return str(check), float(minimum)


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
    how = ("made with other settings or another model" if stats.exists() else
           f"without {STATS_FILE}, the record a finished curation writes last (files written by hand or released, "
           "or a curation interrupted while renaming its files)")
    raise FileExistsError(f"{data.data_dir} already holds curated files ({', '.join(p.name for p in present)}) {how}; "
                          "pass benchmark.curation.overwrite=true to replace them")


def clip_scorer(clip: Mapping[str, Any], windows: WindowSettings, data: EfufData) -> ClipScorer:
    """The CLIP that scores objects; with ``clip.tiny``, trained first when its folder is missing, and refused when
    the folder lacks its training record (an untrained CLIP an interrupted curation of older versions left)."""
    path = Path(str(clip["path"]))
    if clip.get("tiny") and path.exists() and not is_trained(path):
        raise CurationError(f"{path} holds no {TRAINED_RECORD}, the record a finished tiny-CLIP training writes "
                            "last: it is likely an untrained CLIP left by an interrupted curation (or one trained "
                            "before the record existed), and an untrained one labels clauses at random. Delete the "
                            "folder to train it again, or set benchmark.curation.clip.tiny=null to score with it as "
                            "it is")
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
        # AUC: the chance a present object outscores an absent one (ties count half); its standard error is the
        # Mann-Whitney one of a scorer at chance, what the check below tells the AUC apart from
        wins = (shown[:, None] > absent[None, :]).mean() + 0.5 * (shown[:, None] == absent[None, :]).mean()
        error = math.sqrt((shown.size + absent.size + 1) / (12 * shown.size * absent.size))
        out.update(mean_present=float(shown.mean()), mean_absent=float(absent.mean()), auc=float(wins),
                   auc_upper=float(min(1.0, wins + Z95 * error)),
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


def check_separation(stats: Mapping[str, Any], curation: Mapping[str, Any]) -> None:
    """Stop (or warn, ``check_separation=warn``) when the scores separate present from absent objects no better than
    ``min_separation`` even at their 95% upper bound: files labelled by such a scorer teach the wrong clauses."""
    check, minimum = separation_settings(curation)
    sep = stats["separation"]
    if check == "off":
        return
    if "auc" not in sep:
        log.warning("the scores' separation is not checked: of the %d scored objects the annotations hold %d and "
                    "miss %d (an AUC needs both)", sep["n_present"] + sep["n_absent"], sep["n_present"],
                    sep["n_absent"])
        return
    if sep["auc"] >= minimum:
        return
    counts = f"{sep['n_present']} present and {sep['n_absent']} absent objects"
    if sep["auc_upper"] >= minimum:
        log.warning("the %s scores separate the objects the annotations hold from the others with AUC %.2f on %s, "
                    "below benchmark.curation.min_separation=%s, but too few objects to tell (95%% upper bound %.2f); "
                    "curated anyway", curation["labels"], sep["auc"], counts, minimum, sep["auc_upper"])
        return
    scorer = f"the CLIP at {curation['clip']['path']}" if curation["labels"] == "clip" else "the labels"
    message = (f"the {curation['labels']} scores do not separate the objects the annotations hold from the others: "
               f"AUC {sep['auc']:.2f} on {counts} (0.5 is chance; its 95% upper bound {sep['auc_upper']:.2f} is "
               f"below benchmark.curation.min_separation={minimum}). Clauses labelled by such a scorer are "
               f"hallucinated or grounded at random: check {scorer} (an untrained or wrong model?)")
    if check == "warn":
        log.warning("!" * 20 + " %s; curated anyway (benchmark.curation.check_separation=warn) " + "!" * 20, message)
        return
    raise CurationError(f"{message}. Nothing was written; benchmark.curation.check_separation=warn writes the files "
                        "anyway")


def check_found(captions: list[Caption], found: Mapping[Caption, list[chair.Mention]], objects_from: str,
                n_images: int) -> None:
    """Stop before scoring when no caption names an object: the curated files would be empty."""
    if any(found[c] for c in captions):
        return
    if not captions:
        reason = f"the captioner wrote an empty caption for each of the {n_images} images"
    elif objects_from == "llm":
        reason = (f"the LLM named no object of the COCO synonym list (efuf/synonyms.txt) in any of the "
                  f"{len(captions)} captions")
    else:
        reason = (f"none of the {len(captions)} captions holds an object word of the COCO synonym list "
                  "(efuf/synonyms.txt)")
    example = f"; the first caption: {captions[0].image} ### {captions[0].text[:120]!r}" if captions else ""
    raise CurationError(f"curation found no object: {reason}{example}. pos_neg.json and sentences.json would be "
                        "empty; nothing was written")


def check_finite(table: Mapping[tuple[Caption, str], float], labels: str) -> None:
    """A NaN or infinite score would drop or mislabel its clause silently: refuse it, naming the image and object."""
    for (caption, word), value in table.items():
        if not math.isfinite(value):
            raise CurationError(f"the {labels} score of object {word!r} in image {caption.image} is {value}, not a "
                                "finite number; nothing was written")


def write_together(files: Mapping[Path, str], last: Path) -> None:
    """Stage every file beside its place, then rename them in with ``last`` (the completion record) removed first
    and renamed in last: a kill leaves either no record or the complete set it describes."""
    staged: dict[Path, str] = {}
    try:
        for path, text in {**{p: t for p, t in files.items() if p != last}, last: files[last]}.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            staged[path] = tmp
            os.fchmod(fd, umask_mode(directory=False))
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        last.unlink(missing_ok=True)
        for path, tmp in staged.items():
            os.replace(tmp, path)
    except BaseException:
        for tmp in staged.values():
            Path(tmp).unlink(missing_ok=True)
        raise


def plain(obj: Any) -> Any:
    """JSON for numpy scalars and paths in the statistics and identity."""
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def curated_files(captions: list[Caption], found: Mapping[Caption, list[chair.Mention]],
                  truth: Mapping[str, set[str]], table: Mapping[tuple[Caption, str], float], data: EfufData,
                  curation: Mapping[str, Any], identity: dict[str, Any], write: bool = True) -> dict[str, Any]:
    """Check the scored objects, curate the clauses and sentences, and write the four files (``write``): the
    statistics of ``curation.json``. Raises CurationError, writing nothing, when a check fails."""
    check_found(captions, found, curation["objects"], len(captions))
    check_finite(table, curation["labels"])
    scored = [(table[(c, m.word)], m.category in truth.get(c.image, set()))
              for c in captions for m in {m.word: m for m in found[c]}.values()]
    clauses, sentences = curate(captions, lambda c: found[c], lambda c, m: table[(c, m.word)])
    stats = {**statistics(captions, found, scored, clauses, sentences, data), "identity": identity,
             "labels": curation["labels"], "objects_from": curation["objects"]}
    check_separation(stats, curation)
    if write:
        o = data.options

        def dump(obj: Any) -> str:
            return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False, default=plain) + "\n"

        write_together({data.path(o.curated_captions): caption_lines(captions),
                        data.path(o.pos_neg): dump([dataclasses.asdict(c) for c in clauses]),
                        data.path(o.sentences): dump([dataclasses.asdict(s) for s in sentences]),
                        data.path(STATS_FILE): dump(stats)}, last=data.path(STATS_FILE))
        log.info("curated %s: %s", data.data_dir, {k: v for k, v in stats.items() if k != "identity"})
    return stats


def curation_identity(curation: dict[str, Any]) -> dict[str, Any]:
    """The curation settings that decide the curated files (``overwrite`` and the separation check do not;
    ``partial_edges`` only when on, so folders curated before the setting existed keep their identity)."""
    out = {k: v for k, v in curation.items() if k not in NOT_IDENTITY}
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
    # one curation writes a data folder at a time (the lock inside it: its parent may be read-only)
    lock = take_lock(accelerator, Lock(data.data_dir / CURATION_LOCK, f"data folder {data.data_dir}"))
    try:
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
        check_found(captions, found, curation["objects"], len(images))  # before the CLIP is trained or run

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
        stats = curated_files(captions, found, truth, table, data, curation, identity,
                              write=accelerator.is_main_process)
        accelerator.wait_for_everyone()
        return stats
    finally:
        if lock is not None:
            lock.release()


@hydra_app(version_base=None, config_path=CONFIG_DIR, config_name="curate")
def main(cfg: DictConfig) -> None:
    setup_logging()
    curate_folder(cfg)


if __name__ == "__main__":
    main()
