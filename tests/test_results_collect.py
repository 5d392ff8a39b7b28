"""Intervals, seeds and paired comparisons on the tiny pipelines: every metric's bootstrap interval in summary.json
and in the Markdown tables (FIUBench, MLLMU-Bench), runs differing only in their seed grouped into mean ± sd rows,
and ``compare=A,B`` giving a run compared with itself a difference of 0 and p = 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from results_collect import _cell, collect, compare_runs, differ_only_in_seed, group_seeds, list_override
from unlearning.benchmarks import benchmark_class
from unlearning.evaluation.intervals import read_replicates
from unlearning.recipes.common import CONFIG_DIR
from unlearning.recipes.evaluate import evaluate
from unlearning.recipes.finetune import finetune
from unlearning.recipes.forget import forget

REPO = Path(__file__).resolve().parents[1]


def _config(name: str, *overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose(name, overrides=list(overrides))


@pytest.fixture(scope="module")
def fiu_runs(tmp_path_factory, fiu_dir: Path, tiny_dir: Path) -> Path:
    """Stage I, the retain model and GA under two seeds, evaluated (no judge, no MME/POPE)."""
    root = tmp_path_factory.mktemp("ci") / "runs"
    common = [f"run_root={root}", f"data_dir={fiu_dir}", f"model.path={tiny_dir}"]
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("OPENAI_API_KEY", raising=False)
        patch.delenv("OPENAI_BASE_URL", raising=False)
        for split in ("full", "retain"):
            finetune(_config("finetune", *common, f"split={split}", "max_steps=2"))
        for seed in (0, 1):
            forget(_config("forget", *common, "method=ga", "max_steps=2", "batch_size=2", f"seed={seed}"))
        evaluate(_config("eval", *common, "eval.general=null", "eval.max_new_tokens=4", "eval.judge.enabled=false"))
    return root


def _summary(root: Path, prefix: str) -> dict:
    (run,) = [p for p in (root / "fiubench" / "tiny").iterdir() if p.name.startswith(prefix)]
    return json.loads((run / "eval" / "summary.json").read_text())


def test_fiubench_summary_has_an_interval_for_every_metric_it_can(fiu_runs: Path):
    summary = _summary(fiu_runs, "finetune_full_")
    metrics = summary["metrics"]["all"]
    for name in ("ROUGE-L", "Truth", "KS", "EM", "MIA", "APE", "MU (hmean)", "forget ROUGE-L", "forget quality",
                 "MIA AUC (Min-K++)"):
        low, high = metrics[name]["interval"]
        assert low <= high, name
    # the point estimate lies inside its percentile interval for the plain means
    for name in ("ROUGE-L", "EM", "forget ROUGE-L"):
        low, high = metrics[name]["interval"]
        assert low - 1e-9 <= metrics[name]["value"] <= high + 1e-9, name
    block = summary["bootstrap"]
    assert block["resamples"] == 1000 and block["method"] == "percentile" and block["confidence"] == 0.95
    assert set(block["strata"]) == {"forget", "retain", "holdout"}
    assert block["strata"]["forget"]["units"] == summary["forget"]["n"] // 3  # 3 QAs per identity
    assert (fiu_runs / "fiubench" / "tiny").glob("*/eval/bootstrap.npz")


def test_intervals_are_seeded(fiu_runs: Path, fiu_dir: Path, tiny_dir: Path):
    """Evaluating again (parts reused) draws the same resamples; another seed other ones (the tiny data has 3
    retain identities, too few for the intervals themselves to differ: the stored replicates do)."""
    common = [f"run_root={fiu_runs}", f"data_dir={fiu_dir}", f"model.path={tiny_dir}"]
    (run,) = [p for p in (fiu_runs / "fiubench" / "tiny").iterdir() if p.name.startswith("finetune_full_")]

    def truth() -> np.ndarray:
        return read_replicates(run / "eval" / "bootstrap.npz")["all"]["Truth"]

    first = truth()
    overrides = [*common, "eval.general=null", "eval.max_new_tokens=4", "eval.judge.enabled=false",
                 f"run_dirs=[{run}]"]
    evaluate(_config("eval", *overrides))
    assert np.array_equal(truth(), first)
    evaluate(_config("eval", *overrides, "eval.bootstrap.seed=5"))
    assert json.loads((run / "eval" / "summary.json").read_text())["bootstrap"]["seed"] == 5
    assert not np.array_equal(truth(), first)
    evaluate(_config("eval", *overrides))  # back to the fixture's settings
    assert np.array_equal(truth(), first)


def test_tables_show_intervals_and_group_seeds(fiu_runs: Path, tmp_path: Path):
    rows = collect(fiu_runs, tmp_path)["fiubench"]
    ga = [row for row in rows if row["method"] == "ga"]
    assert sorted(row["seed"] for row in ga) == [0, 1]
    assert ga[0]["identity"]["benchmark"]["options"]["seed"] == ga[0]["seed"]  # interpolated from the seed
    assert differ_only_in_seed(ga[0]["identity"], ga[0]["seed"], ga[1]["identity"], ga[1]["seed"])
    assert len(group_seeds(rows, benchmark_class("fiubench").report)) == 3  # Stage I, retain model, GA (2 seeds)
    text = (tmp_path / "fiubench.md").read_text()
    assert "± half-width of its bootstrap confidence interval" in text and "mean ± standard deviation" in text
    grouped, individual = text.split("Individual runs:")
    assert grouped.count("| ga |") == 1 and individual.count("| ga |") == 2 and "| 2 seeds |" in grouped
    stage1 = next(row for row in rows if row["method"] == "stage1_full")
    low, high = stage1["intervals"]["Truth"]
    assert low <= stage1["Truth"] <= high
    assert f"| {_cell(stage1['Truth'])} ± {_cell((high - low) / 2)} |" in individual
    seeds = json.loads((tmp_path / "fiubench_seeds.json").read_text())["rows"]
    (ga_group,) = [row for row in seeds if row["method"] == "ga"]
    assert ga_group["seed"] == [0, 1] and ga_group["EM"] == pytest.approx((ga[0]["EM"] + ga[1]["EM"]) / 2)
    assert ga_group["sd"]["EM"] == pytest.approx(abs(ga[0]["EM"] - ga[1]["EM"]) / 2 ** 0.5)
    header = (tmp_path / "fiubench.csv").read_text().splitlines()[0]
    assert "EM low" in header and "EM high" in header and ",seed," in header


def test_a_run_compared_with_itself_differs_by_zero_with_p_one(fiu_runs: Path):
    (run,) = [p for p in (fiu_runs / "fiubench" / "tiny").iterdir() if p.name.startswith("finetune_full_")]
    result = compare_runs(str(run), run.name, fiu_runs)
    assert len(result["metrics"]) >= 10
    for metric in result["metrics"]:
        assert metric["difference"] == 0 and metric["p_value"] == 1.0 and metric["interval"] == [0.0, 0.0]


def test_compare_from_the_command_line(fiu_runs: Path, tmp_path: Path):
    stage1, retain = (next(p for p in (fiu_runs / "fiubench" / "tiny").iterdir() if p.name.startswith(prefix))
                      for prefix in ("finetune_full_", "finetune_retain_"))
    result = subprocess.run([sys.executable, "results_collect.py", f"run_root={fiu_runs}", f"out_dir={tmp_path}",
                             f"compare={stage1},{retain}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    stored = json.loads((tmp_path / f"compare_{stage1.name}_vs_{retain.name}.json").read_text())
    forget_rouge = next(m for m in stored["metrics"] if m["metric"] == "forget ROUGE-L")
    assert forget_rouge["difference"] == pytest.approx(forget_rouge["a"] - forget_rouge["b"])
    assert 0 < forget_rouge["p_value"] <= 1 and "| forget ROUGE-L |" in result.stdout
    bad = subprocess.run([sys.executable, "results_collect.py", f"run_root={fiu_runs}", f"out_dir={tmp_path}",
                          f"compare={stage1}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "compare takes two runs" in bad.stderr


def test_seeds_followed_by_other_settings_still_group():
    a = {"seed": 0, "lr": 1e-3, "benchmark": {"options": {"seed": 0}, "synthetic": {"seed": 0}}}
    b = {"seed": 1, "lr": 1e-3, "benchmark": {"options": {"seed": 1}, "synthetic": {"seed": 0}}}
    assert differ_only_in_seed(a, 0, b, 1)
    assert not differ_only_in_seed(a, 0, {**b, "lr": 2e-3}, 1)
    assert not differ_only_in_seed(a, 0, {**b, "benchmark": {"options": {"seed": 1}, "synthetic": {"seed": 2}}}, 1)


def test_compare_override_reads_as_a_list():
    assert list_override(["x.py", "compare=runs/a,runs/b", "out_dir=r"]) == ["x.py", "compare=[runs/a,runs/b]",
                                                                             "out_dir=r"]
    assert list_override(["compare=[a,b]"]) == ["compare=[a,b]"]


def test_mllmu_summary_and_table_show_intervals(tmp_path: Path, mllmu_dir: Path, tiny_dir: Path):
    common = ["benchmark=mllmu", f"run_root={tmp_path}/runs", f"data_dir={mllmu_dir}", f"model.path={tiny_dir}"]
    finetune(_config("finetune", *common, "max_steps=2"))
    forget(_config("forget", *common, "method=gd", "forget_split=forget_15", "max_steps=2", "batch_size=2"))
    evaluate(_config("eval", *common, "forget_split=forget_15", "eval.max_new_tokens=4", "eval.judge.enabled=false"))
    (run,) = (tmp_path / "runs" / "mllmu" / "tiny").glob("gd_forget_15_*")
    summary = json.loads((run / "eval" / "summary.json").read_text())
    assert set(summary["bootstrap"]["strata"]) == {"forget", "retain", "celebrity"}
    for modality in ("image+text", "text-only"):
        metrics = summary["metrics"][modality]
        for name in ("Forget Class. Acc", "Test Class. Acc", "Retain ROUGE-L", "Celebrity Cloze Acc"):
            low, high = metrics[name]["interval"]
            assert low <= metrics[name]["value"] <= high, (modality, name)
        assert metrics["Forget Fact."]["interval"] is None  # not judged: no value, no interval
    rows = collect(tmp_path / "runs", tmp_path / "results")["mllmu"]
    row = next(r for r in rows if r["method"] == "gd" and r["eval modality"] == "image+text")
    low, high = row["intervals"]["Retain Class. Acc"]
    table = (tmp_path / "results" / "mllmu.md").read_text()
    assert f"{row['Retain Class. Acc']:.2f} ± {(high - low) / 2:.2f}" in table
