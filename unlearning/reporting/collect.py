"""What the report shows, as plain data: the tables ``results_collect.py`` wrote into its out_dir, and each
evaluated run's folder (settings, provenance, training log, per-sample results beside its starting model's).

Nothing here names a benchmark: tables are read by their shape (``columns``, ``rows``, ``better``), a run's
starting model is the run its ``run.json`` ``base_model`` points into, and per-sample fields are read by what
they hold (the first of a few usual field names for question, gold answer and model output; every scalar
number is a score), so a benchmark without per-sample text shows what it has.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearning.runs.folders import IDENTITY_FILE, RUN_FILE, find_runs
from unlearning.runs.io import CorruptFile, read_json

log = logging.getLogger(__name__)

# The usual names of a sample's question, gold answer and model output, in order of preference. "answer" is the
# gold answer beside an explicit output field (a generation, a prediction), and the model's output where a sample
# has none (its gold answer then named "reference", if any).
QUESTION_FIELDS = ("question", "prompt", "query", "instruction")
OUTPUT_FIELDS = ("generation", "prediction", "response", "output", "caption")
GOLD_FIELDS = ("answer", "gold", "target", "reference", "label")
GOLD_BESIDE_ANSWER = ("gold", "target", "reference", "label")
FORGET_FIRST = ("forget", "retain")  # parts whose name or role holds these words come first, in this order


@dataclass
class Table:
    """One table of the out_dir (``<stem>.json``): its columns, each metric's direction, its rows (with
    ``intervals``: metric -> [low, high], where computed)."""

    stem: str
    columns: list[str]
    rows: list[dict[str, Any]]
    better: dict[str, str] = field(default_factory=dict)


@dataclass
class BenchmarkResults:
    """A benchmark's main table, its per-checkpoint table, the other tables named after it (robustness,
    relearning, chosen checkpoints, seeds) and its PNG plots, as the out_dir holds them."""

    name: str
    table: Table
    steps: Table | None = None
    others: list[Table] = field(default_factory=list)
    pngs: list[str] = field(default_factory=list)
    tradeoff: tuple[str, str] | None = None
    log_y: bool = False


@dataclass
class Sample:
    """One scored example of the run beside the starting model's answer to it (None where there is none)."""

    question: str | None
    gold: str | None
    output: str | None
    start_output: str | None
    scores: list[tuple[str, Any, Any]]  # (name, value, the starting model's value or None)
    meta: list[tuple[str, Any]]
    uid: str | None
    image: str | None = None  # the thumbnail's path relative to the report folder, filled by the renderer


@dataclass
class PartSamples:
    """The samples of one ``eval/<part>.json`` (or one group of them): the first ``max_samples`` of ``n``."""

    name: str
    role: str
    n: int
    samples: list[Sample]
    aggregate: dict[str, Any]
    matched: int  # samples paired with the starting model's


@dataclass
class RunPage:
    """Everything a run's page shows."""

    slug: str
    path: Path
    benchmark: str
    info: dict[str, Any]
    identity: Any
    config_text: str
    train_log: list[dict[str, Any]]
    parts: list[PartSamples]
    start: Path | None
    start_slug: str | None = None


def _json_table(path: Path) -> dict[str, Any] | None:
    try:
        data = read_json(path)
    except (CorruptFile, OSError) as error:
        log.warning("report: %s left out (%s)", path, error)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("columns"), list) or not isinstance(data.get("rows"),
                                                                                                    list):
        return None  # not a table (a comparison, the published numbers' groups): not shown
    better = data.get("better") if isinstance(data.get("better"), dict) else {}
    return {**data, "columns": [str(c) for c in data["columns"]], "better": better,
            "rows": [row for row in data["rows"] if isinstance(row, dict)]}


