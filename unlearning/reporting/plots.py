"""Interactive plots as HTML fragments: plotly figures written as JSON and drawn by plotly's JavaScript, which
the page loads once from the report's own assets folder, so nothing is fetched when it opens. The figures are
plain dicts (plotly's figure schema) rather than ``plotly.graph_objects``: the same figure, without validating
every property of every trace, which costs seconds over a few dozen run pages."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

from unlearning.reporting.collect import Table

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
# Training-log keys that are bookkeeping, not curves worth showing first (still one click away in the legend).
SECONDARY_KEYS = ("epoch", "lr", "step_seconds", "tokens_per_second", "grad_norm")
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173")
AXIS = {"gridcolor": "#e5e8eb", "zerolinecolor": "#c8ccd0", "automargin": True}
LAYOUT = {"paper_bgcolor": "#fff", "plot_bgcolor": "#fff", "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
          "font": {"size": 12}, "colorway": list(COLOURS)}


def html(figure: dict[str, Any], div_id: str, height: int) -> str:
    """A div and the script that draws ``figure`` into it (the page must load plotly.min.js first)."""
    layout = {**LAYOUT, "height": height, **figure.get("layout", {})}
    payload = json.dumps([figure["data"], layout, PLOT_CONFIG], allow_nan=False).replace("</", "<\\/")
    return (f'<div id="{div_id}" class="plotly-graph" style="height:{height}px"></div>\n'
            f'<script>Plotly.newPlot("{div_id}", ...{payload});</script>')


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _direction(better: dict[str, str], column: str) -> str:
    return {"higher": " (higher is better)", "lower": " (lower is better)"}.get(better.get(column, ""), "")


def _label(row: dict[str, Any]) -> str:
    parts = [str(row[key]) for key in ("method", "label", "eval modality") if row.get(key) not in (None, "")]
    return " ".join(parts) or str(row.get("run") or row.get("model") or "?")


def _error_bar(row: dict[str, Any], column: str, value: float) -> dict[str, Any] | None:
    interval = (row.get("intervals") or {}).get(column)
    if not isinstance(interval, list) or len(interval) != 2 or _number(interval[0]) is None \
            or _number(interval[1]) is None:
        return None
    return {"type": "data", "symmetric": False, "array": [max(interval[1] - value, 0.0)],
            "arrayminus": [max(value - interval[0], 0.0)], "thickness": 1}


def tradeoff(table: Table, x: str, y: str, log_y: bool, div_id: str) -> str | None:
    """One point per row, utility (x) against forgetting (y), each value's interval as an error bar (y's left
    out on a log axis, where an interval reaching 0 has no place)."""
    data = []
    for row in table.rows:
        vx, vy = _number(row.get(x)), _number(row.get(y))
        if vx is None or vy is None:
            continue
        if log_y:
            vy = max(vy, 1e-300)
        label = _label(row)
        trace: dict[str, Any] = {"type": "scatter", "x": [vx], "y": [vy], "mode": "markers+text", "name": label,
                                 "text": [label], "textposition": "top center", "marker": {"size": 10},
                                 "hovertemplate": f"{row.get('run', label)}<br>{x} %{{x}}<br>{y} %{{y}}<extra></extra>"}
        if error := _error_bar(row, x, vx):
            trace["error_x"] = error
        if not log_y and (error := _error_bar(row, y, vy)):
            trace["error_y"] = error
        data.append(trace)
    if not data:
        return None
    layout = {"title": {"text": f"{table.stem}: {y} against {x}"}, "showlegend": False,
              "xaxis": {**AXIS, "title": {"text": x + _direction(table.better, x)}},
              "yaxis": {**AXIS, "title": {"text": y + _direction(table.better, y)}, **({"type": "log"} if log_y
                                                                                       else {})}}
    return html({"data": data, "layout": layout}, div_id, 480)


def steps(table: Table, keys: tuple[str, ...], log_y: set[str], div_id: str) -> str | None:
    """Each of ``keys`` against the optimiser step, side by side, one line per run (and row label)."""
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in table.rows:
        name = f"{row.get('run') or row.get('model')} {row.get('label') or row.get('eval modality') or ''}".strip()
        lines[name].append(row)
    keys = tuple(key for key in keys if any(_number(row.get(key)) is not None for row in table.rows))
    if not keys:
        return None
    data, layout, gap = [], {"title": {"text": f"{table.stem}: metrics per checkpoint"}}, 0.08
    width = (1 - gap * (len(keys) - 1)) / len(keys)
    for col, key in enumerate(keys):
        suffix = "" if col == 0 else str(col + 1)
        start = col * (width + gap)
        layout[f"xaxis{suffix}"] = {**AXIS, "domain": [start, start + width], "title": {"text": "optimiser step"},
                                    "anchor": f"y{suffix}"}
        layout[f"yaxis{suffix}"] = {**AXIS, "anchor": f"x{suffix}", "title": {"text": key + _direction(table.better,
                                                                                                       key)},
                                    **({"type": "log"} if key in log_y else {})}
        for index, (name, rows) in enumerate(sorted(lines.items())):
            points = sorted((row["step"], _number(row.get(key))) for row in rows
                            if _number(row.get(key)) is not None and isinstance(row.get("step"), int))
            if points:
                data.append({"type": "scatter", "mode": "lines+markers", "x": [p[0] for p in points],
                             "y": [p[1] for p in points], "name": name, "legendgroup": name, "showlegend": col == 0,
                             "line": {"color": COLOURS[index % len(COLOURS)]}, "xaxis": f"x{suffix}",
                             "yaxis": f"y{suffix}"})
    return html({"data": data, "layout": layout}, div_id, 460)


def training(log_rows: list[dict[str, Any]], div_id: str) -> str | None:
    """Every logged number against the step; the loss terms shown, the bookkeeping one click away."""
    keys = sorted({k for row in log_rows for k, v in row.items() if k != "step" and _number(v) is not None})
    if not keys:
        return None
    data = []
    for key in keys:
        points = [(row["step"], _number(row.get(key))) for row in log_rows
                  if isinstance(row.get("step"), int) and _number(row.get(key)) is not None]
        data.append({"type": "scatter", "mode": "lines", "name": key, "x": [p[0] for p in points],
                     "y": [p[1] for p in points], **({"visible": "legendonly"} if key in SECONDARY_KEYS else {})})
    layout = {"title": {"text": "training log (click a legend entry to show or hide it)"},
              "xaxis": {**AXIS, "title": {"text": "optimiser step"}}, "yaxis": AXIS}
    return html({"data": data, "layout": layout}, div_id, 380)
