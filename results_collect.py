"""Gather every evaluated run into one table per benchmark (JSON + CSV + Markdown) and a trade-off plot.

    python results_collect.py                             # runs/ -> results/
    python results_collect.py run_root=runs out_dir=results
    python results_collect.py compare=<run A>,<run B>      # paired differences per metric, with intervals and p
    python results_collect.py select=true                  # also: each run's checkpoint chosen on validation units
    python results_collect.py report=false                 # without the HTML report (results/index.html)
    python results_collect.py published=true               # also the papers' numbers beside ours (docs/published.md)

Each cell of the Markdown tables shows the value ± the half-width of its bootstrap confidence interval (the
summary's ``metrics.<row>.<column>.interval``; the CSV has the interval's ends). Runs that differ only in their
``seed`` (their ``identity.json`` otherwise equal; Hydra multirun ``seed=0,1,2``) become one Markdown row of
mean ± standard deviation over the seeds; the individual runs stay in the JSON, the CSV and a second Markdown table.

Rows come from each run's ``run.json`` and ``eval/summary.json`` (read through the summary schema and the fields
the benchmark's table reads: a file that does not fit, e.g. ``[]``, a missing field or a number where an object
belongs, is left out and listed, named with its field, and every table is written for the other runs); the
benchmark package decides the columns and each metric's direction (the Markdown header's arrows). Runs evaluated
at intermediate checkpoints (``eval_everything.bash steps=all``) also give ``<benchmark>_steps.{json,csv,md,png}``:
the metrics against the optimiser step.

A smoke check's evaluation (``eval.limit=N``, in ``<run>/eval/limit_<N>/``) is listed after the full ones, its run
labelled ``<run> (first N)`` and its JSON row holding ``limit``; its rows are finalised among themselves (never in a
normalisation with full evaluations) and stay out of seed groups, the trade-off plot, the published comparison and
the shape check: a full evaluation's numbers are never replaced or moved by a limited one.

``select=true`` also writes ``<benchmark>_selected.{json,csv,md}``: per run, the checkpoint a rule chooses from its
evaluated steps' numbers on the validation units alone, and that checkpoint's numbers on the other (reported)
units, with the reason (``unlearning.evaluation.selection``; docs/selection.md).
"""

from __future__ import annotations

