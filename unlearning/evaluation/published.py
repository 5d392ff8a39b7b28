"""Published numbers beside ours: each benchmark package ships its paper's table as ``<package>/published.csv``.

One row per published number::

    model,method,setting,metric,value,source_paper,source_table,source_page_or_section,note
    llava_phi3_mini,ga,forget5,ROUGE-L,50.6,"Ma et al., ... ICLR 2025",Table 2,"<where exactly>","<caveats>"

``model`` and ``method`` are this toolkit's labels (the model config's ``name``, the results table's ``method``
column: ``ga``, ``stage1_retain``, ``vanilla_full``...), so a published row finds the user's runs of the same model
and method by plain equality. ``metric`` is our table's column name where the paper measured the same quantity; a
metric our table does not have under that name (the paper's own definition) keeps a name of its own and is shown
without an "ours" value. ``value`` is the number as printed (its text is kept for display). Every row names its
source: the paper, its table and the page, section or file where the number was read; ``note`` says what a reader
must know (a third-party transcription, a definition that differs).

The side-by-side table (``results/<benchmark>_published.{md,csv,json}``, ``results_collect.py published=true``) keeps
the published numbers apart from ours: every cell says whether it is ``published`` or ``ours``, and nothing here
writes into ``results/<benchmark>.*``. Matching: a published (model, method) is put beside every table row of the
user's runs whose ``model`` and ``method`` are equal to it; the row's setting (``forget_split``, and the row key
where a run has several rows) is shown next to its value, since runs of another split are matched too and the
reader must see it. See docs/published.md for what each benchmark's file holds.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearning.runs.io import atomic_write_csv, atomic_write_json, atomic_write_text

FILE_NAME = "published.csv"
COLUMNS = ("model", "method", "setting", "metric", "value", "source_paper", "source_table", "source_page_or_section",
           "note")
REQUIRED = ("model", "method", "metric", "value", "source_paper", "source_table", "source_page_or_section")
SETTING_COLUMN = "forget_split"  # the table column shown as "our setting" beside each of our values
OUTPUT_COLUMNS = ("model", "method", "metric", "kind", "value", "setting", "run", "our_column", "source_paper",
                  "source_table", "source_page_or_section", "note")


class PublishedError(ValueError):
    """A published.csv that does not fit; the message names the file, the line and the field."""


@dataclass(frozen=True)
class PublishedRow:
    """One published number and where it was read."""

    model: str
    method: str
    setting: str
    metric: str
    value: float
    text: str  # the value as printed ("6.90"), shown as is
    source_paper: str
    source_table: str
    source_page_or_section: str
    note: str
    line: int

    @property
    def source(self) -> str:
        return f"{self.source_paper}, {self.source_table}, {self.source_page_or_section}"


def published_path(benchmark: str) -> Path:
    """``<package>/published.csv`` of a benchmark package, found through its module path (nothing is imported)."""
    spec = importlib.util.find_spec(benchmark)
    if spec is None or not spec.submodule_search_locations:
        raise PublishedError(f"{benchmark!r} is not a benchmark package")
    return Path(next(iter(spec.submodule_search_locations))) / FILE_NAME


def read_published(path: Path) -> list[PublishedRow]:
    """Read and check a published.csv: every column present, every value a finite number, every source named, no
    number twice."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        missing = [column for column in COLUMNS if column not in header]
        unknown = [column for column in header if column not in COLUMNS]
        if missing or unknown:
            raise PublishedError(f"{path}: line 1 (header): missing column(s) {missing}, unknown column(s) {unknown}; "
                                 f"the columns are {', '.join(COLUMNS)}")
        rows, seen = [], {}
        for record in reader:
            line = reader.line_num
            if None in record or any(value is None for value in record.values()):
                raise PublishedError(f"{path}: line {line}: {len(header)} fields expected, the row has another count")
            fields = {key: value.strip() for key, value in record.items()}
            for field in REQUIRED:
                if not fields[field]:
                    raise PublishedError(f"{path}: line {line}, field {field!r}: empty; every published number names "
                                         "its model, method, metric and source (paper, table, page or section)")
            try:
                value = float(fields["value"])
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise PublishedError(f"{path}: line {line}, field 'value': {fields['value']!r} is not a finite number")
            key = (fields["model"], fields["method"], fields["setting"], fields["metric"])
            if key in seen:
                raise PublishedError(f"{path}: line {line}: model, method, setting and metric {key} repeat line "
                                     f"{seen[key]}")
            seen[key] = line
            rows.append(PublishedRow(fields["model"], fields["method"], fields["setting"], fields["metric"], value,
                                     fields["value"], fields["source_paper"], fields["source_table"],
                                     fields["source_page_or_section"], fields["note"], line))
    return rows


def load_published(benchmark: str) -> list[PublishedRow]:
    """A benchmark's published rows (none when its package ships no published.csv)."""
    path = published_path(benchmark)
    return read_published(path) if path.is_file() else []


def _our_label(row: Mapping[str, Any], row_key: str | None) -> str:
    label = str(row.get("run") or "?")
    return f"{label} [{row[row_key]}]" if row_key and row.get(row_key) is not None else label


def _interval(row: Mapping[str, Any], metric: str) -> list[float] | None:
    interval = (row.get("intervals") or {}).get(metric)
    return list(interval) if interval else None


