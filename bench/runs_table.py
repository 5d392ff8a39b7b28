"""Wall-clock and peak memory of every run under a run folder, per benchmark and method, as a Markdown table.

    python bench/runs_table.py runs          # after make demo / demo-mllmu / demo-safeeraser / demo-efuf

Training figures come from each run's ``run.json`` (its loop's seconds and its process's peak memory: every
launcher command is one process per run), evaluation figures from ``eval/summary.json`` (``cost``: seconds of
that run's evaluation; the peak memory is the evaluating process's so far, which evaluated several runs in turn).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearning.runs.folders import find_runs


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _cell(value: Any, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def rows(root: Path) -> list[dict[str, Any]]:
    out = []
    for run_dir in find_runs(root):
        run, summary = _read(run_dir / "run.json"), _read(run_dir / "eval" / "summary.json")
        train, cost = run.get("train") or {}, summary.get("cost") or {}
        out.append({
            "benchmark": run.get("benchmark"), "model": run.get("model"),
            "what": (run.get("method") or f"{run.get('kind')} {run.get('split', '')}".strip())
            + (" (text-only forget data)" if run.get("forget_modality") == "unimodal" else ""),
            "train s": train.get("seconds"), "train steps": train.get("steps"),
            "train peak MB": train.get("peak_rss_mb"),
            "eval s": cost.get("seconds"), "eval peak MB": cost.get("peak_rss_mb"),
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_root", type=Path)
    args = parser.parse_args()
    print("| benchmark | model | run | train (s) | steps | train peak RSS (MB) | eval (s) | eval peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in sorted(rows(args.run_root), key=lambda r: (str(r["benchmark"]), str(r["model"]), str(r["what"]))):
        print(f"| {row['benchmark']} | {row['model']} | {row['what']} | {_cell(row['train s'])} | "
              f"{row['train steps'] or ''} | {_cell(row['train peak MB'], 0)} | {_cell(row['eval s'])} | "
              f"{_cell(row['eval peak MB'], 0)} |")


if __name__ == "__main__":
    main()
