"""The report's pages from the collected data: Jinja templates (``templates/``), the static assets
(``static/``, plotly's JavaScript), one page per run and the index, written so that no half-written report
is ever left: the ``report/`` folder is filled aside and swapped in whole, then ``index.html`` replaced."""

from __future__ import annotations

import datetime
import importlib.resources
import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import jinja2
import yaml

from unlearning.evaluation.cells import number, with_spread
from unlearning.reporting import plots
from unlearning.reporting.collect import BenchmarkResults, RunPage, Table, evaluated_runs, read_results, run_page
from unlearning.reporting.thumbnails import ImageIndex, Thumbnails
from unlearning.runs.io import SECRET_VALUE, atomic_write_dir, atomic_write_text, redact

log = logging.getLogger(__name__)
PACKAGE = Path(__file__).resolve().parent
REPORT_DIR = "report"  # beside index.html in the out_dir: assets/, runs/<run>.html, img/
ARROWS = {"higher": "↑", "lower": "↓"}
MAX_SAMPLES = 200  # per part on a run page: enough to read, small enough to open fast


def plotly_js() -> Path:
    """plotly's JavaScript as the installed plotly package ships it (copied into the report: opens offline)."""
    source = importlib.resources.files("plotly") / "package_data" / "plotly.min.js"
    with importlib.resources.as_file(source) as path:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: plotly's JavaScript is missing; reinstall plotly (requirements.txt)")
        return path


def cell(row: dict[str, Any], column: str) -> dict[str, Any]:
    """A table cell: its text (``value ± half-width`` of its interval, or ± sd over seeds), the value it sorts
    by and its interval, for the title shown on hover."""
    value = row.get(column)
    spread = (row.get("sd") or row.get("spread") or {}).get(column)
    interval = (row.get("intervals") or {}).get(column)
    text = with_spread(value, interval, spread)
    sortable = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    title = f"interval [{number(interval[0])}, {number(interval[1])}]" if isinstance(interval, list) \
        and len(interval) == 2 and None not in interval else ""
    return {"text": text, "sort": "" if sortable is None or math.isnan(sortable) else repr(sortable),
            "title": title}


def header(table: Table, column: str) -> str:
    """A column name with the arrow of its better direction."""
    arrow = ARROWS.get(table.better.get(column, ""))
    return f"{column} {arrow}" if arrow else column


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(PACKAGE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(number=number, tojson_pretty=lambda obj: json.dumps(obj, indent=2, ensure_ascii=False,
                                                                          default=str))
    env.globals.update(cell=cell, header=header)
    return env


def _benchmark_view(results: BenchmarkResults, pages: dict[tuple[str, str], str]) -> dict[str, Any]:
    name = results.name
    tradeoff = plots.tradeoff(results.table, *results.tradeoff, results.log_y, f"plot-{name}-tradeoff") \
        if results.tradeoff else None
    steps = None
    if results.steps is not None:
        keys = results.tradeoff or tuple(c for c in results.steps.columns if c in results.steps.better)[:2]
        steps = plots.steps(results.steps, keys, {results.tradeoff[1]} if results.tradeoff and results.log_y
                            else set(), f"plot-{name}-steps")
    return {"name": name, "table": results.table, "tradeoff": tradeoff, "steps": steps,
            "steps_table": results.steps, "others": results.others, "pngs": results.pngs,
            "links": {row.get("run"): pages.get((name, str(row.get("run")))) for row in results.table.rows}}


def _run_view(page: RunPage, thumbnails: Thumbnails, images: ImageIndex,
              tables: dict[str, BenchmarkResults]) -> dict[str, Any]:
    lookup = images.for_run(page.path) if any(s.uid for p in page.parts for s in p.samples) else {}
    for part in page.parts:
        for sample in part.samples:
            if sample.uid and sample.uid in lookup and (name := thumbnails.add(lookup[sample.uid])):
                sample.image = f"../img/{name}"
    results = tables.get(page.benchmark)
    rows = [row for row in results.table.rows if row.get("run") == page.path.name] if results else []
    provenance = redact({k: v for k, v in page.info.items() if k != "train"})
    train = page.info.get("train")
    summary = _flatten(train) if isinstance(train, dict) else {}
    table = Table(results.table.stem, results.table.columns, rows, results.table.better) if rows else None
    return {"page": page, "table": table, "train_summary": summary, "provenance": provenance,
            "training": plots.training(page.train_log, "plot-training"),
            "identity": yaml.safe_dump(redact(page.identity), sort_keys=False) if page.identity is not None
            else None, "config_text": SECRET_VALUE.sub("***", page.config_text),
            "settings": _top_settings(page.config_text)}


def _top_settings(config_text: str) -> dict[str, Any]:
    """The config's top-level scalar settings (learning rate, epochs, splits...), the ones a reader compares
    first; the nested blocks stay in the full config below them."""
    try:
        config = yaml.safe_load(config_text) if config_text else None
    except yaml.YAMLError:
        return {}
    if not isinstance(config, dict):
        return {}
    return redact({k: v for k, v in config.items() if v is not None and not isinstance(v, dict | list)})


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"final": {"loss": 1}}`` as ``{"final.loss": 1}``, for one line of text."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def write_report(run_root: Path, out_dir: Path, max_samples: int = MAX_SAMPLES) -> Path:
    """``out_dir/index.html`` and ``out_dir/report/``: every benchmark's tables and plots from ``out_dir``, and a
    page per evaluated run under ``run_root``; returns the index's path."""
    run_root, out_dir = Path(run_root), Path(out_dir)
    env = environment()
    benchmarks = read_results(out_dir)
    by_name = {results.name: results for results in benchmarks}
    runs = evaluated_runs(run_root) if run_root.is_dir() else {}
    pages = [page for run_dir, slug in runs.items() if (page := run_page(run_dir, slug, max_samples))]
    slug_of = {page.path.resolve(): page.slug for page in pages}
    for page in pages:
        page.start_slug = slug_of.get(page.start) if page.start else None
    links = {(page.benchmark, page.path.name): f"{REPORT_DIR}/runs/{page.slug}.html" for page in pages}
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    images = ImageIndex()

    def fill(folder: Path) -> None:
        assets = folder / "assets"
        assets.mkdir()
        shutil.copyfile(plotly_js(), assets / "plotly.min.js")
        for path in (PACKAGE / "static").iterdir():
            shutil.copyfile(path, assets / path.name)
        (folder / "runs").mkdir()
        thumbnails = Thumbnails(folder / "img")
        template = env.get_template("run.html")
        for page in pages:
            html = template.render(root="../..", assets="../assets", generated=generated,
                                   **_run_view(page, thumbnails, images, by_name))
            (folder / "runs" / f"{page.slug}.html").write_text(html, encoding="utf-8")

    atomic_write_dir(out_dir / REPORT_DIR, fill)
    index = env.get_template("index.html").render(
        root=".", assets=f"{REPORT_DIR}/assets", generated=generated, run_root=str(run_root),
        benchmarks=[_benchmark_view(results, links) for results in benchmarks],
        runs=sorted(pages, key=lambda page: (page.benchmark, page.slug)), report_dir=REPORT_DIR)
    path = atomic_write_text(out_dir / "index.html", index)
    log.info("report: %s (%d benchmarks, %d run pages)", path, len(benchmarks), len(pages))
    return path