import io
import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from unlearning.benchmarks import Report, benchmark_class
from unlearning.evaluation.cells import number, row_intervals, with_bounds, with_spread
from unlearning.evaluation.intervals import paired_difference, read_replicates
from unlearning.evaluation.robustness import write_robustness
from unlearning.evaluation.schema import read_summary
from unlearning.evaluation.selection import Choice, SelectionRule, StepValidation, choose
from unlearning.evaluation.shape import check_shape, rows_by
from unlearning.recipes.common import CONFIG_DIR, setup_logging
from unlearning.runs.console import hydra_app
from unlearning.runs.folders import IDENTITY_FILE, RUN_FILE, find_runs, read_run
from unlearning.runs.io import (
    CorruptFile,
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    read_json,
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
        for benchmark, row in _summary_rows(run_dir, summary_path, skipped):
            rows[benchmark].append(row)
    _report_skipped(skipped)
    return rows


def _summary_rows(run_dir: Path, summary_path: Path, skipped: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(benchmark, row) of each table row one summary gives (none when it cannot be read: listed in ``skipped``)."""
    if (read := _read(run_dir, summary_path, skipped)) is None:
        return []
    info, summary = read
    if (table := _table_rows(info, summary, summary_path, skipped)) is None:
        return []
    cls = benchmark_class(info["benchmark"])
    seed, identity = seed_group(run_dir)
    out = []
    for row in table:
        key = str(row.get(cls.report.row_key)) if cls.report.row_key else "all"
        out.append((info["benchmark"], {"model": info["model"], "run": run_dir.name, **row,
                                        "intervals": row_intervals(summary, key), "seed": seed, "identity": identity}))
    return out


def collect_limited_rows(run_root: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows per benchmark of smoke-check evaluations (``eval.limit=N``: ``<run>/eval/limit_<N>/summary.json``), each
    marked: its run labelled ``<run> (first N)``, ``limit`` N, no seed group."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    skipped: list[str] = []
    for run_dir in find_runs(run_root):
        paths = [(int(path.parent.name.removeprefix("limit_")), path)
                 for path in (run_dir / "eval").glob("limit_*/summary.json")
                 if path.parent.name.removeprefix("limit_").isdigit()]
        for limit, path in sorted(paths):
            for benchmark, row in _summary_rows(run_dir, path, skipped):
                rows[benchmark].append({**row, "run": f"{row['run']} (first {limit})", "limit": limit, "seed": None,
                                        "identity": None})
    _report_skipped(skipped)
    return rows


def seed_group(run_dir: Path) -> tuple[Any, dict[str, Any] | None]:
    """A run's seed and its identity (``identity.json``; None when the run has none, e.g. a model evaluated from
    elsewhere: it stays on its own)."""
    path = run_dir / IDENTITY_FILE
    try:
        identity = read_json(path) if path.is_file() else None
    except CorruptFile as error:
        log.warning("%s; the run is not grouped with other seeds", error)
        identity = None
    if not isinstance(identity, dict) or "seed" not in identity:
        return None, None
    return identity["seed"], identity


def differ_only_in_seed(a: Any, seed_a: Any, b: Any, seed_b: Any) -> bool:
    """Two identities equal but where each holds its own run's seed: the ``seed`` key, and settings interpolated
    from it (``benchmark.options.seed: ${seed}``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(differ_only_in_seed(a[k], seed_a, b[k], seed_b) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(differ_only_in_seed(x, seed_a, y, seed_b) for x, y in zip(a, b, strict=True))
    return a == b or (a == seed_a and b == seed_b)


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


_cell = number  # the tables' number format (unlearning/evaluation/cells.py)


def _cell_with_spread(row: dict[str, Any], column: str) -> str:
    """``value ± half-width`` of its confidence interval, or ``mean ± sd`` over seeds (a grouped row's
    ``spread``), or the value alone."""
    return with_spread(row.get(column), (row.get("intervals") or {}).get(column), (row.get("spread") or {}).get(column))


def markdown_table(rows: list[dict[str, Any]], columns: list[str], titles: list[str] | None = None) -> str:
    lines = ["| " + " | ".join(titles or columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell_with_spread(row, column) for column in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _same_but_seed(a: dict[str, Any], b: dict[str, Any], report: Report) -> bool:
    if a.get("identity") is None or b.get("identity") is None or a.get("seed") == b.get("seed"):
        return False
    if report.row_key and a.get(report.row_key) != b.get(report.row_key):
        return False
    return differ_only_in_seed(a["identity"], a["seed"], b["identity"], b["seed"])


def group_seeds(rows: list[dict[str, Any]], report: Report) -> list[dict[str, Any]]:
    """One row per group of runs that differ only in their seed (and per row key): the mean of each metric, its
    standard deviation over the seeds (``spread``, ddof 1) and the seeds; a run alone keeps its own row."""
    groups: list[list[dict[str, Any]]] = []
    for row in rows:
        home = next((group for group in groups if _same_but_seed(group[0], row, report)), None)
        if home is None:
            groups.append([row])
        else:
            home.append(row)
    out = []
    for members in groups:
        if len(members) == 1:
            out.append(members[0])
            continue
        merged = dict(members[0])
        merged.update(run=f"{len(members)} seeds", intervals={}, spread={},
                      seed=sorted((m.get("seed") for m in members), key=str))
        for column in report.columns:
            if column.better is None:
                continue
            values = [m.get(column.name) for m in members]
            if any(not isinstance(v, int | float) or isinstance(v, bool) for v in values):
                merged[column.name] = None
                continue
            merged[column.name] = float(np.mean(values))
            merged["spread"][column.name] = float(np.std(values, ddof=1))
        out.append(merged)
    return out


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
        "rows": [{**{column: row.get(column) for column in columns}, "seed": row.get("seed"),
                  "intervals": row.get("intervals") or {}, **({"limit": row["limit"]} if row.get("limit") else {})}
                 for row in rows],
    })
    bounds = [f"{column.name} {end}" for column in report.columns if column.better for end in ("low", "high")]
    atomic_write_csv(out_dir / f"{stem}.csv", [with_bounds(row) for row in rows], [*columns, "seed", *bounds])
    grouped = group_seeds(rows, report)
    table = markdown_table(grouped, columns, titles)
    note = "Cells: value ± half-width of its bootstrap confidence interval"
    text = f"# {title}\n\n{note}.\n\n{table}"
    if len(grouped) < len(rows):
        atomic_write_json(out_dir / f"{stem}_seeds.json", {
            "benchmark": title, "columns": columns,
            "rows": [{**{column: row.get(column) for column in columns}, "seed": row.get("seed"),
                      "sd": row.get("spread") or {}} for row in grouped]})
        note += "; rows of several seeds: mean ± standard deviation over the seeds"
        table += f"\nIndividual runs:\n\n{markdown_table(rows, columns, titles)}"
        text = f"# {title}\n\n{note}.\n\n{table}"
    atomic_write_text(out_dir / f"{stem}.md", text)
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
    """Every table; returns the full evaluations' rows per benchmark (smoke checks' rows are in the tables only)."""
    rows_by_benchmark = collect_rows(run_root)
    limited_by_benchmark = collect_limited_rows(run_root)
    if not rows_by_benchmark:
        log.warning("no evaluated runs under %s", run_root)
    for benchmark in sorted({*rows_by_benchmark, *limited_by_benchmark}):
        rows, limited = rows_by_benchmark.get(benchmark, []), limited_by_benchmark.get(benchmark, [])
        cls = benchmark_class(benchmark)
        report: Report = cls.report
        cls.finalize_rows(rows)
        for limit in sorted({row["limit"] for row in limited}):  # normalised among the same smoke check only
            cls.finalize_rows([row for row in limited if row["limit"] == limit])
        table = write_table(out_dir, benchmark, benchmark, rows + limited, report)
        x_key, y_key = report.tradeoff
        if any(row.get(y_key) is not None for row in rows):
            plot = tradeoff_plot(rows, benchmark, x_key, y_key, report.log_y,
                                 (report.direction(x_key), report.direction(y_key)))
            atomic_write_bytes(out_dir / f"{benchmark}_tradeoff.png", plot)
        smoke = f", {len(limited)} rows of smoke checks (eval.limit)" if limited else ""
        print(f"\n{benchmark} ({len(rows)} runs{smoke}; {out_dir}/{benchmark}.json, .csv, .md, _tradeoff.png)\n\n"
              f"{table}")
    for benchmark, rows in sorted(collect_step_rows(run_root).items()):
        cls = benchmark_class(benchmark)
        for step in sorted({row["step"] for row in rows}):
            cls.finalize_rows([row for row in rows if row["step"] == step])
        table = write_table(out_dir, f"{benchmark}_steps", f"{benchmark} per checkpoint", rows, cls.report, ("step",))
        atomic_write_bytes(out_dir / f"{benchmark}_steps.png", step_plot(rows, benchmark, cls.report))
        print(f"\n{benchmark} per checkpoint ({out_dir}/{benchmark}_steps.json, .csv, .md, .png)\n\n{table}")
    for markdown in write_robustness(run_root, out_dir):  # runs evaluated under attacks (eval_everything attack=...)
        print(f"\n{markdown.stem} ({markdown.with_suffix('')}.json, .csv, .md)\n\n{markdown.read_text()}")
    return rows_by_benchmark


class CannotCompare(ValueError):
    """Two runs whose metrics cannot be paired; the message says what to do."""


def _find_run(name: str, run_root: Path) -> Path:
    """A run folder given as a path, or by its folder name under ``run_root``."""
    path = Path(name)
    if (path / RUN_FILE).is_file():
        return path
    matches = [run for run in find_runs(run_root) if run.name == name or run.name.startswith(f"{name}-")]
    if len(matches) != 1:
        raise CannotCompare(f"compare: {name!r} names {len(matches)} runs under {run_root} "
                            f"({', '.join(str(m) for m in matches) or 'none'}); give the run folder's path")
    return matches[0]


def _bootstrap_of(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """A run's summary, its bootstrap block and its stored replicates (CannotCompare when it has none)."""
    summary_path = run_dir / "eval" / "summary.json"
    skipped: list[str] = []
    if not summary_path.is_file() or (read := _read(run_dir, summary_path, skipped)) is None:
        raise CannotCompare(f"compare: {run_dir} has no readable evaluation ({'; '.join(skipped) or 'not evaluated'})")
    _, summary = read
    block = summary.get("bootstrap")
    if not isinstance(block, dict) or not (run_dir / "eval" / str(block.get("file"))).is_file():
        raise CannotCompare(f"compare: {run_dir} was evaluated without bootstrap replicates; evaluate it again "
                            "(eval_everything.bash; finished parts are reused) with eval.bootstrap.resamples > 0")
    return summary, block, read_replicates(run_dir / "eval" / block["file"])


def compare_runs(name_a: str, name_b: str, run_root: Path) -> dict[str, Any]:
    """Per metric of two runs, the paired difference A − B over the same units, its bootstrap interval and its
    two-sided bootstrap p-value (``unlearning.evaluation.intervals.paired_difference``).

    The pairing holds because both evaluations drew the same units in every resample: same seed, same number of
    resamples and the same units per stratum (checked here)."""
    run_a, run_b = _find_run(name_a, run_root), _find_run(name_b, run_root)
    (summary_a, block_a, reps_a), (summary_b, block_b, reps_b) = _bootstrap_of(run_a), _bootstrap_of(run_b)
    if summary_a["benchmark"] != summary_b["benchmark"]:
        raise CannotCompare(f"compare: {run_a} is a {summary_a['benchmark']} run, {run_b} a {summary_b['benchmark']} "
                            "run")
    for key in ("resamples", "seed", "confidence"):
        if block_a[key] != block_b[key]:
            raise CannotCompare(f"compare: the runs were resampled with other eval.bootstrap.{key} ({block_a[key]} "
                                f"and {block_b[key]}); evaluate them again with the same settings")
    strata_a, strata_b = block_a.get("strata") or {}, block_b.get("strata") or {}
    differing = sorted(k for k in set(strata_a) & set(strata_b) if strata_a[k] != strata_b[k])
    if differing:
        raise CannotCompare(f"compare: the runs were evaluated on other units ({', '.join(differing)}): their "
                            "examples differ (another split or data), so their metrics cannot be paired")
    rows = []
    for row, columns in summary_a["metrics"].items():
        for name, metric in columns.items():
            other = (summary_b["metrics"].get(row) or {}).get(name)
            if other is None or metric["value"] is None or other["value"] is None:
                continue
            replicates_a, replicates_b = (reps_a.get(row) or {}).get(name), (reps_b.get(row) or {}).get(name)
            if replicates_a is None or replicates_b is None:
                continue
            rows.append({"row": row, "metric": name, "direction": metric["direction"], "a": metric["value"],
                         "b": other["value"], **paired_difference(metric["value"], other["value"], replicates_a,
                                                                  replicates_b, block_a["confidence"])})
    return {"benchmark": summary_a["benchmark"], "a": str(run_a), "b": str(run_b), "test": "paired bootstrap",
            "resamples": block_a["resamples"], "seed": block_a["seed"], "confidence": block_a["confidence"],
            "metrics": rows}


def compare_markdown(result: dict[str, Any]) -> str:
    level = round(100 * result["confidence"])
    lines = [f"# {result['benchmark']}: A − B, paired over the same units", "",
             f"A: {result['a']}  ", f"B: {result['b']}  ",
             f"{result['resamples']} paired bootstrap resamples (seed {result['seed']}); p: two-sided, from the "
             "resampled differences", "",
             f"| row | metric | A | B | A − B | {level}% interval | p |", "|---|---|---|---|---|---|---|"]
    for m in result["metrics"]:
        interval = "n/a" if m["interval"] is None else f"[{_cell(m['interval'][0])}, {_cell(m['interval'][1])}]"
        p_value = "n/a" if m["p_value"] is None else f"{m['p_value']:.3g}"
        lines.append(f"| {m['row']} | {m['metric']} | {_cell(m['a'])} | {_cell(m['b'])} | "
                     f"{_cell(float(m['difference']))} | {interval} | {p_value} |")
    return "\n".join(lines) + "\n"


def compare(names: Any, run_root: Path, out_dir: Path) -> dict[str, Any]:
    """``compare=<A>,<B>``: the paired comparison, printed and written to ``compare_<A>_vs_<B>.{json,md}``."""
    if isinstance(names, str):
        names = names.split(",")
    names = [str(name).strip() for name in names]
    if len(names) != 2 or not all(names):
        raise CannotCompare(f"compare takes two runs, compare=<run A>,<run B>; got {names}")
    result = compare_runs(*names, run_root)
    stem = f"compare_{Path(result['a']).name}_vs_{Path(result['b']).name}"
    text = compare_markdown(result)
    atomic_write_json(out_dir / f"{stem}.json", result)
    atomic_write_text(out_dir / f"{stem}.md", text)
    print(f"\n{text}\n({out_dir}/{stem}.json, .md)")
    return result


# ------------------------------------------------------------------------------------------- checkpoint selection


class CannotSelect(ValueError):
    """Checkpoint selection cannot run as asked; the message says what to do."""


SELECTION_KEYS = ("rule", "forget_metric", "utility_metric", "tolerance", "row")


def selection_rule(benchmark: str, overrides: Any = None) -> SelectionRule:
    """A benchmark's rule: the ``selection:`` block of ``config/benchmark/<benchmark>.yaml``, under the settings
    of ``results_collect.py``'s ``selection:`` that are not null. Metrics are table columns with a direction."""
    path = Path(CONFIG_DIR) / "benchmark" / f"{benchmark}.yaml"
    node = OmegaConf.load(path).get("selection") if path.is_file() else None
    own = OmegaConf.to_container(node, resolve=False) if node is not None else {}
    given = {k: v for k, v in dict(overrides or {}).items() if v is not None}
    unknown = sorted(set(given) - set(SELECTION_KEYS))
    if unknown:
        raise CannotSelect(f"selection: unknown settings {unknown}; the settings are {', '.join(SELECTION_KEYS)}")
    settings = {**{k: v for k, v in dict(own or {}).items() if v is not None}, **given}
    report: Report = benchmark_class(benchmark).report
    directed = [column.name for column in report.columns if column.better]
    for key in ("forget_metric", "utility_metric"):
        if not settings.get(key):
            raise CannotSelect(f"{benchmark} has no default {key} (config/benchmark/{benchmark}.yaml selection:); "
                               f"pass selection.{key}=<column>, one of: {', '.join(directed)}")
        if settings[key] not in directed:
            raise CannotSelect(f"selection.{key}={settings[key]!r} is not a {benchmark} column with a direction; "
                               f"one of: {', '.join(directed)}")
    try:
        return SelectionRule(forget_better=report.column(settings["forget_metric"]).better,
                             utility_better=report.column(settings["utility_metric"]).better, **settings)
    except (TypeError, ValueError) as error:
        raise CannotSelect(f"{benchmark}: {error}") from error


def _selection_file(eval_dir: Path, skipped: list[str]) -> dict[str, Any] | None:
    path = eval_dir / "selection.json"
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except CorruptFile as error:
        skipped.append(str(error))
        return None
    if not isinstance(data, dict):
        skipped.append(f"{path}: must be an object")
        return None
    return data


def _row_key(rule: SelectionRule, data: dict[str, Any], path: Path) -> str:
    rows = sorted(data.get("validation") or {})
    if rule.row is not None:
        if rule.row not in rows:
            raise CannotSelect(f"{path}: selection.row={rule.row!r} is not one of its rows ({', '.join(rows)})")
        return rule.row
    if len(rows) != 1:
        raise CannotSelect(f"{path}: {len(rows)} rows per run ({', '.join(rows)}); pass selection.row=<one of them>")
    return rows[0]


def step_validation(step: int, data: dict[str, Any], rule: SelectionRule, row: str) -> StepValidation:
    """What the rule reads of one evaluated step: the two metrics on the validation units, nothing else."""
    values = (data.get("validation") or {}).get(row) or {}
    return StepValidation(step, values.get(rule.forget_metric), values.get(rule.utility_metric))


def _split_of(data: dict[str, Any]) -> Any:
    return {stratum: (units.get("validation_hash"), units.get("reported_hash"))
            for stratum, units in (data.get("units") or {}).items()}


def _baseline(run_dir: Path, info: dict[str, Any], rule: SelectionRule, row: str, split: Any,
              skipped: list[str]) -> tuple[float | None, str]:
    """The starting model's validation utility (the run its base model came from, evaluated on the same units),
    or None with the reason it is missing."""
    entry = info.get("base_model")
    base = (run_dir / entry).resolve().parent if isinstance(entry, str) and entry.startswith(".") else None
    if base is None or not (base / RUN_FILE).is_file():
        return None, "no starting model's run"
    data = _selection_file(base / "eval", skipped)
    if data is None or not data.get("available"):
        return None, f"{base.name} has no validation numbers"
    if _split_of(data) != split:
        return None, f"{base.name} was evaluated on other units"
    return step_validation(0, data, rule, row).utility, base.name


def select_run(run_dir: Path, rule: SelectionRule, skipped: list[str]) -> dict[str, Any] | None:
    """One run's chosen step, from its evaluated steps' validation numbers (and its starting model's validation
    utility): the choice, the reason, what was read, and the chosen evaluation folder."""
    info = read_run(run_dir)
    final = _selection_file(run_dir / "eval", skipped)
    if final is None:
        return None
    points: list[tuple[int, Path]] = []
    for path in sorted((run_dir / "eval" / "steps").glob("step_*/selection.json")):
        points.append((int(path.parent.name.removeprefix("step_")), path.parent))
    steps = (info.get("train") or {}).get("steps") if isinstance(info.get("train"), dict) else None
    last = steps if isinstance(steps, int) else (points[-1][0] + 1 if points else 0)
    points = [(step, folder) for step, folder in points if step != last]  # the final model is that step's weights
    points.append((last, run_dir / "eval"))
    files = {step: final if folder == run_dir / "eval" else _selection_file(folder, skipped) for step, folder in points}
    if any(data is None or not data.get("available") for data in files.values()):
        return None
    row = _row_key(rule, final, run_dir / "eval" / "selection.json")
    split = _split_of(final)
    if any(_split_of(data) != split for data in files.values()):
        skipped.append(f"{run_dir}: its steps were evaluated on other validation splits (another "
                       "eval.selection setting or other data); evaluate them again with one")
        return None
    seen = [step_validation(step, data, rule, row) for step, data in files.items()]
    if len(seen) == 1:
        choice = Choice(seen[0].step, "no intermediate checkpoint evaluated (save_every, steps=all): its final model")
        baseline, baseline_name = None, ""
    else:
        baseline, baseline_name = _baseline(run_dir, info, rule, row, split, skipped)
        choice = choose(seen, rule, baseline, f"the starting model's ({baseline_name})" if baseline is not None
                        else f"no starting model's validation numbers: {baseline_name}")
    if choice.step is None:
        skipped.append(f"{run_dir}: no step chosen ({choice.reason})")
        return None
    folder = dict(points)[choice.step]
    return {"step": choice.step, "reason": choice.reason, "eligible": list(choice.eligible), "row": row,
            "steps": [{"step": s.step, rule.forget_metric: s.forget, rule.utility_metric: s.utility} for s in seen],
            "baseline": baseline, "baseline_run": baseline_name if baseline is not None else None,
            "eval_dir": folder, "data": files[choice.step], "final": points[-1][0]}


def _reported_rows(run_dir: Path, picked: dict[str, Any], skipped: list[str]) -> list[dict[str, Any]] | None:
    """The chosen step's table rows with every metric on the reported units (and its interval over them)."""
    folder: Path = picked["eval_dir"]
    summary_path = folder / "summary.json"
    if (read := _read(run_dir, summary_path, skipped)) is None:
        return None
    info, summary = read
    if (table := _table_rows(info, summary, summary_path, skipped)) is None:
        return None
    cls = benchmark_class(info["benchmark"])
    seed, identity = seed_group(run_dir)
    rows = []
    for row in table:
        key = str(row.get(cls.report.row_key)) if cls.report.row_key else "all"
        reported = (picked["data"].get("reported") or {}).get(key) or {}
        values = {name: metric.get("value") for name, metric in reported.items()}
        intervals = {name: metric["interval"] for name, metric in reported.items() if metric.get("interval")}
        rows.append({"model": info["model"], "run": run_dir.name, **row, **values, "step": picked["step"],
                     "final step": picked["final"], "intervals": intervals, "seed": seed, "identity": identity})
    return rows


def _selection_markdown(benchmark: str, rule: SelectionRule, table: str, picks: list[tuple[Path, dict[str, Any]]],
                        split: dict[str, Any]) -> str:
    units = ", ".join(f"{stratum} {u['validation']} of {u['validation'] + u['reported']}"
                      for stratum, u in sorted((split.get("units") or {}).items()))
    lines = [f"# {benchmark}: checkpoints chosen on validation units, reported on the others", "",
             f"Validation: {split.get('validation_fraction', 0):.0%} of each stratum's units, seed "
             f"{split.get('seed')} (validation units: {units}); the rule reads their numbers only.  ",
             f"Rule: {rule.describe()}.  ",
             "Cells: the chosen step's value on the reported units ± half-width of its bootstrap interval over "
             "those units.", "", table, "## Why each step", "",
             f"| run | step | final step | reason | validation {rule.forget_metric} / {rule.utility_metric} per step |",
             "|---|---|---|---|---|"]
    for run_dir, picked in picks:
        read = "; ".join(f"{s['step']}: {_cell(s[rule.forget_metric])} / {_cell(s[rule.utility_metric])}"
                         for s in picked["steps"])
        lines.append(f"| {run_dir.name} | {picked['step']} | {picked['final']} | {picked['reason']} | {read} |")
    return "\n".join(lines) + "\n"


def collect_selection(run_root: Path, out_dir: Path, overrides: Any = None) -> dict[str, list[dict[str, Any]]]:
    """``select=true``: per benchmark, each evaluated run's chosen step with its numbers on the reported units, in
    ``<benchmark>_selected.{json,csv,md}``. A benchmark whose evaluations hold no validation split is named with
    what to do; none at all is an error (CannotSelect)."""
    by_benchmark: dict[str, list[Path]] = defaultdict(list)
    skipped: list[str] = []
    for run_dir in find_runs(run_root):
        if (run_dir / "eval" / "summary.json").is_file():
            try:
                by_benchmark[str(read_run(run_dir).get("benchmark"))].append(run_dir)
            except CorruptFile as error:
                skipped.append(str(error))
    out: dict[str, list[dict[str, Any]]] = {}
    refused: list[str] = []
    for benchmark, runs in sorted(by_benchmark.items()):
        files = [_selection_file(run / "eval", skipped) for run in runs]
        unavailable = [data for data in files if data is not None and not data.get("available")]
        if unavailable:
            refused.append(f"checkpoint selection is not available for {benchmark} yet: {unavailable[0].get('reason')}")
            continue
        if not any(files):
            refused.append(f"{benchmark}: its runs were evaluated without a validation split (no eval/selection.json); "
                           "evaluate them again (finished parts are reused: bash scripts/eval_everything.bash "
                           "steps=all) with eval.selection.validation_fraction > 0")
            continue
        rule = selection_rule(benchmark, overrides)
        rows, picks = [], []
        for run_dir in runs:
            try:
                picked = select_run(run_dir, rule, skipped)
            except CorruptFile as error:
                skipped.append(str(error))
                continue
            if picked is None:
                skipped.append(f"{run_dir}: left out of the selection table (no validation numbers at every step; "
                               "evaluate it again)")
                continue
            if (table := _reported_rows(run_dir, picked, skipped)) is not None:
                rows += table
                picks.append((run_dir, picked))
        if not rows:
            refused.append(f"{benchmark}: no run could be selected")
            continue
        cls = benchmark_class(benchmark)
        cls.finalize_rows(rows)
        stem = f"{benchmark}_selected"
        table = write_table(out_dir, stem, f"{benchmark} (chosen checkpoints, reported units)", rows, cls.report,
                            ("step",))
        split = picks[0][1]["data"]
        atomic_write_text(out_dir / f"{stem}.md", _selection_markdown(benchmark, rule, table, picks, split))
        columns = ["model", "step", *(column.name for column in cls.report.columns)]
        atomic_write_json(out_dir / f"{stem}.json", {
            "benchmark": benchmark, "rule": {"text": rule.describe(), **{k: getattr(rule, k) for k in SELECTION_KEYS}},
            "validation_fraction": split.get("validation_fraction"), "seed": split.get("seed"),
            "units": split.get("units"), "columns": columns,
            "better": {column.name: column.better for column in cls.report.columns if column.better},
            "rows": [{**{column: row.get(column) for column in columns}, "seed": row.get("seed"),
                      "intervals": row.get("intervals") or {}} for row in rows],
            "choices": [{"run": run_dir.name, **{k: v for k, v in picked.items() if k not in ("eval_dir", "data")}}
                        for run_dir, picked in picks],
        })
        out[benchmark] = rows
        print(f"\n{benchmark}: chosen checkpoints ({out_dir}/{stem}.json, .csv, .md)\n\n"
              f"{(out_dir / f'{stem}.md').read_text()}")
    _report_skipped(skipped)
    for line in refused:
        log.warning("%s", line)
    if refused and not out:
        raise CannotSelect("\n".join(refused))
    return out


def list_override(argv: list[str]) -> list[str]:
    """``compare=A,B`` as Hydra reads a list (unquoted, Hydra takes ``A,B`` for a sweep and refuses it)."""
    return [f"compare=[{arg.split('=', 1)[1]}]" if arg.startswith("compare=") and "," in arg
            and not arg.split("=", 1)[1].startswith(("[", "'", '"')) else arg for arg in argv]


@hydra_app(version_base=None, config_path=CONFIG_DIR, config_name="aggregate")
def main(cfg: DictConfig) -> None:
    setup_logging()
    if cfg.get("compare"):
        try:
            compare(list(cfg.compare) if not isinstance(cfg.compare, str) else cfg.compare, Path(cfg.run_root),
                    Path(cfg.out_dir))
        except CannotCompare as error:
            raise SystemExit(str(error)) from None
        return
    rows = collect(Path(cfg.run_root), Path(cfg.out_dir))
    if cfg.get("select"):
        try:
            collect_selection(Path(cfg.run_root), Path(cfg.out_dir), cfg.get("selection"))
        except CannotSelect as error:
            raise SystemExit(str(error)) from None
    if cfg.get("published"):  # results/<benchmark>_published.*, apart from our tables (docs/published.md)
        from unlearning.evaluation.published import write_published

        for markdown in write_published(rows, Path(cfg.out_dir)):
            print(f"\n{markdown.stem} ({markdown.with_suffix('')}.json, .csv, .md)\n\n{markdown.read_text()}")
    if cfg.get("report", True):  # results/index.html and results/report/ (unlearning.reporting)
        from unlearning.reporting import write_report

        print(f"\nreport: {write_report(Path(cfg.run_root), Path(cfg.out_dir))}")
    if cfg.check_shape:
        failures = shape_failures(rows)
        if failures:
            raise SystemExit("the table does not have the shape the demo must have on any machine:\n  "
                             + "\n  ".join(failures))


if __name__ == "__main__":
    sys.argv = list_override(sys.argv)
    main()
