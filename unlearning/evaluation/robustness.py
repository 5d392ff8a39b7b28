"""The robustness table of each benchmark: every attacked run's forget metrics under each attack, beside its
unattacked ones (``results/<benchmark>_robustness.{json,csv,md}``).

Rows come from ``<run>/eval/summary.json`` (attack ``none``) and ``<run>/eval/attacks/<name>/summary.json``, through
the benchmark's own ``table_rows``; the columns are the benchmark's ``robustness.columns``
(``config/benchmark/<name>.yaml``), else every table column with a direction. A run's rows follow each other, the
unattacked first; the reference model's rows are the baseline (the same attack on a model that never learnt the
forget set, or one that was never made to forget it).

Relearning budgets (``relearn_<steps>``) follow the other attacks in the order of their steps; with any of them a
second table, ``results/<benchmark>_relearn.{json,csv,md}``, shows the relearning curve: per run and metric, the
value after each budget as columns (0 steps: the model before relearning, on the same evaluation half).

    python -m unlearning.evaluation.robustness [run_root] [out_dir]     # runs results
"""

from __future__ import annotations

import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from unlearning.benchmarks import PROJECT_ROOT, benchmark_class
from unlearning.evaluation.attacks import ATTACK_NAMES, ATTACKS_DIR
from unlearning.evaluation.attacks.relearn import budget_of
from unlearning.evaluation.cells import number, row_intervals, with_bounds, with_spread
from unlearning.evaluation.schema import SchemaError, read_summary
from unlearning.runs.folders import find_runs, read_run
from unlearning.runs.io import CorruptFile, atomic_write_csv, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)
UNATTACKED = "none"


def robustness_columns(benchmark: str, report: Any, config_dir: Path = PROJECT_ROOT / "config") -> list[str]:
    """The metrics the benchmark's robustness table shows."""
    path = config_dir / "benchmark" / f"{benchmark}.yaml"
    named = OmegaConf.load(path).get("robustness", {}).get("columns") if path.is_file() else None
    known = [column.name for column in report.columns]
    if named:
        unknown = [name for name in named if name not in known]
        if unknown:
            raise ValueError(f"{path}: robustness.columns {unknown} are not columns of the table ({known})")
        return list(named)
    return [column.name for column in report.columns if column.better]


def _order(attack: str) -> tuple[int, int]:
    """Unattacked first, then the attacks as ``ATTACK_NAMES`` lists them, then relearning budgets by their steps."""
    if attack == UNATTACKED:
        return -1, 0
    if attack in ATTACK_NAMES:
        return ATTACK_NAMES.index(attack), 0
    steps = budget_of(attack)
    return len(ATTACK_NAMES), -1 if steps is None else steps


