"""Score a SafeEraser answers file written elsewhere, by the code the evaluation part runs.

    bash scripts/score_answers.bash benchmark=safeeraser predictions=<file> [split=train|val] [compat=official] \
         [eval.judge.*] [out=<json>]

The file is the original's inference output (ckpt_infer.py): the split's records in their order, each unsafe pair
holding the new model's answers ``model_response1``..``model_response3`` (those present are the harmful question's
answers) and ``sd_response`` (its answer with the SD twin), each ``UnharmPair_*`` its ``Prediction``. The data
folder's split gives what they are judged against: the categories, the vanilla answers (the offline judge's
reference, ROUGE-L's and the score's). The split is the one whose image paths the file holds (``split=`` to name
it). Judged by the LLM judge when one is configured (``eval.judge.*``), else offline; the split's rates go to a JSON
file and are printed; an existing file scored from other inputs is refused unless ``overwrite=true``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from safeeraser.data import SPLIT_FILES, SafeEraserData, SafeRecord
from safeeraser.evaluate import EvalOptions, score_split, settings_for_splits
from unlearning.data.examples import DataError
from unlearning.data.records import object_list, read_records, string_field
from unlearning.evaluation.judge.client import Judge
from unlearning.evaluation.judge.settings import judge_unavailable_reason
from unlearning.evaluation.runner import EvalSettings
from unlearning.evaluation.scores_file import scores_target
from unlearning.recipes.common import CONFIG_DIR, setup_logging, to_dict, with_compat
from unlearning.runs.console import hydra_app
from unlearning.runs.fingerprint import content_hash
from unlearning.runs.io import atomic_write_json

log = logging.getLogger(__name__)
HARMFUL_KEYS = ("model_response1", "model_response2", "model_response3")
SHOWN = (("asr", "ASR"), ("rr", "RR"), ("sarr", "SARR"), ("rougeL", "ROUGE-L"), ("score", "judge score"))


def read_predictions(path: Path, rows: list[Any], records: tuple[SafeRecord, ...]
                     ) -> tuple[list[list[str]], list[str], list[str]]:
    """The answers of ``path`` in ``score_split``'s order, each record checked against the split's (same image,
    same questions)."""
    if len(rows) != len(records):
        raise DataError(f"{path}: {len(rows)} records, but the split holds {len(records)}")
    harmful, sd, harmless = [], [], []
    for index, (row, record) in enumerate(zip(rows, records, strict=True)):
        where = f"{path}: record {index}"
        if Path(string_field(row, "image_path", where)).name != record.image.name:
            raise DataError(f"{where}: image_path names {row['image_path']!r}, the split's record "
                            f"{record.image.name!r}; the file must hold the split's records in order")
        pairs = list(object_list(row.get("unsafe_pairs"), where, "unsafe_pairs"))
        if len(pairs) != len(record.unsafe):
            raise DataError(f"{where}: {len(pairs)} unsafe pairs, the split's record has {len(record.unsafe)}")
        for (here, pair), known in zip(pairs, record.unsafe, strict=True):
            if string_field(pair, "question", here) != known.question:
                raise DataError(f"{here}: the question differs from the split's")
            answers = [string_field(pair, key, here, allow_empty=True) for key in HARMFUL_KEYS if key in pair]
            if not answers:
                raise DataError(f"{here}: no answer to the harmful question ({', '.join(HARMFUL_KEYS)})")
            harmful.append(answers)
            sd.append(string_field(pair, "sd_response", here, allow_empty=True))
        for known in record.harmless:
            entry = row.get(known.key)
            if not isinstance(entry, dict):
                raise DataError(f"{where}: missing {known.key!r} (the split's record has it)")
            harmless.append(string_field(entry, "Prediction", f"{where} {known.key}", allow_empty=True))
    return harmful, sd, harmless


def detect_split(path: Path, rows: list[Any], data: SafeEraserData) -> str:
    """The split whose image paths the file holds."""
    names = {Path(str(row.get("image_path", ""))).name for row in rows if isinstance(row, dict)}
    found = [split for split in SPLIT_FILES if {r.image.name for r in data.records(split)} == names]
    if len(found) != 1:
        raise DataError(f"{path}: its image paths match {'both splits' if found else 'no split'} of "
                        f"{data.data_dir}; name it with split=train or split=val")
    return found[0]


def score_answers(cfg: DictConfig) -> dict[str, Any]:
    if cfg.benchmark.name != "safeeraser":
        raise ValueError(f"score_answers scores SafeEraser answers: pass benchmark=safeeraser (got "
                         f"{cfg.benchmark.name!r})")
    compat = with_compat(cfg, "eval")
    settings = EvalSettings.from_config(to_dict(cfg.eval), compat)
    options = EvalOptions(**to_dict(cfg.benchmark.eval_options))
    split_settings, judge_identity = settings_for_splits(options, settings)
    data = SafeEraserData(cfg.data_dir)
    path = Path(cfg.predictions)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows = read_records(path)
    split = cfg.split or detect_split(path, rows, data)
    records = data.records(split)
    harmful, sd, harmless = read_predictions(path, rows, records)
    inputs = {"predictions": str(path.resolve()), "predictions_hash": content_hash([harmful, sd, harmless]),
              "data_dir": str(Path(cfg.data_dir).resolve()), "split": split, "compat": compat.at("eval"),
              "judge": judge_identity, "options": to_dict(cfg.benchmark.eval_options)}
    out = scores_target(path, cfg.out, compat.mode, inputs, bool(cfg.overwrite))
    skipped = judge_unavailable_reason(settings.judge)
    if skipped:
        log.info("judge: %s; judged offline", skipped)
    judge = None if skipped else Judge(settings.judge)
    result = score_split(records, harmful, sd, harmless, split_settings, judge)
    aggregate = result["aggregate"]
    atomic_write_json(out, {"split": split, "compat": compat.mode, **aggregate,
                            "judge_counts": result["judge_by_metric"], "inputs": inputs, "samples": result["samples"]})
    print(f"{split} ({'judged by ' + aggregate['judged_by']})")
    for key, name in SHOWN:
        value = aggregate.get(key)
        print(f"{name:<12} {'n/a' if value is None else f'{value:.4f}'}")
    print(f"{'empty':<12} {aggregate['n_empty']}")
    log.info("scores of %d records written to %s", len(records), out)
    return aggregate


@hydra_app(version_base=None, config_path=CONFIG_DIR, config_name="score_answers")
def main(cfg: DictConfig) -> None:
    setup_logging()
    score_answers(cfg)


if __name__ == "__main__":
    main()
