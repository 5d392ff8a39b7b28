"""The summary schema: typed metrics from a table row, and a file that does not fit named with its field."""

from __future__ import annotations

import copy
import json
import logging
import math
from pathlib import Path

import pytest

from unlearning.benchmarks import Column, Report
from unlearning.evaluation.schema import SCHEMA_VERSION, SchemaError, read_summary, table_metrics, validate_summary

REPORT = Report(columns=(Column("run"), Column("method"), Column("acc", "higher", n=lambda s, r: s["n"]),
                         Column("gpt", "higher", judge="llm"), Column("asr", "lower", judge="judged_by"),
                         Column("length"), Column("across", "higher")),
                tradeoff=("acc", "gpt"))


def good() -> dict:
    return {"schema_version": SCHEMA_VERSION, "benchmark": "x",
            "metrics": {"all": {"acc": {"value": 0.5, "direction": "higher", "n": 4, "judge": "none",
                                        "interval": None, "note": None}}},
            "provenance": {"git": None, "date": "2026-12-05", "versions": {}, "lock_differences": {},
                           "numerics": {}, "compat": "default", "compat_switches": [], "data": {}, "weights": None}}


def test_metrics_from_a_row():
    row = {"method": "ga", "acc": 50.0, "gpt": "61.0 (4/20)", "asr": 10.0, "judge": "gpt-4o", "length": math.nan}
    metrics = table_metrics(REPORT, [row], {"n": 8})["all"]
    assert metrics["acc"] == {"value": 50.0, "direction": "higher", "n": 8, "judge": "none", "interval": None,
                              "note": None}
    assert metrics["gpt"]["value"] is None and metrics["gpt"]["note"] == "incomplete judge: 61.0 (4/20)"
    assert metrics["gpt"]["judge"] == "llm" and metrics["asr"]["judge"] == "llm"
    assert "length" not in metrics and "across" not in metrics and "method" not in metrics  # names, not metrics
    offline = table_metrics(REPORT, [{**row, "judge": "offline"}], {"n": 8})["all"]
    assert offline["asr"]["judge"] == "offline"
    keyed = Report(columns=REPORT.columns, tradeoff=("acc", "gpt"), row_key="method")
    assert set(table_metrics(keyed, [row, {**row, "method": "gd"}], {"n": 8})) == {"ga", "gd"}
    validate_summary({**good(), "metrics": table_metrics(REPORT, [row], {"n": 8})}, Path("s.json"))


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d.pop("schema_version"), "'schema_version' is missing"),
    (lambda d: d.update(schema_version=99), "'schema_version' is 99"),
    (lambda d: d["metrics"]["all"]["acc"].update(direction="up"), "'metrics.all.acc.direction'"),
    (lambda d: d["metrics"]["all"]["acc"].update(n=-1), "'metrics.all.acc.n'"),
    (lambda d: d["metrics"]["all"]["acc"].update(judge="gpt"), "'metrics.all.acc.judge'"),
    (lambda d: d["metrics"]["all"]["acc"].update(value="high"), "'metrics.all.acc.value'"),
    (lambda d: d["metrics"]["all"]["acc"].pop("interval"), "'metrics.all.acc.interval' is missing"),
    (lambda d: d["provenance"].pop("compat_switches"), "'provenance.compat_switches' is missing"),
    (lambda d: d.update(metrics={}), "'metrics' must map"),
])
def test_a_summary_that_does_not_fit_names_its_file_and_field(tmp_path: Path, change, field: str):
    data = copy.deepcopy(good())
    change(data)
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SchemaError, match=f"{path}: field {field}"):
        read_summary(path)


def test_results_collect_leaves_out_a_summary_that_does_not_fit(tmp_path: Path, caplog):
    from results_collect import collect_rows

    run = tmp_path / "runs" / "fiubench" / "tiny" / "ga_x"
    (run / "eval").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"kind": "forget", "benchmark": "fiubench", "model": "tiny"}))
    (run / "eval" / "summary.json").write_text(json.dumps({"benchmark": "fiubench"}))  # before the schema
    with caplog.at_level(logging.WARNING):
        assert collect_rows(tmp_path / "runs") == {}
    assert "summary.json: field 'schema_version' is missing" in caplog.text