def read_results(out_dir: Path) -> list[BenchmarkResults]:
    """Each benchmark's tables in ``out_dir``: ``<b>.json`` (a table naming ``benchmark`` ``<b>``) and the
    ``<b>_<what>.json`` tables beside it."""
    tables = {path.stem: data for path in sorted(out_dir.glob("*.json")) if (data := _json_table(path))}
    out = []
    for stem, data in tables.items():
        if data.get("benchmark") != stem:
            continue
        better = dict(data.get("better") or {})
        results = BenchmarkResults(stem, Table(stem, data["columns"], data["rows"], better))
        for other, odata in tables.items():
            if other == stem or not other.startswith(f"{stem}_"):
                continue
            table = Table(other, odata["columns"], odata["rows"], dict(odata.get("better") or better))
            if other == f"{stem}_steps":
                results.steps = table
            else:
                results.others.append(table)
        results.pngs = sorted(path.name for path in out_dir.glob(f"{stem}_*.png"))
        results.tradeoff, results.log_y = _tradeoff_axes(stem, data["columns"])
        out.append(results)
    return out


def _tradeoff_axes(benchmark: str, columns: list[str]) -> tuple[tuple[str, str] | None, bool]:
    """The (x, y) columns the benchmark plots against each other (its registered report), if it has one."""
    from unlearning.benchmarks import benchmark_class

    try:
        report = benchmark_class(benchmark).report
    except Exception as error:  # a table of an unknown benchmark still shows, without this plot
        log.info("report: no trade-off axes for %s (%s)", benchmark, error)
        return None, False
    axes = tuple(report.tradeoff)
    return (axes if all(axis in columns for axis in axes) else None), bool(report.log_y)


def evaluated_runs(run_root: Path) -> dict[Path, str]:
    """Every evaluated run folder under ``run_root`` and the page name it gets (its folder name, made unique)."""
    slugs: dict[Path, str] = {}
    taken: set[str] = set()
    for run_dir in find_runs(run_root):
        if not (run_dir / "eval" / "summary.json").is_file():
            continue
        slug = run_dir.name
        if slug in taken:
            slug = "_".join(run_dir.relative_to(run_root).parts)
        taken.add(slug)
        slugs[run_dir] = slug
    return slugs


def starting_run(run_dir: Path, info: dict[str, Any]) -> Path | None:
    """The run the model was trained from (``base_model`` points at its checkpoint), or None (a model from
    elsewhere, or a run that starts from nothing)."""
    entry = info.get("base_model")
    if not isinstance(entry, str) or not entry:
        return None
    path = Path(entry)
    path = (run_dir / path if not path.is_absolute() else path).resolve()
    for candidate in (path, path.parent):
        if (candidate / RUN_FILE).is_file() and candidate != run_dir.resolve():
            return candidate
    return None


def _read_optional(path: Path) -> Any:
    try:
        return read_json(path) if path.is_file() else None
    except CorruptFile as error:
        log.warning("report: %s", error)
        return None


def read_train_log(path: Path) -> list[dict[str, Any]]:
    """The rows of ``train_log.jsonl`` that parse (a half-written last line is skipped)."""
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def _first(sample: dict[str, Any], names: tuple[str, ...]) -> tuple[str | None, str | None]:
    for name in names:
        if isinstance(sample.get(name), str | int | float) and not isinstance(sample.get(name), bool):
            return name, str(sample[name])
    return None, None


def text_fields(sample: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """The names of a sample's question, gold answer and model output (None where it has none)."""
    question = _first(sample, QUESTION_FIELDS)[0]
    output = _first(sample, OUTPUT_FIELDS)[0]
    if output is None and _first(sample, ("answer",))[0]:
        return question, _first(sample, GOLD_BESIDE_ANSWER)[0], "answer"
    return question, _first(sample, GOLD_FIELDS)[0], output


def _scores(sample: dict[str, Any], used: set[str | None]) -> dict[str, Any]:
    """Every float or bool of the sample outside its text fields, those of a nested object as ``key.name``."""
    out: dict[str, Any] = {}
    for key, value in sample.items():
        if key in used:
            continue
        if isinstance(value, float | bool):
            out[key] = value
        elif isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items() if isinstance(v, float | bool)})
    return out


