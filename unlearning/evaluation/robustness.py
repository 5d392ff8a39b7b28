"""The robustness table of each benchmark: every attacked run's forget metrics under each attack, beside its
unattacked ones (``results/<benchmark>_robustness.{json,csv,md}``).

Rows come from ``<run>/eval/summary.json`` (attack ``none``) and ``<run>/eval/attacks/<name>/summary.json``, through
the benchmark's own ``table_rows``; the columns are the benchmark's ``robustness.columns``
(``config/benchmark/<name>.yaml``), else every table column with a direction. A run's rows follow each other, the
unattacked first; the reference model's rows are the baseline (the same attack on a model that never learnt the
forget set, or one that was never made to forget it).

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


def _order(attack: str) -> int:
    return -1 if attack == UNATTACKED else (ATTACK_NAMES.index(attack) if attack in ATTACK_NAMES else len(ATTACK_NAMES))


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
                out[info["benchmark"]].append({"model": info["model"], "run": run_dir.name, "attack": attack, **row})
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


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
        stem = out_dir / f"{benchmark}_robustness"
        atomic_write_json(stem.with_suffix(".json"), {"columns": columns, "rows": rows})
        atomic_write_csv(stem.with_suffix(".csv"), rows, columns)
        lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
        lines += ["| " + " | ".join(_cell(row.get(column)) for column in columns) + " |" for row in rows]
        atomic_write_text(stem.with_suffix(".md"), f"# {benchmark}: forget metrics under attack\n\n"
                                                   + "\n".join(lines) + "\n")
        written.append(stem.with_suffix(".md"))
        print(f"\n{benchmark} robustness ({stem}.json, .csv, .md)\n\n" + "\n".join(lines))
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    write_robustness(Path(sys.argv[1] if len(sys.argv) > 1 else "runs"),
                     Path(sys.argv[2] if len(sys.argv) > 2 else "results"))
