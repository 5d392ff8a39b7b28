"""Pinned numbers of a short seeded run of each benchmark, so refactors that should move no number are checked.

Each benchmark is trained for a few steps on the small model (Stage I or the vanilla finetune, then a few
forget steps per method) and evaluated; the results-table rows (every column but the run folder's name, as
full-precision floats) must equal the pinned ones in ``tests/golden/``. The pinned files were written by this
test with ``UPDATE_GOLDEN=1`` on the code before the engine refactor (commit 706a52c), on a 2-core CPU; MLLMU-Bench's
were written again when it got its own recipe and ROUGE-1/2 columns (its vanilla rows' other values unchanged).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir

from results_collect import collect_rows
from unlearning.benchmarks import benchmark_class
from unlearning.recipes.common import CONFIG_DIR
from unlearning.recipes.evaluate import evaluate
from unlearning.recipes.finetune import finetune
from unlearning.recipes.forget import forget

GOLDEN = Path(__file__).with_name("golden")
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def _config(name: str, *overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose(name, overrides=list(overrides))


def _rows(root: Path, benchmark: str) -> list[dict[str, Any]]:
    rows = collect_rows(root)[benchmark]
    columns = {"model", "label", *(column.name for column in benchmark_class(benchmark).report.columns)} - {"run"}
    rows = [{key: value for key, value in row.items() if key in columns} for row in rows]
    return sorted(rows, key=_row_key)


def _row_key(row: dict[str, Any]) -> tuple[str, str]:
    """Rows in the order of what names them (method, split, ...), not of their numbers: two methods' near-equal
    numbers must not swap places when a computation is merely reordered."""
    names = {key: value for key, value in row.items() if not isinstance(value, float)}
    return json.dumps(names, sort_keys=True, default=str), json.dumps(row, sort_keys=True, default=str)


def _check(rows: list[dict[str, Any]], name: str) -> None:
    path = GOLDEN / f"{name}.json"
    if UPDATE:
        path.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    pinned = sorted(json.loads(path.read_text()), key=_row_key)
    assert len(rows) == len(pinned)
    for row, expected in zip(rows, pinned, strict=True):
        assert set(row) == set(expected), (sorted(row), sorted(expected))
        for key, value in expected.items():
            got = row[key]
            if isinstance(value, float) and not math.isnan(value):
                assert got == pytest.approx(value, rel=1e-6, abs=1e-9), (row.get("method"), key)
            else:
                assert got == value, (row.get("method"), key)


def test_fiubench_numbers_are_pinned(tmp_path: Path, fiu_dir: Path, tiny_dir: Path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    common = [f"run_root={tmp_path}/runs", f"data_dir={fiu_dir}", f"model.path={tiny_dir}"]
    for split in ("full", "retain"):
        finetune(_config("finetune", *common, f"split={split}", "max_steps=12"))
    for method in ("ga", "gd", "kl", "po", "npo"):
        forget(_config("forget", *common, f"method={method}", "max_steps=3", "batch_size=2"))
    general = [f"eval.general.{name}.{key}={tmp_path}/{name}" for name in ("mme", "pope")
               for key in ("data_dir", "builtin_dir")]
    evaluate(_config("eval", *common, *general, "eval.batch_size=8", "eval.max_new_tokens=8",
                     "eval.judge.enabled=false"))
    _check(_rows(tmp_path / "runs", "fiubench"), "fiubench")


def test_mllmu_numbers_are_pinned(tmp_path: Path, mllmu_dir: Path, tiny_dir: Path):
    common = ["benchmark=mllmu", f"run_root={tmp_path}/runs", f"data_dir={mllmu_dir}", f"model.path={tiny_dir}"]
    finetune(_config("finetune", *common, "max_steps=12"))
    for method, modality in (("gd", "multimodal"), ("npo", "unimodal"), ("kl", "multimodal")):
        forget(_config("forget", *common, f"method={method}", f"forget_modality={modality}", "max_steps=3",
                       "batch_size=2", "forget_split=forget_15"))
    evaluate(_config("eval", *common, "forget_split=forget_15", "eval.batch_size=8", "eval.max_new_tokens=8",
                     "eval.judge.enabled=false"))
    _check(_rows(tmp_path / "runs", "mllmu"), "mllmu")