def _pair(samples: list[dict[str, Any]], start: list[dict[str, Any]] | None) -> list[dict[str, Any] | None]:
    """The starting model's sample for each of ``samples``: by ``uid`` where both have one, else by position
    where the question and gold answer are the same (an evaluation scores its examples in a fixed order)."""
    if not start:
        return [None] * len(samples)
    by_uid = {s["uid"]: s for s in start if isinstance(s, dict) and s.get("uid") is not None}
    out: list[dict[str, Any] | None] = []
    for i, sample in enumerate(samples):
        if sample.get("uid") is not None and by_uid:
            out.append(by_uid.get(sample["uid"]))
            continue
        other = start[i] if i < len(start) and isinstance(start[i], dict) else None
        q, g, _ = text_fields(sample)
        same = other is not None and all(other.get(name) == sample.get(name) for name in (q, g) if name)
        out.append(other if same else None)
    return out


def _sample(sample: dict[str, Any], other: dict[str, Any] | None) -> Sample:
    q, g, o = text_fields(sample)
    used = {q, g, o, "uid"}
    start_scores = _scores(other, used) if other else {}
    scores = [(k, v, start_scores.get(k)) for k, v in _scores(sample, used).items()]
    meta = [(k, v) for k, v in sample.items() if k not in used and isinstance(v, str | int) and not isinstance(v, bool)]
    start_output = _first(other, (text_fields(other)[2],))[1] if other and text_fields(other)[2] else None
    return Sample(*(str(sample[name]) if name else None for name in (q, g, o)), start_output, scores, meta,
                  str(sample["uid"]) if sample.get("uid") is not None else None)


def part_samples(path: Path, start_dir: Path | None, max_samples: int) -> list[PartSamples]:
    """The samples of one part file beside the starting run's same part: one group when ``samples`` is a list,
    one per key when it is an object of lists (e.g. harmful / harmless prompts); empty when it holds none."""
    data = _read_optional(path)
    if not isinstance(data, dict):
        return []
    groups = data.get("samples")
    start_data = _read_optional(start_dir / "eval" / path.name) if start_dir else None
    start_groups = start_data.get("samples") if isinstance(start_data, dict) else None
    if isinstance(groups, list):
        groups, start_groups = {"": groups}, {"": start_groups}
    if not isinstance(groups, dict):
        return []
    role = next((str(data[k]) for k in ("role", "set", "split") if isinstance(data.get(k), str)), path.stem)
    aggregate = {k: v for k, v in (data.get("aggregate") or {}).items() if isinstance(v, int | float | str)} \
        if isinstance(data.get("aggregate"), dict) else {}
    parts = []
    for key, group in groups.items():
        samples = [s for s in group if isinstance(s, dict)] if isinstance(group, list) else []
        if not samples:
            continue
        start = (start_groups or {}).get(key) if isinstance(start_groups, dict) else None
        pairs = _pair(samples, [s for s in start if isinstance(s, dict)] if isinstance(start, list) else None)
        shown = [_sample(sample, other) for sample, other in zip(samples[:max_samples], pairs, strict=False)]
        parts.append(PartSamples(f"{path.stem}/{key}" if key else path.stem, role, len(samples), shown,
                                 aggregate if not key else {}, sum(p is not None for p in pairs)))
    return parts


def _part_order(part: PartSamples) -> tuple[int, str]:
    words = f"{part.name} {part.role}".lower()
    return next((i for i, word in enumerate(FORGET_FIRST) if word in words), len(FORGET_FIRST)), part.name


def run_page(run_dir: Path, slug: str, max_samples: int) -> RunPage | None:
    """A run's page data, or None when its ``run.json`` cannot be read."""
    info = _read_optional(run_dir / RUN_FILE)
    if not isinstance(info, dict):
        return None
    start = starting_run(run_dir, info)
    parts = [part for path in sorted((run_dir / "eval").glob("*.json"))
             if path.name not in ("summary.json", "selection.json") for part in part_samples(path, start, max_samples)]
    config = run_dir / "config.yaml"
    return RunPage(slug, run_dir, str(info.get("benchmark", "")), info, _read_optional(run_dir / IDENTITY_FILE),
                   config.read_text(encoding="utf-8") if config.is_file() else "",
                   read_train_log(run_dir / "train_log.jsonl"), sorted(parts, key=_part_order), start)
