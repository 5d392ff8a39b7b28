"""Published numbers beside ours: the shipped published.csv files load and name their sources, broken files are
refused with the file, line and field, the side-by-side table keeps published and ours apart and matches on model
and method, and results_collect.py writes it only when asked (published=true)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from unlearning.benchmarks import PROJECT_ROOT, benchmark_class, benchmark_names
from unlearning.evaluation.published import (
    COLUMNS,
    PublishedError,
    load_published,
    published_path,
    read_published,
    side_by_side,
    write_published,
)
from unlearning.recipes.common import CONFIG_DIR

SHIPPED = [name for name in benchmark_names() if published_path(name).is_file()]
SOURCE = ("Paper X", "Table 2", "p. 7")


def _write(path: Path, rows: list[dict[str, str]], header: tuple[str, ...] = COLUMNS) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(header), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _row(**fields: str) -> dict[str, str]:
    row = dict(zip(COLUMNS, ("m", "ga", "forget5", "ROUGE-L", "50.6", *SOURCE, ""), strict=True))
    return {**row, **fields}


def test_the_four_papers_ship_a_file():
    assert {"fiubench", "mllmu", "safeeraser", "efuf"} <= set(SHIPPED)


@pytest.mark.parametrize("benchmark", SHIPPED)
def test_shipped_files_load_and_every_number_names_its_source(benchmark: str):
    rows = load_published(benchmark)
    models = {OmegaConf.load(path).name for path in (Path(CONFIG_DIR) / "model").glob("*.yaml")}
    methods = {OmegaConf.load(path).name for path in (Path(CONFIG_DIR) / "method").glob("*.yaml")}
    for row in rows:
        assert row.source_paper and row.source_table and row.source_page_or_section, row
        assert row.model in models, f"{benchmark} line {row.line}: {row.model!r} is not a model config's name"
        assert row.method in methods or row.method.startswith(("stage1_", "vanilla_")), row.method


def test_fiubench_file_holds_the_table_2_rows_with_our_column_names():
    rows = load_published("fiubench")
    columns = {column.name for column in benchmark_class("fiubench").report.columns}
    by_key = {(row.method, row.metric): row for row in rows}
    assert {method for method, _ in by_key} == {"stage1_full", "stage1_retain", "ga", "gd", "kl", "po"}
    assert by_key[("ga", "ROUGE-L")].value == 50.6 and by_key[("po", "EM")].text == "6.90"
    assert {"ROUGE-L", "GPT", "Truth", "EM", "MIA", "APE"} <= {row.metric for row in rows} & columns
    # the paper's own definitions keep their own names, never one of our columns
    assert {"ACC (paper)", "Avg MU (paper)", "KS-Test log p (paper)", "Avg FQ (paper)"} <= {r.metric for r in rows}
    assert all("third-party" in row.note for row in rows)  # not checked against the paper: said on every row


@pytest.mark.parametrize(("rows", "header", "message"), [
    ([_row()], tuple(c for c in COLUMNS if c != "note"), "line 1 (header): missing column(s) ['note']"),
    ([_row(), _row(metric="GPT", value="ten")], COLUMNS, "line 3, field 'value': 'ten' is not a finite number"),
    ([_row(value="nan")], COLUMNS, "line 2, field 'value': 'nan'"),
    ([_row(source_table=" ")], COLUMNS, "line 2, field 'source_table': empty"),
    ([_row(source_paper="")], COLUMNS, "line 2, field 'source_paper': empty"),
    ([_row(), _row()], COLUMNS, "line 3: model, method, setting and metric"),
])
def test_broken_files_are_refused_naming_file_line_and_field(tmp_path: Path, rows, header, message):
    path = _write(tmp_path / "published.csv", rows, header)
    with pytest.raises(PublishedError) as error:
        read_published(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_a_package_without_a_file_has_no_published_rows(tmp_path: Path):
    assert published_path("unlearning") == PROJECT_ROOT / "unlearning" / "published.csv"
    assert load_published("unlearning") == []


def _crafted(tmp_path: Path) -> tuple[list, list[dict]]:
    published = read_published(_write(tmp_path / "published.csv", [
        _row(model="m", method="ga", metric="ROUGE-L", value="50.6"),
        _row(model="m", method="ga", metric="Avg FQ (paper)", value="92.9", note="the paper's own normalisation"),
        _row(model="m", method="kl", metric="ROUGE-L", value="90.3"),
    ]))
    ours = [
        {"model": "m", "method": "ga", "run": "forget_ga_1", "forget_split": "forget5", "ROUGE-L": 41.0,
         "Avg FQ": 77.0, "intervals": {"ROUGE-L": [40.0, 42.0]}},
        {"model": "m", "method": "ga", "run": "forget_ga_2", "forget_split": "forget10", "ROUGE-L": 39.0},
        {"model": "other", "method": "ga", "run": "forget_ga_other", "forget_split": "forget5", "ROUGE-L": 1.0},
        {"model": "m", "method": "gd", "run": "forget_gd", "forget_split": "forget5", "ROUGE-L": 2.0},
    ]
    return published, ours


def test_side_by_side_matches_model_and_method_and_keeps_published_apart(tmp_path: Path):
    published, ours = _crafted(tmp_path)
    groups = {(g["model"], g["method"]): g for g in side_by_side(published, ours, ["ROUGE-L", "Avg FQ"])}
    assert set(groups) == {("m", "ga"), ("m", "kl")}  # the gd run has no published row: not shown
    ga = groups[("m", "ga")]
    assert [run["run"] for run in ga["runs"]] == ["forget_ga_1", "forget_ga_2"]  # not the other model's run
    rouge, fq = ga["metrics"]
    assert rouge["published"] == {**rouge["published"], "kind": "published", "value": 50.6, "text": "50.6"}
    assert [(c["kind"], c["run"], c["setting"], c["value"]) for c in rouge["ours"]] == [
        ("ours", "forget_ga_1", "forget5", 41.0), ("ours", "forget_ga_2", "forget10", 39.0)]
    assert rouge["ours"][0]["interval"] == [40.0, 42.0]
    # a metric under the paper's own name is never filled with our column of another definition
    assert not fq["our_column"] and [c["value"] for c in fq["ours"]] == [None, None]
    assert groups[("m", "kl")]["runs"] == [] and groups[("m", "kl")]["metrics"][0]["ours"] == []


def test_written_table_marks_every_cell_and_leaves_our_tables_alone(tmp_path: Path, monkeypatch):
    published, ours = _crafted(tmp_path)
    monkeypatch.setattr("unlearning.evaluation.published.load_published", lambda name: published)
    out = tmp_path / "results"
    (markdown,) = write_published({"fiubench": ours}, out, ["fiubench"])
    assert sorted(p.name for p in out.iterdir()) == [f"fiubench_published.{ext}" for ext in ("csv", "json", "md")]
    cells = list(csv.DictReader((out / "fiubench_published.csv").open()))
    assert {cell["kind"] for cell in cells} == {"published", "ours"}
    assert [c["value"] for c in cells if c["kind"] == "published"] == ["50.6", "92.9", "90.3"]
    assert all(c["source_paper"] == "" for c in cells if c["kind"] == "ours")  # ours never carries a paper
    text = markdown.read_text()
    assert "| ROUGE-L | 50.6 [S1] | 41.00 ± 1 | 39.00 |" in text
    assert "| Avg FQ (paper) | 92.9 [S1, N1] | — | — |" in text
    assert "ours: forget_ga_2 (forget10)" in text and "forget_ga_other" not in text
    assert json.loads((out / "fiubench_published.json").read_text())["groups"][0]["method"] == "ga"


def _aggregate(*overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose("aggregate", overrides=list(overrides))


@pytest.mark.parametrize("published", [True, False])
def test_results_collect_writes_the_published_tables_only_when_asked(tmp_path: Path, published: bool):
    from results_collect import main

    runs, out = tmp_path / "runs", tmp_path / "results"
    runs.mkdir()
    main(_aggregate(f"run_root={runs}", f"out_dir={out}", "report=false", *(["published=true"] if published else [])))
    written = sorted(p.name for p in out.glob("*_published.*")) if out.exists() else []
    assert written == (sorted(f"{name}_published.{ext}" for name in SHIPPED for ext in ("csv", "json", "md"))
                       if published else [])
