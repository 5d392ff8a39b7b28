"""The HTML report (``unlearning.reporting``) on a small results tree: two runs of the synthetic FIUBench (a
starting model and a run trained from it) laid out as the recipes write them, and the tables results_collect.py
writes. Checked twice: in the HTML text (cells, arrows, sort markup, nothing fetched from the web, per-sample
answers beside the starting model's, thumbnails) and in a real headless browser (Debian's chromium: a cell read
back from the rendered DOM, a column sorted by clicking its header, plotly drawing offline, screenshots that are
not blank). The browser tests skip when no chromium binary is installed (scripts/install_browser.bash)."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from PIL import Image, ImageStat

from unlearning.benchmarks import benchmark_class
from unlearning.recipes.common import CONFIG_DIR
from unlearning.reporting import write_report
from unlearning.reporting.collect import part_samples
from unlearning.reporting.render import cell

START, RUN = "finetune_full_0.001_24-aaaa1111", "ga_forget10_0.0005_8-bbbb2222"
GA_ROUGE, GA_HALF = 64.08, 10.89  # the GA row's ROUGE-L and its interval's half-width: "64.08 ± 10.89"
N_SAMPLES = 4


def _browser() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def _run_folder(root: Path, name: str, info: dict, data_dir: Path, examples: list, answers: list[str],
                rouge: list[float]) -> Path:
    """One run as the recipes lay it out: run.json, identity.json, config.yaml, train_log.jsonl, eval/."""
    run = root / "fiubench" / "tiny" / name
    _write_json(run / "run.json", {"benchmark": "fiubench", "model": "tiny", "git": "0123abcd",
                                   "versions": {"torch": "2.13.0+cpu"}, **info})
    _write_json(run / "identity.json", {"seed": 233, "method": info.get("method")})
    (run / "config.yaml").write_text(
        f"benchmark:\n  name: fiubench\n  options:\n    max_identities: 400\n    seed: 233\n"
        f"  forget_split: forget10\n  retain_split: retain15\ndata_dir: {data_dir}\nlr: 0.0005\n")
    (run / "train_log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s, "lr": 1e-4}) + "\n"
                                                 for s in range(1, 6)))
    _write_json(run / "eval" / "summary.json", {"benchmark": "fiubench"})
    samples = [{"uid": ex.uid, "question": ex.question, "answer": ex.answer, "generation": answer,
                "rougeL_recall": score, "exact_match": float(answer == ex.answer)}
               for ex, answer, score in zip(examples, answers, rouge, strict=True)]
    _write_json(run / "eval" / "forget10.json", {"role": "forget", "aggregate": {"rougeL_recall": 0.5},
                                                 "samples": samples})
    _write_json(run / "eval" / "retain15.json", {"role": "retain", "samples": samples[:2]})
    return run


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, fiu_dir: Path) -> dict:
    """runs/ with a starting model and a GA run from it, results/ with the tables, and the report written."""
    root = tmp_path_factory.mktemp("report")
    runs, out = root / "runs", root / "results"
    examples = benchmark_class("fiubench")(fiu_dir, max_identities=400, seed=233).stream("forget", "forget10")
    examples = examples[:N_SAMPLES]
    _run_folder(runs, START, {"kind": "finetune", "split": "full", "train": {"steps": 5}}, fiu_dir, examples,
                [ex.answer for ex in examples], [1.0] * N_SAMPLES)
    _run_folder(runs, RUN, {"kind": "forget", "method": "ga", "split": "forget10", "train": {"steps": 5},
                            "base_model": f"../{START}/checkpoint"}, fiu_dir, examples,
                ["the name is amara okafor."] * N_SAMPLES, [0.25] * N_SAMPLES)
    columns = ["model", "run", "method", "ROUGE-L", "EM", "forget quality", "MU (hmean)"]
    better = {"ROUGE-L": "higher", "EM": "lower", "forget quality": "higher", "MU (hmean)": "higher"}
    rows = [{"model": "tiny", "run": START, "method": "stage1_full", "ROUGE-L": 100.0, "EM": 95.0,
             "forget quality": 1e-5, "MU (hmean)": 77.5, "intervals": {"EM": [85.0, 100.0]}},
            {"model": "tiny", "run": RUN, "method": "ga", "ROUGE-L": GA_ROUGE, "EM": 10.0, "forget quality": 0.79,
             "MU (hmean)": 53.6, "intervals": {"ROUGE-L": [GA_ROUGE - GA_HALF, GA_ROUGE + GA_HALF]}}]
    _write_json(out / "fiubench.json", {"benchmark": "fiubench", "columns": columns, "better": better, "rows": rows})
    _write_json(out / "fiubench_steps.json", {"benchmark": "fiubench per checkpoint", "columns": ["step", *columns],
                                              "better": better,
                                              "rows": [{**row, "step": step} for row in rows[1:] for step in (2, 5)]})
    _write_json(out / "fiubench_robustness.json", {"columns": ["run", "method", "attack", "EM"],
                                                   "rows": [{"run": RUN, "method": "ga", "attack": a, "EM": e}
                                                            for a, e in (("none", 10.0), ("quantize_4bit", 35.0))]})
    index = write_report(runs, out)
    return {"runs": runs, "out": out, "index": index, "page": out / "report" / "runs" / f"{RUN}.html"}


def test_index_holds_each_table_with_intervals_arrows_and_sort_markup(world: dict):
    html = world["index"].read_text()
    assert f"{GA_ROUGE:.2f} ± {GA_HALF:.2f}" in html
    assert "EM ↓" in html and "ROUGE-L ↑" in html
    assert re.search(r'<table class="sortable results" data-table="fiubench"', html)
    assert 'data-column="ROUGE-L"' in html and f'data-sort="{GA_ROUGE!r}"' in html
    assert "fiubench_robustness" in html and "quantize_4bit" in html
    assert f'href="report/runs/{RUN}.html"' in html
    assert 'id="plot-fiubench-tradeoff"' in html and 'id="plot-fiubench-steps"' in html


def test_nothing_is_fetched_from_the_web(world: dict):
    out: Path = world["out"]
    for page in [world["index"], *sorted((out / "report" / "runs").glob("*.html"))]:
        html = page.read_text()
        assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', html), page
        for src in re.findall(r'<script src="([^"]+)"', html):
            assert (page.parent / src).is_file(), (page, src)
    assert (out / "report" / "assets" / "plotly.min.js").stat().st_size > 1_000_000


def test_run_page_shows_settings_provenance_curve_and_samples_beside_the_start(world: dict):
    html = world["page"].read_text()
    assert "lr: 0.0005" in html and "<b>lr</b> 0.0005" in html  # the config, its top-level settings first
    assert "0123abcd" in html and "2.13.0+cpu" in html  # provenance: git commit, versions
    assert 'id="plot-training"' in html
    assert f'href="{START}.html"' in html
    assert "the name is amara okafor." in html  # the unlearned model's answer
    start = (world["runs"] / "fiubench" / "tiny" / START / "eval" / "forget10.json")
    first = json.loads(start.read_text())["samples"][0]
    cells = re.findall(r'<td class="text start">(.*?)</td>', html)
    assert cells[0] == first["generation"].replace("'", "&#39;")  # the starting model's answer, matched by uid
    assert "rougeL_recall 0.250 <small>(1.00)</small>" in html
    thumbs = re.findall(r'<img class="thumb" src="\.\./img/([^"]+)"', html)
    assert len(thumbs) == N_SAMPLES + 2  # every forget row and the two retain rows
    assert all((world["out"] / "report" / "img" / name).is_file() for name in thumbs)


def test_a_failed_write_leaves_the_previous_report(world: dict, monkeypatch: pytest.MonkeyPatch):
    from unlearning.reporting import render

    before = world["index"].read_text()
    pages = sorted(p.name for p in (world["out"] / "report" / "runs").iterdir())

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(render, "_run_view", broken)
    with pytest.raises(RuntimeError):
        write_report(world["runs"], world["out"])
    assert world["index"].read_text() == before
    assert sorted(p.name for p in (world["out"] / "report" / "runs").iterdir()) == pages
    assert not [p for p in world["out"].iterdir() if p.name.startswith(".")]


def test_results_collect_writes_the_report_unless_told_not_to(world: dict, tmp_path: Path):
    import results_collect  # its entry point's body, called on the composed config as Hydra would call it

    for setting, written in (("true", True), ("false", False)):
        out = tmp_path / setting
        with initialize_config_dir(CONFIG_DIR, version_base=None):
            cfg = compose("aggregate", overrides=[f"run_root={world['runs']}", f"out_dir={out}", f"report={setting}"])
        inspect.unwrap(results_collect.main)(cfg)
        assert (out / "index.html").is_file() == written, setting
    assert f"report/runs/{RUN}.html" in (tmp_path / "true" / "index.html").read_text()


def test_cells_show_the_interval_or_the_spread_over_seeds():
    assert cell({"EM": 10.0, "intervals": {"EM": [5.0, 15.0]}}, "EM")["text"] == "10.00 ± 5.00"
    assert cell({"EM": 10.0, "sd": {"EM": 2.5}, "intervals": {}}, "EM")["text"] == "10.00 ± 2.50"
    assert cell({"EM": None}, "EM") == {"text": "n/a", "sort": "", "title": ""}
    assert cell({"method": "ga"}, "method")["sort"] == ""


def test_samples_grouped_by_kind_and_an_answer_without_an_output_field(tmp_path: Path):
    """A part whose samples are an object of lists (one group per kind of prompt) gives one group each; where a
    sample has no output field, its "answer" is the model's output and "reference" the gold answer."""
    sample = {"uid": "a/0", "question": "q?", "answer": "model says", "reference": "gold says", "rougeL": 0.5,
              "offline": {"refusal": 1.0}}
    for run, answer in (("start", "start says"), ("run", "model says")):
        _write_json(tmp_path / run / "eval" / "val.json", {"samples": {"harmless": [{**sample, "answer": answer}],
                                                                       "empty": []}})
    (part,) = part_samples(tmp_path / "run" / "eval" / "val.json", tmp_path / "start", max_samples=10)
    assert part.name == "val/harmless" and part.matched == 1
    (shown,) = part.samples
    assert (shown.question, shown.gold, shown.output, shown.start_output) == ("q?", "gold says", "model says",
                                                                              "start says")
    assert shown.scores == [("rougeL", 0.5, 0.5), ("offline.refusal", 1.0, 1.0)]


