"""Score a captions file written elsewhere with EFUF's caption metrics, by the code the evaluation part runs.

    bash scripts/score_captions.bash captions=<file> data_dir=<COCO-layout folder> [compat=official] \
         [synonyms=<path>] [out=<json>]

The captions file is the original's output (evaluate/eval_caption.py: ``<image> ### <caption>`` lines; the image
a COCO file name) or JSON lines ``{"image": ..., "caption": ...}``. An image may also be named by its COCO id or
by a path ending in its file name. CHAIR's truth is the image's instance categories and the objects its reference
captions name; BLEU's references are those captions (``benchmark.options.instances`` / ``captions``). Under
``compat=official`` the original's CHAIR reader and BLEU score them (switches ``chair_as_original``,
``character_bleu``; one alone: ``compat.chair_as_original=true``). The scores (rates as fractions) go to a JSON
file and are printed; an existing file scored from other inputs is refused unless ``overwrite=true``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from efuf.data import CocoAnnotations, numbered_lines
from efuf.evaluate import EvalOptions, aggregate, caption_reader, score_caption
from efuf.release import EfufOptions
from unlearning.data.examples import DataError
from unlearning.evaluation.scores_file import scores_target
from unlearning.recipes.common import CONFIG_DIR, setup_logging, to_dict, with_compat
from unlearning.runs.console import hydra_app
from unlearning.runs.fingerprint import content_hash
from unlearning.runs.io import atomic_write_json

log = logging.getLogger(__name__)
SCORES = ("chair_s", "chair_i", "bleu_1", "bleu_2", "bleu_4", "length", "n_captions", "n_mentioned",
          "n_hallucinated")


def read_caption_file(path: Path) -> list[tuple[str, str]]:
    """(image, caption) per non-empty line; a line that is neither form stops with the file and line."""
    out = []
    for number, line in numbered_lines(path):
        where = f"{path}: line {number}"
        if line.lstrip().startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{where}: not valid JSON ({error.msg})") from error
            image, caption = record.get("image"), record.get("caption")
            if not isinstance(image, str | int) or isinstance(image, bool) or not isinstance(caption, str):
                raise DataError(f"{where}: a JSON line needs 'image' (a name or COCO id) and 'caption' (a string)")
            out.append((str(image), caption.strip()))
        elif "###" in line:
            image, caption = line.split("###", 1)  # eval_utils.py:11 reads the first two '###' fields
            out.append((image.strip(), caption.split("###", 1)[0].strip()))
        else:
            raise DataError(f"{where}: neither '<image> ### <caption>' nor a JSON object")
    if not out:
        raise DataError(f"{path}: no captions")
    return out


def image_names(images: list[str], annotations: CocoAnnotations, path: Path) -> list[str]:
    """Each caption's image as the annotations name it: the file name itself, a path ending in it, or the COCO id
    (the number at the end of a COCO file name, as eval_utils.py:15 reads it)."""
    known = set(annotations.images())
    by_id = {}
    for name in known:
        match = re.search(r"(\d+)\.\w+$", name)
        if match:
            by_id[int(match.group(1))] = name
    out = []
    for image in images:
        name = image if image in known else Path(image).name
        if name not in known:
            match = re.search(r"(\d+)(?:\.\w+)?$", image)
            name = by_id.get(int(match.group(1))) if match else None
        if name is None:
            raise DataError(f"{path}: image {image!r} is in neither annotation file")
        out.append(name)
    return out


def score_captions(cfg: DictConfig) -> dict[str, Any]:
    compat = with_compat(cfg, "eval")
    path, data_dir = Path(cfg.captions), Path(cfg.data_dir)
    options = EfufOptions(**to_dict(cfg.benchmark.options))
    reader, identity = caption_reader(EvalOptions(synonyms=cfg.synonyms), data_dir, compat)
    captions = read_caption_file(path)
    annotations = CocoAnnotations.read(data_dir / options.instances, data_dir / options.captions)
    names = image_names([image for image, _ in captions], annotations, path)
    inputs = {"captions": str(path.resolve()), "captions_hash": content_hash(captions),
              "data_dir": str(data_dir.resolve()), "compat": compat.at("eval"), "chair": identity}
    out = scores_target(path, cfg.out, compat.mode, inputs, bool(cfg.overwrite))
    samples = []
    for name, (_, caption) in zip(names, captions, strict=True):
        references = annotations.captions.get(name, ())
        if not references:
            raise DataError(f"{data_dir / options.captions}: no reference caption for {name}; BLEU needs them")
        truth = sorted(reader.ground_truth(annotations.categories.get(name, ()), references))
        samples.append(score_caption(reader, name, caption, truth, references, compat.character_bleu))
    totals = aggregate(samples)
    scores = {"chair_s": totals["chair_s"], "chair_i": totals["chair_i"], "bleu_1": totals["bleu1"],
              "bleu_2": totals["bleu2"], "bleu_4": totals["bleu4"], "length": totals["length"],
              **{key: totals[key] for key in ("n_captions", "n_mentioned", "n_hallucinated")}}
    atomic_write_json(out, {**scores, "empty_captions": sum(not caption for _, caption in captions),
                            "compat": compat.mode, "inputs": inputs, "samples": samples})
    for key in SCORES:
        print(f"{key:<15} {scores[key]:.4f}" if isinstance(scores[key], float) else f"{key:<15} {scores[key]}")
    log.info("scores of %d captions written to %s", len(samples), out)
    return scores


@hydra_app(version_base=None, config_path=CONFIG_DIR, config_name="score_captions")
def main(cfg: DictConfig) -> None:
    setup_logging()
    score_captions(cfg)


if __name__ == "__main__":
    main()
