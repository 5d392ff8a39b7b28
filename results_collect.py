"""Gather every evaluated run into one table per benchmark (JSON + CSV + Markdown) and a trade-off plot.

    python results_collect.py                             # runs/ -> results/
    python results_collect.py run_root=runs out_dir=results

Rows come from each run's ``run.json`` and ``eval/summary.json`` (read through the summary schema and the fields
the benchmark's table reads: a file that does not fit, e.g. ``[]``, a missing field or a number where an object
belongs, is left out and listed, named with its field, and every table is written for the other runs); the
benchmark package decides the columns and each metric's direction (the Markdown header's arrows). Runs evaluated
at intermediate checkpoints (``eval_everything.bash steps=all``) also give ``<benchmark>_steps.{json,csv,md,png}``:
the metrics against the optimiser step.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from unlearning.benchmarks import Report, benchmark_class
from unlearning.evaluation.schema import read_summary
from unlearning.evaluation.shape import check_shape, rows_by
from unlearning.recipes.common import CONFIG_DIR, setup_logging
from unlearning.runs.console import hydra_app
from unlearning.runs.folders import RUN_FILE, find_runs, read_run
from unlearning.runs.io import (
    CorruptFile,
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
)

log = logging.getLogger("results_collect")


# What the table code may raise on a summary or run.json the schema lets through: the run is left out, named.
_TABLE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)


def _read(run_dir: Path, summary_path: Path, skipped: list[str]) -> tuple[dict, dict] | None:
    """A run's ``run.json`` and a summary read through the schema and the fields its benchmark's table reads, or
    None (the reason, naming the file and the field, added to ``skipped``) when either is corrupt or does not fit."""
    try:
        info = read_run(run_dir)
        run_file = run_dir / RUN_FILE
        if not isinstance(info, dict):
            raise CorruptFile(f"{run_file}: must be an object, got {type(info).__name__}")
        for field in ("benchmark", "model"):
            if not isinstance(info.get(field), str) or not info[field]:
                raise CorruptFile(f"{run_file}: field {field!r} must be a name, got {info.get(field)!r}")
        try:
            cls = benchmark_class(info["benchmark"])
        except (KeyError, ValueError) as error:
            raise CorruptFile(f"{run_file}: field 'benchmark' names no known benchmark ({error})") from error
        return info, read_summary(summary_path, getattr(cls, "summary_fields", ()))
    except CorruptFile as error:
        skipped.append(str(error))
        return None


def _table_rows(info: dict, summary: dict, summary_path: Path, skipped: list[str]) -> list[dict[str, Any]] | None:
    """The benchmark's table rows of one run, or None (the reason, naming the summary, added to ``skipped``) when
    its table code cannot read a field the schema let through: one such run never stops the other tables."""
    try:
        return benchmark_class(info["benchmark"]).table_rows(info, summary)
    except _TABLE_ERRORS as error:
        skipped.append(f"{summary_path}: its table row cannot be made from it or from its run.json "
                       f"({type(error).__name__}: {error})")
        return None


def _report_skipped(skipped: list[str]) -> None:
    if skipped:
        log.warning("left out of the tables (%d):\n  %s", len(skipped), "\n  ".join(skipped))


def collect_rows(run_root: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows per benchmark, one per run with an evaluation summary; runs whose files are corrupt or of the wrong
    shape are left out and listed."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    skipped: list[str] = []
    for run_dir in find_runs(run_root):
        summary_path = run_dir / "eval" / "summary.json"
        if not summary_path.is_file():
            log.info("skipping %s: not evaluated", run_dir)
            continue
        if (read := _read(run_dir, summary_path, skipped)) is None:
            continue
        info, summary = read
        if (table := _table_rows(info, summary, summary_path, skipped)) is None:
            continue
        for row in table:
            rows[info["benchmark"]].append({"model": info["model"], "run": run_dir.name, **row})
    _report_skipped(skipped)
    return rows


def collect_step_rows(run_root: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows per benchmark, one per evaluated intermediate checkpoint (and the final model, as its last step)."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    skipped: list[str] = []
    for run_dir in find_runs(run_root):
        step_summaries = sorted((run_dir / "eval" / "steps").glob("step_*/summary.json"))
        if not step_summaries:
            continue
        final = run_dir / "eval" / "summary.json"
        points = [(int(path.parent.name.removeprefix("step_")), path) for path in step_summaries]
        for step, path in [*points, (None, final)]:
            if step is None and not final.is_file():
                continue
            if (read := _read(run_dir, path, skipped)) is None:
                continue
            info, summary = read
            if step is None:
                steps = (info.get("train") or {}).get("steps") if isinstance(info.get("train"), dict) else None
                if not isinstance(steps, int):
                    skipped.append(f"{run_dir / RUN_FILE}: field 'train.steps' must be the run's step count, "
                                   f"got {steps!r} (its final summary {path} is left out of the steps table)")
                    continue
                step = steps
            if (table := _table_rows(info, summary, path, skipped)) is None:
                continue
            for row in table:
                rows[info["benchmark"]].append({"model": info["model"], "run": run_dir.name, "step": step, **row})
    _report_skipped(skipped)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-2:
            return f"{value:.2e}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]], columns: list[str], titles: list[str] | None = None) -> str:
    lines = ["| " + " | ".join(titles or columns) + " |", "|" + "---|" * len(columns)]
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


def step_plot(rows: list[dict[str, Any]], title: str, report: Report) -> bytes:
    """Each trade-off metric against the optimiser step, one line per run (and evaluated modality)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(report.tradeoff)
    figure, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), dpi=120, squeeze=False)
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        lines[f"{row['run']} {row.get('label') or ''}".strip()].append(row)
    for axis, key in zip(axes[0], keys, strict=True):
        for name, points in sorted(lines.items()):
            points = sorted((p["step"], p[key]) for p in points if p.get(key) is not None)
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", label=name)
        if key == report.tradeoff[1] and report.log_y:
            axis.set_yscale("log")
        axis.set_xlabel("optimiser step")
        axis.set_ylabel(f"{key} ({report.direction(key)})")
        axis.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=6)
    figure.suptitle(f"{title}: metrics per checkpoint")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def write_table(out_dir: Path, stem: str, title: str, rows: list[dict[str, Any]], report: Report,
                extra: tuple[str, ...] = ()) -> str:
    """``<stem>.json`` (rows, columns, directions), ``.csv`` and ``.md``; returns the Markdown table."""
    columns = ["model", *extra, *(column.name for column in report.columns)]
    titles = ["model", *extra, *(column.title for column in report.columns)]
    atomic_write_json(out_dir / f"{stem}.json", {
        "benchmark": title, "columns": columns,
        "better": {column.name: column.better for column in report.columns if column.better},
        "rows": [{column: row.get(column) for column in columns} for row in rows],
    })
    atomic_write_csv(out_dir / f"{stem}.csv", rows, columns)
    table = markdown_table(rows, columns, titles)
    atomic_write_text(out_dir / f"{stem}.md", f"# {title}\n\n{table}")
    return table