def collect_robustness(run_root: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows per benchmark: each run evaluated under some attack, one row per (table row, attack)."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run_dir in find_runs(run_root):
        attacked = sorted((run_dir / "eval" / ATTACKS_DIR).glob("*/summary.json"))
        if not attacked:
            continue
        try:
            info = read_run(run_dir)
            cls = benchmark_class(info["benchmark"])
        except (CorruptFile, KeyError, ValueError) as error:
            log.warning("robustness: skipping %s: %s", run_dir, error)
            continue
        unattacked = run_dir / "eval" / "summary.json"
        found = [(UNATTACKED, unattacked)] if unattacked.is_file() else []
        for attack, path in sorted([*found, *((p.parent.name, p) for p in attacked)], key=lambda x: _order(x[0])):
            try:
                summary = read_summary(path, getattr(cls, "summary_fields", ()))
                rows = cls.table_rows(info, summary)
            except (CorruptFile, SchemaError, KeyError, TypeError, ValueError) as error:
                log.warning("robustness: skipping %s: %s", path, error)
                continue
            for row in rows:
                unit = str(row.get(cls.report.row_key)) if cls.report.row_key else "all"
                out[info["benchmark"]].append({"model": info["model"], "run": run_dir.name, "attack": attack, **row,
                                               "intervals": row_intervals(summary, unit)})
    return out


def _write_table(stem: Path, heading: str, rows: list[dict[str, Any]], columns: list[str], titles: list[str],
                 values: list[str], extra: dict[str, Any] | None = None, section: str = "") -> Path:
    """``stem.{json,csv,md}``: the rows (with their intervals) as JSON, the CSV with each value column's interval
    ends, the Markdown with ``value ± half-width`` (and ``section`` after the table); prints the Markdown."""
    atomic_write_json(stem.with_suffix(".json"), {"columns": columns, **(extra or {}), "rows": rows})
    bounds = [f"{column} {end}" for column in values for end in ("low", "high")
              if any(column in (row.get("intervals") or {}) for row in rows)]
    atomic_write_csv(stem.with_suffix(".csv"), [with_bounds(row) for row in rows], columns + bounds)
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    lines += ["| " + " | ".join(with_spread(row.get(column), (row.get("intervals") or {}).get(column))
                                for column in columns) + " |" for row in rows]
    note = "Cells: value ± half-width of its bootstrap confidence interval, where the evaluation computed one."
    atomic_write_text(stem.with_suffix(".md"), f"# {heading}\n\n{note}\n\n" + "\n".join(lines) + "\n" + section)
    print(f"\n{heading} ({stem}.json, .csv, .md)\n\n" + "\n".join(lines) + "\n" + section)
    return stem.with_suffix(".md")


def write_robustness(run_root: Path, out_dir: Path) -> list[Path]:
    """Write each benchmark's robustness table; returns the Markdown files written."""
    written = []
    for benchmark, rows in sorted(collect_robustness(run_root).items()):
        cls = benchmark_class(benchmark)
        for attack in {row["attack"] for row in rows}:  # metrics compared across runs: within one attack's rows
            cls.finalize_rows([row for row in rows if row["attack"] == attack])
        key = [cls.report.row_key] if cls.report.row_key else []
        metrics = robustness_columns(benchmark, cls.report)
        columns = ["run", "method", *key, "attack", *metrics]
        titles = ["run", "method", *key, "attack", *(cls.report.column(name).title for name in metrics)]
        section = (f"\n## {cls.report.column(metrics[0]).title} under each attack\n\nOne row per run, one column "
                   f"per attack (the first of robustness.columns).\n\n{attack_pivot(rows, metrics[0], key)}\n")
        written.append(_write_table(out_dir / f"{benchmark}_robustness", f"{benchmark}: forget metrics under attack",
                                    rows, columns, titles, metrics, section=section))
        curve = write_relearning_curve(benchmark, rows, key, metrics, cls.report, out_dir)
        written += [curve] if curve else []
    return written


def attack_pivot(rows: list[dict[str, Any]], metric: str, key: list[str]) -> str:
    """One metric as a Markdown table: a row per run (and row key), a column per attack in the table's order, each
    cell ``value ± half-width``; the comparison the robustness table holds one line per attack."""
    attacks = sorted({row["attack"] for row in rows}, key=_order)
    grid: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        entry = grid.setdefault((row["run"], *(row.get(k) for k in key)),
                                {"run": row["run"], "method": row.get("method"), **{k: row.get(k) for k in key}})
        entry[row["attack"]] = with_spread(row.get(metric), (row.get("intervals") or {}).get(metric))
    head = ["run", "method", *key, *attacks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(number(entry.get(column, "—")) for column in head) + " |" for entry in grid.values()]
    return "\n".join(lines)


def relearning_curve(rows: list[dict[str, Any]], key: list[str], metrics: list[str]
                     ) -> tuple[list[int], list[dict[str, Any]]]:
    """The budgets and, per run (and row key) and metric, the metric after each budget (``steps_<n>``)."""
    budgets = sorted({steps for row in rows if (steps := budget_of(row["attack"])) is not None})
    curve: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        steps = budget_of(row["attack"])
        if steps is None:
            continue
        for metric in metrics:
            ident = (row["run"], *(row.get(k) for k in key), metric)
            entry = curve.setdefault(ident, {"run": row["run"], "method": row.get("method"),
                                             **{k: row.get(k) for k in key}, "metric": metric})
            entry[f"steps_{steps}"] = row.get(metric)
            if (interval := (row.get("intervals") or {}).get(metric)) is not None:
                entry.setdefault("intervals", {})[f"steps_{steps}"] = interval
    return budgets, list(curve.values())


def write_relearning_curve(benchmark: str, rows: list[dict[str, Any]], key: list[str], metrics: list[str],
                           report: Any, out_dir: Path) -> Path | None:
    """``<benchmark>_relearn.{json,csv,md}`` when some run was relearned: the curve as columns, one per budget."""
    budgets, curve = relearning_curve(rows, key, metrics)
    if not budgets:
        return None
    columns = ["run", "method", *key, "metric", *(f"steps_{steps}" for steps in budgets)]
    titles = ["run", "method", *key, "metric", *(f"{steps} steps" for steps in budgets)]
    for entry in curve:
        entry["metric"] = report.column(entry["metric"]).title
    return _write_table(out_dir / f"{benchmark}_relearn", f"{benchmark}: forget metrics on the evaluation half "
                        "after relearning the other half", curve, columns, titles, columns[-len(budgets):],
                        {"budgets": budgets})


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    write_robustness(Path(sys.argv[1] if len(sys.argv) > 1 else "runs"),
                     Path(sys.argv[2] if len(sys.argv) > 2 else "results"))
