"""Gather every evaluated run into one table per benchmark (CSV + Markdown) and a trade-off plot.

    python results_collect.py                             # runs/ -> results/
    python results_collect.py run_root=runs out_dir=results

Rows come from each run's ``run.json`` and ``eval/summary.json``; the benchmark package decides the columns.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from unlearning.benchmarks import benchmark_class
from unlearning.io import atomic_write_bytes, atomic_write_csv, atomic_write_text, read_json
from unlearning.recipes.common import CONFIG_DIR, setup_logging
from unlearning.runs import find_runs, read_run

log = logging.getLogger("results_collect")


def collect_rows(run_root: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows per benchmark, one per run with an evaluation summary."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run_dir in find_runs(run_root):
        summary_path = run_dir / "eval" / "summary.json"
        if not summary_path.is_file():
            log.info("skipping %s: not evaluated", run_dir)
            continue
        info = read_run(run_dir)
        for row in benchmark_class(info["benchmark"]).table_rows(info, read_json(summary_path)):
            rows[info["benchmark"]].append({"model": info["model"], "run": run_dir.name, **row})
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-2:
            return f"{value:.2e}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def tradeoff_plot(rows: list[dict[str, Any]], title: str, x_key: str, y_key: str, log_y: bool = True,
                  directions: tuple[str, str] = ("higher is better", "higher is better")) -> bytes:
    """Forgetting (y) against utility (x), one labelled point per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4.5), dpi=120)
    for row in rows:
        quality, utility = row.get(y_key), row.get(x_key)
        if quality is None or utility is None:
            continue
        if log_y:
            quality = max(quality, 1e-300)
        axes.scatter(utility, quality, s=40)
        axes.annotate(row.get("label") or row["method"], (utility, quality), textcoords="offset points",
                      xytext=(5, 4), fontsize=7)
    if log_y:
        axes.set_yscale("log")
    axes.set_xlabel(f"{x_key} ({directions[0]})")
    axes.set_ylabel(f"{y_key} ({directions[1]})")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def collect(run_root: Path, out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    rows_by_benchmark = collect_rows(run_root)
    if not rows_by_benchmark:
        log.warning("no evaluated runs under %s", run_root)
    for benchmark, rows in sorted(rows_by_benchmark.items()):
        cls = benchmark_class(benchmark)
        cls.finalize_rows(rows)
        columns = ["model", *cls.table_columns]
        atomic_write_csv(out_dir / f"{benchmark}.csv", rows, columns)
        table = markdown_table(rows, columns)
        atomic_write_text(out_dir / f"{benchmark}.md", f"# {benchmark}\n\n{table}")
        x_key, y_key = cls.tradeoff_axes
        if any(row.get(y_key) is not None for row in rows):
            plot = tradeoff_plot(rows, benchmark, x_key, y_key, getattr(cls, "tradeoff_log_y", True),
                                 getattr(cls, "tradeoff_directions", ("higher is better", "higher is better")))
            atomic_write_bytes(out_dir / f"{benchmark}_tradeoff.png", plot)
        print(f"\n{benchmark} ({len(rows)} runs; {out_dir}/{benchmark}.csv, .md, _tradeoff.png)\n\n{table}")
    return rows_by_benchmark


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="aggregate")
def main(cfg: DictConfig) -> None:
    setup_logging()
    collect(Path(cfg.run_root), Path(cfg.out_dir))


if __name__ == "__main__":
    main()