def side_by_side(published: Sequence[PublishedRow], rows: Iterable[Mapping[str, Any]], columns: Sequence[str],
                 row_key: str | None = None) -> list[dict[str, Any]]:
    """Per published (model, method, setting), its metrics: the published value and, apart from it, the value of
    every table row of the same model and method (None where our table has no column of that name)."""
    rows = list(rows)
    groups: dict[tuple[str, str, str], list[PublishedRow]] = {}
    for entry in published:
        groups.setdefault((entry.model, entry.method, entry.setting), []).append(entry)
    out = []
    for (model, method, setting), entries in groups.items():
        ours = [row for row in rows if row.get("model") == model and row.get("method") == method]
        metrics = []
        for entry in entries:
            in_ours = entry.metric in columns
            metrics.append({
                "metric": entry.metric, "our_column": in_ours,
                "published": {"kind": "published", "value": entry.value, "text": entry.text,
                              "source_paper": entry.source_paper, "source_table": entry.source_table,
                              "source_page_or_section": entry.source_page_or_section, "note": entry.note},
                "ours": [{"kind": "ours", "run": _our_label(row, row_key), "setting": row.get(SETTING_COLUMN),
                          "value": row.get(entry.metric) if in_ours else None,
                          "interval": _interval(row, entry.metric) if in_ours else None} for row in ours],
            })
        out.append({"model": model, "method": method, "setting": setting,
                    "runs": [{"run": _our_label(row, row_key), "setting": row.get(SETTING_COLUMN)} for row in ours],
                    "metrics": metrics})
    return out


def _number(value: Any, interval: list[float] | None = None) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "n/a" if value is None else str(value)
    text = f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return f"{text} ± {(interval[1] - interval[0]) / 2:.2g}" if interval else text


def flat_rows(groups: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One line per cell (``kind`` published or ours), for the CSV."""
    out = []
    for group in groups:
        for metric in group["metrics"]:
            base = {"model": group["model"], "method": group["method"], "metric": metric["metric"],
                    "our_column": metric["our_column"]}
            published = metric["published"]
            out.append({**base, **{k: v for k, v in published.items() if k != "text"}, "setting": group["setting"],
                        "run": ""})
            out += [{**base, "kind": "ours", "value": cell["value"], "setting": cell["setting"], "run": cell["run"]}
                    for cell in metric["ours"]]
    return out


def markdown(benchmark: str, groups: Sequence[Mapping[str, Any]]) -> str:
    """One table per published (model, method, setting): the published column, then one column per row of ours;
    sources [S] and notes [N] listed once below (each number's exact place: the CSV's source_page_or_section)."""
    sources: list[str] = []
    notes: list[str] = []
    tables: list[str] = []
    for group in groups:
        runs = group["runs"]
        header = ["metric", "published", *(f"ours: {run['run']} ({run['setting'] or '—'})" for run in runs)]
        if not runs:
            header.append("ours")
        tables += [f"## {group['model']} / {group['method']} (published setting: {group['setting'] or '—'})", "",
                   "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for metric in group["metrics"]:
            published = metric["published"]
            source = f"{published['source_paper']}, {published['source_table']}"
            if source not in sources:
                sources.append(source)
            marks = [f"S{sources.index(source) + 1}"]
            if published["note"]:
                if published["note"] not in notes:
                    notes.append(published["note"])
                marks.append(f"N{notes.index(published['note']) + 1}")
            cells = [f"{published['text']} [{', '.join(marks)}]"]
            cells += [_number(cell["value"], cell["interval"]) if metric["our_column"] else "—"
                      for cell in metric["ours"]] or ["no run of ours"]
            tables.append(f"| {metric['metric']} | " + " | ".join(cells) + " |")
        tables.append("")
    lines = [f"# {benchmark}: published numbers beside ours", "",
             "Published: the paper's number as printed, with its source [S] and notes [N] below; where exactly each "
             f"number was read is in {benchmark}_published.csv (source_page_or_section). Ours: the rows of our runs "
             f"of the same model and method (results/{benchmark}.md), value ± half-width of its bootstrap interval, "
             "with the run's forget split; —: our table has no column of that name (the paper's own definition); n/a: "
             "our run has no value for it. "
             "Published and ours are never mixed (docs/published.md).", ""]
    if not groups:
        lines += [f"No published numbers are shipped for {benchmark}; docs/published.md says what could not be "
                  "found.", ""]
    lines += tables
    lines += [*(f"[S{i}] {source}  " for i, source in enumerate(sources, start=1)), ""] if sources else []
    lines += [*(f"[N{i}] {note}  " for i, note in enumerate(notes, start=1)), ""] if notes else []
    return "\n".join(lines).rstrip() + "\n"


def write_published(rows_by_benchmark: Mapping[str, Sequence[Mapping[str, Any]]], out_dir: Path,
                    benchmarks: Iterable[str] | None = None) -> list[Path]:
    """``<out_dir>/<benchmark>_published.{md,csv,json}`` for every benchmark that ships a published.csv (by
    default: those with rows, and every benchmark package beside the engine); returns the Markdown files."""
    from unlearning.benchmarks import benchmark_class, benchmark_names

    names = sorted(set(benchmarks) if benchmarks is not None else {*rows_by_benchmark, *benchmark_names()})
    written = []
    for name in names:
        if not published_path(name).is_file():
            continue
        report = benchmark_class(name).report
        columns = [column.name for column in report.columns if column.better is not None]
        groups = side_by_side(load_published(name), rows_by_benchmark.get(name, ()), columns, report.row_key)
        stem = out_dir / f"{name}_published"
        atomic_write_json(stem.with_suffix(".json"), {
            "benchmark": name, "source_file": str(published_path(name)),
            "matching": "a published (model, method) beside every table row of ours with equal model and method; "
                        "each of our values carries its run and forget split",
            "groups": groups})
        atomic_write_csv(stem.with_suffix(".csv"), flat_rows(groups), list(OUTPUT_COLUMNS))
        atomic_write_text(stem.with_suffix(".md"), markdown(name, groups))
        written.append(stem.with_suffix(".md"))
    return written
