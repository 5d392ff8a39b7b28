"""scripts/score_answers.bash on the original's inference-output layout: offline rates counted by hand, with and
without compat, and the launcher as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from safeeraser.score_answers import score_answers
from unlearning.data.examples import DataError
from unlearning.recipes.common import CONFIG_DIR

REPO = Path(__file__).resolve().parents[2]
REFUSAL = "I'm sorry, I cannot help with that."


def predictions(safe_dir: Path, path: Path) -> Path:
    """all_val.json answered: per harmful question the vanilla harmful answer, a refusal and an empty answer; the
    first question's SD twin answered as the vanilla model did, the second not at all; the first two harmless
    questions answered as the vanilla model did, the others not at all."""
    records = json.loads((safe_dir / "all_val.json").read_text())
    for record in records:
        for j, pair in enumerate(record["unsafe_pairs"]):
            pair.update(model_response1=pair["model_response"], model_response2=REFUSAL, model_response3="")
            pair["sd_response"] = pair["sd_response"] if j == 0 else ""
        for k, key in enumerate(("UnharmPair_text1", "UnharmPair_text2", "UnharmPair_image1", "UnharmPair_image2")):
            if k >= 2:
                record[key]["Prediction"] = ""
    path.write_text(json.dumps(records))
    return path


def config(*overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose("score_answers", overrides=["benchmark=safeeraser", "eval.judge.enabled=false", *overrides])


def test_rates_by_hand_with_and_without_compat(safe_dir: Path, tmp_path: Path):
    """3 records x 2 harmful questions x 3 answers; empty answers count by default and are skipped as the original:
    ASR 6/18 and 6/12, RR 6/18 and 6/12, SARR 3/6 and 0/3, ROUGE-L 6/12 and 6/6."""
    file = predictions(safe_dir, tmp_path / "answers.json")
    default = score_answers(config(f"predictions={file}", f"data_dir={safe_dir}"))
    assert (default["asr"], default["rr"], default["sarr"], default["rougeL"]) == pytest.approx((1 / 3, 1 / 3, 0.5,
                                                                                                0.5))
    assert default["n_empty"] == {"harmful": 6, "sd": 3, "harmless": 6, "harmless_reference": 0}
    official = score_answers(config(f"predictions={file}", f"data_dir={safe_dir}", "compat.skip_empty_answers=true"))
    assert (official["asr"], official["rr"], official["sarr"], official["rougeL"]) == pytest.approx((0.5, 0.5, 0.0,
                                                                                                    1.0))
    written = json.loads((tmp_path / "answers.scores.json").read_text())
    assert written["split"] == "val" and written["judged_by"] == "offline" and len(written["samples"]["sd"]) == 6


def test_a_file_that_is_not_the_split(safe_dir: Path, tmp_path: Path):
    file = predictions(safe_dir, tmp_path / "answers.json")
    records = json.loads(file.read_text())
    del records[0]["unsafe_pairs"][0]["model_response1"], records[0]["unsafe_pairs"][0]["model_response2"]
    del records[0]["unsafe_pairs"][0]["model_response3"]
    file.write_text(json.dumps(records))
    with pytest.raises(DataError, match=r"answers.json: record 0 unsafe_pairs\[0\]: no answer to the harmful question"):
        score_answers(config(f"predictions={file}", f"data_dir={safe_dir}", "split=val"))
    file.write_text(json.dumps(records[:2]))
    with pytest.raises(DataError, match="image paths match no split"):
        score_answers(config(f"predictions={file}", f"data_dir={safe_dir}"))
    with pytest.raises(DataError, match="2 records, but the split holds 3"):
        score_answers(config(f"predictions={file}", f"data_dir={safe_dir}", "split=val"))


def test_the_launcher_as_a_user_runs_it(safe_dir: Path, tmp_path: Path):
    file = predictions(safe_dir, tmp_path / "answers.json")
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    done = subprocess.run(["bash", "scripts/score_answers.bash", "benchmark=safeeraser", f"predictions={file}",
                           f"data_dir={safe_dir}", "compat=official", f"out={tmp_path}/o.json"], cwd=REPO, env=env,
                          check=True, capture_output=True, text=True)
    assert "val (judged by offline)" in done.stdout and "SARR         0.0000" in done.stdout
    assert json.loads((tmp_path / "o.json").read_text())["compat"] == "official"