# ------------------------------------------------------------------------------------------- in a real browser

needs_browser = pytest.mark.skipif(_browser() is None, reason="no chromium binary on PATH (bash "
                                   "scripts/install_browser.bash installs Debian's): the browser checks are skipped")


def _chromium(*args: str) -> str:
    """Headless chromium with a throwaway profile; ``--virtual-time-budget`` lets the page's scripts finish."""
    with tempfile.TemporaryDirectory() as profile:
        command = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=60).stdout


def _cell_text(dom: str, table: str, run: str, column: str) -> str:
    body = dom.split(f'data-table="{table}"', 1)[1].split("</table>", 1)[0]
    row = next(r for r in body.split("<tr>") if f">{run}<" in r)
    return re.search(rf'<td data-column="{re.escape(column)}"[^>]*>(.*?)</td>', row, re.S).group(1).strip()


@needs_browser
def test_the_browser_reads_the_table_and_plotly_draws_offline(world: dict):
    dom = _chromium("--dump-dom", world["index"].as_uri())
    assert _cell_text(dom, "fiubench", RUN, "ROUGE-L") == f"{GA_ROUGE:.2f} ± {GA_HALF:.2f}"
    assert 'class="main-svg"' in dom  # plotly ran from the local assets and drew its SVG
    page = _chromium("--dump-dom", world["page"].as_uri())
    assert "the name is amara okafor." in page and 'class="main-svg"' in page


@needs_browser
def test_clicking_a_header_sorts_the_column(world: dict):
    clicker = world["out"] / "sort_check.html"  # the index, plus a script that clicks the EM header once
    click = ('<script>document.querySelector(\'table[data-table="fiubench"] th[data-column="EM"]\').click();'
             "</script></body>")
    clicker.write_text(world["index"].read_text().replace("</body>", click))
    try:
        dom = _chromium("--dump-dom", clicker.as_uri())
    finally:
        clicker.unlink()
    body = dom.split('data-table="fiubench"', 1)[1].split("</table>", 1)[0]
    assert 'aria-sort="ascending"' in body
    assert body.index(f">{RUN}<") < body.index(f">{START}<")  # EM 10 before 95: the table's order reversed


@needs_browser
@pytest.mark.parametrize("which", ["index", "page"])
def test_screenshots_are_not_blank(world: dict, which: str, tmp_path: Path):
    png = tmp_path / f"{which}.png"
    _chromium("--window-size=1200,1400", f"--screenshot={png}", world[which].as_uri())
    image = Image.open(png).convert("L")
    assert image.size == (1200, 1400)
    assert ImageStat.Stat(image).stddev[0] > 20  # text, tables and plots, not one colour
