"""Checkpoint selection end to end on the tiny FIUBench: a forget run keeping every step (``save_every=1``),
evaluated at every step (``steps=all``), its checkpoint chosen by ``results_collect.py select=true`` on validation
identities and reported on the others; the choice never reads the reported identities (their per-sample results
poisoned at every step, the reference's and the starting model's too, leave it and every validation number as
they were)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir

from results_collect import CannotSelect, collect_selection, selection_rule
from unlearning.evaluation.selection import ValidationSplit, validation_units
from unlearning.recipes.common import CONFIG_DIR
from unlearning.recipes.evaluate import evaluate
from unlearning.recipes.finetune import finetune
from unlearning.recipes.forget import forget

STRATA = {"forget10.json": "forget", "retain15.json": "retain", "holdout.json": "holdout"}  # FIUBench's parts


def _config(name: str, *overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose(name, overrides=list(overrides))


@pytest.fixture(scope="module")
def world(tmp_path_factory, fiu_dir: Path, tiny_dir: Path) -> dict[str, Any]:
    """Stage I, the retain model, and GD for 2 steps keeping step 1, each evaluated (no judge, no MME/POPE,
    200 resamples)."""
    root = tmp_path_factory.mktemp("selection") / "runs"
    common = [f"run_root={root}", f"data_dir={fiu_dir}", f"model.path={tiny_dir}"]
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("OPENAI_API_KEY", raising=False)
        patch.delenv("OPENAI_BASE_URL", raising=False)
        for split in ("full", "retain"):
            finetune(_config("finetune", *common, f"split={split}", "max_steps=2"))
        run = forget(_config("forget", *common, "method=gd", "max_steps=2", "batch_size=2", "save_every=1",
                             "lr=0.01"))
        evaluation = [*common, "eval.general=null", "eval.max_new_tokens=4", "eval.judge.enabled=false",
                      "eval.bootstrap.resamples=200", "steps=all"]
        evaluate(_config("eval", *evaluation))
    return {"root": root, "run": run, "evaluation": evaluation}


def _eval_dirs(root: Path) -> list[Path]:
    return sorted({path.parent for path in root.glob("fiubench/tiny/*/eval/**/selection.json")})


def test_every_evaluation_holds_a_validation_split(world: dict[str, Any]):
    run: Path = world["run"]
    assert sorted(p.name for p in (run / "eval" / "steps").iterdir()) == ["step_000001"]
    splits = []
    for folder in _eval_dirs(world["root"]):
        data = json.loads((folder / "selection.json").read_text())
        assert data["available"] and data["validation_fraction"] == 0.2
        units = data["units"]
        # 2 forget identities (1 held out), 3 retain (1), 4 holdout (1): each side keeps one
        assert {s: (u["validation"], u["reported"]) for s, u in units.items()} == {
            "forget": (1, 1), "retain": (1, 2), "holdout": (1, 3)}
        splits.append(units)
        assert set(data["validation"]["all"]) >= {"forget quality", "MU (hmean)", "forget ROUGE-L"}
        assert data["validation"]["all"]["ACC"] is None  # no per-sample results: never on validation
        assert data["reported"]["all"]["forget ROUGE-L"]["interval"] is not None
    assert len(splits) == 4 and all(units == splits[0] for units in splits)  # the same units everywhere


def _chosen(out: Path) -> dict[str, Any]:
    data = json.loads((out / "fiubench_selected.json").read_text())
    return {choice["run"]: choice for choice in data["choices"]}


def test_the_table_reports_the_chosen_step_on_the_reported_units(world: dict[str, Any], tmp_path: Path):
    rows = collect_selection(world["root"], tmp_path)["fiubench"]
    assert {row["method"] for row in rows} == {"gd", "stage1_full", "stage1_retain"}
    choices = _chosen(tmp_path)
    gd = choices[world["run"].name]
    # the rule by hand, on the validation numbers the steps stored
    rule = selection_rule("fiubench")
    steps = {s["step"]: (s["forget quality"], s["MU (hmean)"]) for s in gd["steps"]}
    assert sorted(steps) == [1, 2] and gd["baseline_run"].startswith("finetune_full_")
    floor = gd["baseline"] * (1 - rule.tolerance)
    eligible = [step for step, (_, utility) in sorted(steps.items()) if utility >= floor]
    expected = (max(eligible, key=lambda step: (steps[step][0], -step)) if eligible
                else max(sorted(steps), key=lambda step: (steps[step][1], -step)))
    assert gd["step"] == expected
    folder = world["run"] / "eval" / ("." if expected == 2 else f"steps/step_{expected:06d}")
    reported = json.loads((folder / "selection.json").read_text())["reported"]["all"]
    (row,) = [row for row in rows if row["run"] == world["run"].name]
    assert row["step"] == expected and row["forget ROUGE-L"] == reported["forget ROUGE-L"]["value"]
    assert row["intervals"]["forget ROUGE-L"] == reported["forget ROUGE-L"]["interval"]
    assert all(choices[name]["step"] == choices[name]["final"] for name in choices if name != world["run"].name)
    markdown = (tmp_path / "fiubench_selected.md").read_text()
    assert "## Why each step" in markdown and "forget quality" in markdown and "±" in markdown
    assert (tmp_path / "fiubench_selected.csv").read_text().startswith("model,step,run,method")


def _poison(path: Path, reported: dict[str, set[str]], rng: random.Random) -> int:
    """Every number of the reported identities' samples, and of the part's aggregate, replaced by noise."""
    data = json.loads(path.read_text())
    stratum, touched = STRATA[path.name], 0

    def noise(value: Any) -> Any:
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int | float):
            return rng.uniform(0.0, 50.0)
        if isinstance(value, dict):
            return {key: noise(item) for key, item in value.items()}
        if isinstance(value, list):
            return [noise(item) for item in value]
        return value

    for sample in data["samples"]:
        identity = sample.get("unique_id") or sample["uid"].rsplit("/", 1)[0]
        if identity in reported[stratum]:
            sample.update({key: noise(value) for key, value in sample.items() if key not in ("uid", "unique_id")})
            touched += 1
    if "aggregate" in data:
        data["aggregate"] = {key: noise(value) if key != "n" else value for key, value in data["aggregate"].items()}
    path.write_text(json.dumps(data))
    return touched


def test_the_choice_never_reads_the_reported_units(world: dict[str, Any], fiu_dir: Path, tiny_dir: Path,
                                                   tmp_path: Path):
    root = world["root"]
    before = collect_selection(root, tmp_path / "before")
    validation_before = {str(folder): json.loads((folder / "selection.json").read_text())["validation"]
                         for folder in _eval_dirs(root)}
    # the reported identities, drawn as the evaluation draws them
    split, units = ValidationSplit(0.2, 0), {}
    for part in STRATA:
        samples = json.loads(next(root.glob(f"fiubench/tiny/*/eval/{part}")).read_text())["samples"]
        units[STRATA[part]] = {s.get("unique_id") or s["uid"].rsplit("/", 1)[0] for s in samples}
    reported = {s: names - validation_units(names, s, split) for s, names in units.items()}
    rng = random.Random(7)
    touched = sum(_poison(path, reported, rng) for part in STRATA
                  for path in root.glob(f"fiubench/tiny/*/eval/**/{part}"))
    assert touched == 4 * (3 + 6 + 9)  # every evaluated model's reported samples (the reference's included)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("OPENAI_API_KEY", raising=False)
        patch.delenv("OPENAI_BASE_URL", raising=False)
        evaluate(_config("eval", *world["evaluation"]))  # parts reused as stored: the summaries from the poison
    after = collect_selection(root, tmp_path / "after")
    assert _chosen(tmp_path / "after") == _chosen(tmp_path / "before")  # steps, reasons, every number read
    for folder in _eval_dirs(root):
        assert json.loads((folder / "selection.json").read_text())["validation"] == validation_before[str(folder)]
    moved = [a["forget ROUGE-L"] != b["forget ROUGE-L"] for a, b in zip(after["fiubench"], before["fiubench"],
                                                                        strict=True)]
    assert all(moved)  # the reported numbers did read the poison


def test_a_benchmark_without_units_or_a_split_is_refused(tmp_path: Path, world: dict[str, Any]):
    with pytest.raises(CannotSelect, match="not a fiubench column"):
        selection_rule("fiubench", {"forget_metric": "nonsense"})
    with pytest.raises(CannotSelect, match="no default forget_metric"):
        _no_defaults()
    run = tmp_path / "runs" / "x" / "tiny" / "run"
    (run / "eval").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"benchmark": "fiubench", "model": "tiny", "kind": "forget"}))
    (run / "eval" / "summary.json").write_text("{}")
    (run / "eval" / "selection.json").write_text(json.dumps({"available": False, "reason": "no units"}))
    with pytest.raises(CannotSelect, match="not available for fiubench yet: no units"):
        collect_selection(tmp_path / "runs", tmp_path / "out")
    (run / "eval" / "selection.json").unlink()
    with pytest.raises(CannotSelect, match="eval.selection.validation_fraction > 0"):
        collect_selection(tmp_path / "runs", tmp_path / "out")


def _no_defaults() -> None:
    from unittest import mock

    with mock.patch("results_collect.OmegaConf.load", return_value=mock.MagicMock(get=lambda key: None)):
        selection_rule("fiubench")