def shape_failures(rows_by_benchmark: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Check each benchmark's table against the shape its built-in demo must have (``demo_shape``); prints each
    expectation and returns those that do not hold."""
    failures = []
    for benchmark, rows in sorted(rows_by_benchmark.items()):
        cls = benchmark_class(benchmark)
        expectations = getattr(cls, "demo_shape", ())
        if not expectations:
            continue
        print(f"\n{benchmark}: the shape its demo's table must have on any machine")
        for what, holds in check_shape(rows_by(rows, *cls.demo_rows), expectations):
            print(f"  {'ok  ' if holds else 'FAIL'} {what}")
            if not holds:
                failures.append(f"{benchmark}: {what}")
    return failures


def collect(run_root: Path, out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    rows_by_benchmark = collect_rows(run_root)
    if not rows_by_benchmark:
        log.warning("no evaluated runs under %s", run_root)
    for benchmark, rows in sorted(rows_by_benchmark.items()):
        cls = benchmark_class(benchmark)
        report: Report = cls.report
        cls.finalize_rows(rows)
        table = write_table(out_dir, benchmark, benchmark, rows, report)
        x_key, y_key = report.tradeoff
        if any(row.get(y_key) is not None for row in rows):
            plot = tradeoff_plot(rows, benchmark, x_key, y_key, report.log_y,
                                 (report.direction(x_key), report.direction(y_key)))
            atomic_write_bytes(out_dir / f"{benchmark}_tradeoff.png", plot)
        print(f"\n{benchmark} ({len(rows)} runs; {out_dir}/{benchmark}.json, .csv, .md, _tradeoff.png)\n\n{table}")
    for benchmark, rows in sorted(collect_step_rows(run_root).items()):
        cls = benchmark_class(benchmark)
        for step in sorted({row["step"] for row in rows}):
            cls.finalize_rows([row for row in rows if row["step"] == step])
        table = write_table(out_dir, f"{benchmark}_steps", f"{benchmark} per checkpoint", rows, cls.report, ("step",))
        atomic_write_bytes(out_dir / f"{benchmark}_steps.png", step_plot(rows, benchmark, cls.report))
        print(f"\n{benchmark} per checkpoint ({out_dir}/{benchmark}_steps.json, .csv, .md, .png)\n\n{table}")
    return rows_by_benchmark


@hydra_app(version_base=None, config_path=CONFIG_DIR, config_name="aggregate")
def main(cfg: DictConfig) -> None:
    setup_logging()
    rows = collect(Path(cfg.run_root), Path(cfg.out_dir))
    if cfg.check_shape:
        failures = shape_failures(rows)
        if failures:
            raise SystemExit("the table does not have the shape the demo must have on any machine:\n  "
                             + "\n  ".join(failures))


if __name__ == "__main__":
    main()
