"""SafeEraser's bootstrap intervals on a hand-made evaluation: records resampled within their split, each column's
interval equal to scipy's percentile interval over the same draws of per-record counts, general accuracies and an
incomplete judge without one, and the table cell ``value ± half-width``."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from results_collect import _cell, _cell_with_spread
from safeeraser import judges
from safeeraser.benchmark import SafeEraserTask
from safeeraser.evaluate import SPLITS, SplitSettings, aggregate_split, metric_terms, record_of, resample_splits
from unlearning.compat import Compat
from unlearning.evaluation.intervals import BootstrapSettings, add_intervals
from unlearning.evaluation.schema import table_metrics
from unlearning.inference.decoding import Decoding

SETTINGS = BootstrapSettings(1000, 4, 0.9)
RUN = {"kind": "forget", "method": "ga", "split": "train"}

# Per split, per record: (unsafe, refusal) judgments of its two harmful answers, its SD twins' "normal"
# judgments, and its harmless answers' (ROUGE-L, judge score out of 10). None: an unreadable reply.
RECORDS = {
    "train": [([(1.0, 0.0), (1.0, 0.0)], [1.0, 1.0], [(0.9, 8.0), (0.7, 6.0)]),
              ([(0.0, 1.0), (0.0, 1.0)], [0.0, 1.0], [(0.2, 2.0), (0.4, 4.0)]),
              ([(1.0, 0.0), (0.0, None)], [1.0, 0.0], [(0.5, 5.0), (0.5, 5.0)]),
              ([(0.0, 1.0), (1.0, 0.0)], [1.0, 1.0], [(1.0, 9.0), (0.0, 1.0)]),
              ([(0.0, 0.0), (0.0, 1.0)], [0.0, 0.0], [(0.3, 3.0), (0.6, None)]),
              ([(1.0, 0.0), (1.0, 0.0)], [1.0, 1.0], [(0.8, 7.0), (0.9, 8.0)])],
    "val": [([(1.0, 0.0), (0.0, 1.0)], [1.0, 0.0], [(0.6, 6.0), (0.1, 1.0)]),
            ([(0.0, 1.0), (0.0, 1.0)], [0.0, 0.0], [(0.4, 4.0), (0.2, 2.0)]),
            ([(1.0, 0.0), (1.0, 0.0)], [1.0, None], [(0.9, 9.0), (0.8, 8.0)]),
            ([(0.0, None), (1.0, 0.0)], [1.0, 1.0], [(0.0, 0.0), (0.5, 5.0)]),
            ([(1.0, 0.0), (0.0, 0.0)], [0.0, 1.0], [(0.7, 7.0), (0.3, 3.0)])],
}


def judged(value: float | None) -> dict:
    return {"value": value, "judge_reply": "x", "judge_failed": False}


def split_samples(split: str) -> dict[str, list[dict]]:
    """The split's answers as ``score_split`` stores them (offline verdicts equal to the judge's where readable).
    Records are numbered so that sorting their names (the draws' order) differs from their order here."""
    harmful, sd, harmless = [], [], []
    for number, (unsafe_refusal, normal, scored) in enumerate(RECORDS[split]):
        index = 10 - number  # "train/10", "train/9", ...: sorted as text, not in this order
        for j, (unsafe, refusal) in enumerate(unsafe_refusal):
            harmful.append({"uid": f"{split}/{index}/{j}", "empty": False, "unsafe": judged(unsafe),
                            "refusal": judged(refusal), "offline": {"unsafe": unsafe, "refusal": refusal or 0.0}})
            sd.append({"uid": f"{split}/{index}/{j}", "empty": False, "normal": judged(normal[j]),
                       "offline": {"normal": normal[j] if normal[j] is not None else 0.0}})
        for key, (rouge, score) in zip(("h1", "h2/x"), scored, strict=True):  # a question key holding "/"
            harmless.append({"uid": f"{split}/{index}/{key}", "empty": False, "empty_reference": False,
                             "rougeL": rouge, "score": judged(None if score is None else score / 10)})
    return {"harmful": harmful, "sd": sd, "harmless": harmless}


def split_settings(judge: str = "judge-model", mode: str = "default") -> SplitSettings:
    decoding = Decoding(max_new_tokens=8)
    return SplitSettings(decoding, decoding, 4, Compat.of("safeeraser", mode), 0.0, judges.OfflineJudge(), judge)


def evaluated(judged_run: bool, general: dict | None = None) -> tuple[dict, dict]:
    """(summary with its typed metrics, part results) as the runner would have them."""
    results: dict = {}
    for split in SPLITS:
        samples = split_samples(split)
        aggregate, by_metric = aggregate_split(samples["harmful"], samples["sd"], samples["harmless"], judged_run,
                                               split_settings() if judged_run else split_settings("offline"))
        results[split] = {"aggregate": aggregate, "judge_by_metric": by_metric, "samples": samples}
    if general:
        results["general"] = general
    summary = {"splits": {split: results[split]["aggregate"] for split in SPLITS},
               "judge": {"status": "scored", **{split: results[split]["judge_by_metric"] for split in SPLITS}},
               "judged_by": results["train"]["aggregate"]["judged_by"],
               "general": {k: v for k, v in general.items() if k != "fingerprint"} if general else None}
    summary["metrics"] = table_metrics(SafeEraserTask.report, SafeEraserTask.table_rows(RUN, summary), summary)
    return summary, results


def add(summary: dict, results: dict, tmp_path: Path) -> dict:
    return add_intervals(summary, results, None, lambda r, _, s: resample_splits(r, s, Compat.of("safeeraser")),
                         lambda s: table_metrics(SafeEraserTask.report, SafeEraserTask.table_rows(RUN, s), s),
                         SETTINGS, tmp_path, "summary.json", True)


def per_record(split: str, kind: str, value) -> tuple[np.ndarray, np.ndarray]:
    """Per record, in the draws' order (sorted names), the sum of its counted values and how many it has."""
    samples = split_samples(split)[kind]
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for sample in samples:
        unit, v = record_of(sample["uid"]), value(sample)
        sums.setdefault(unit, 0.0)
        counts.setdefault(unit, 0.0)
        if v is not None:
            sums[unit] += v
            counts[unit] += 1
    names = sorted(sums)
    return np.array([sums[n] for n in names]), np.array([counts[n] for n in names])


def scipy_interval(split: str, sums: np.ndarray, counts: np.ndarray, scale: float = 100.0) -> tuple[float, float]:
    """scipy's percentile bootstrap of the ratio of summed values to summed counts over resampled records, with
    the generator the engine gives the split's stratum."""
    result = stats.bootstrap((sums, counts), lambda s, c, axis=-1: scale * s.sum(axis) / c.sum(axis), paired=True,
                             vectorized=True, n_resamples=SETTINGS.resamples, confidence_level=SETTINGS.confidence,
                             method="percentile", batch=None,
                             rng=np.random.default_rng([SETTINGS.seed, zlib.crc32(split.encode())]))
    return result.confidence_interval.low, result.confidence_interval.high


def test_points_are_the_hand_counts():
    summary, _ = evaluated(True)
    train, val = summary["splits"]["train"], summary["splits"]["val"]
    assert train["asr"] == pytest.approx(6 / 12) and train["rr"] == pytest.approx(4 / 11)  # one unreadable reply
    assert val["sarr"] == pytest.approx(4 / 9) and val["rougeL"] == pytest.approx(4.5 / 10)
    assert record_of("train/10/h2/x") == "train/10"


@pytest.mark.parametrize("mode", ["default", "official"])
@pytest.mark.parametrize("judged_run", [True, False])
def test_resampled_parts_average_to_the_point_value(mode: str, judged_run: bool):
    """What a resample weighs (the counted answers, each one's part) gives the point value with every record drawn
    once, under the original's counting too (unreadable replies in the denominator, empty answers left out)."""
    samples = split_samples("train")
    samples["harmful"][0].update(empty=True, unsafe={"value": None, "empty_answer": True})
    samples["sd"][1].update(empty=True, normal={"value": None, "empty_answer": True})
    settings = split_settings("judge-model" if judged_run else "offline", mode)
    aggregate, _ = aggregate_split(samples["harmful"], samples["sd"], samples["harmless"], judged_run, settings)
    terms = metric_terms(samples, judged_run, settings.compat)
    assert terms.keys() == ({"asr", "rr", "sarr", "rougeL", "score"} if judged_run else {"asr", "rr", "sarr", "rougeL"})
    for name, (answers, parts) in terms.items():
        present = [p for p in parts if p is not None]
        assert len(answers) == len(parts) and sum(present) / len(present) == pytest.approx(aggregate[name]), name


@pytest.mark.parametrize("judged_run", [True, False])
def test_every_column_equals_scipys_interval_over_records(judged_run: bool, tmp_path: Path):
    summary, results = evaluated(judged_run)
    block = add(summary, results, tmp_path)
    assert block["strata"].keys() == {"train", "val"}
    assert block["strata"]["train"]["units"] == 6 and block["strata"]["val"]["units"] == 5
    metrics = summary["metrics"]["all"]
    key = "" if judged_run else "offline"

    def verdict(name: str):
        return lambda s: s[name]["value"] if judged_run else s["offline"][name]

    expected = {
        "Efficacy ASR": scipy_interval("train", *per_record("train", "harmful", verdict("unsafe"))),
        "Generality ASR": scipy_interval("val", *per_record("val", "harmful", verdict("unsafe"))),
        "RR": scipy_interval("train", *per_record("train", "harmful", verdict("refusal"))),
        "SARR": scipy_interval("val", *per_record("val", "sd", lambda s: None if (v := verdict("normal")(s)) is None
                                                  else 1.0 - v)),
        "ROUGE-L": scipy_interval("val", *per_record("val", "harmless", lambda s: s["rougeL"])),
    }
    if judged_run:
        expected["Judge"] = scipy_interval("val", *per_record("val", "harmless", lambda s: s["score"]["value"]))
    else:
        assert metrics["Judge"]["value"] is None and metrics["Judge"]["interval"] is None, key
    for column, interval in expected.items():
        assert metrics[column]["interval"] == pytest.approx(list(interval), rel=1e-12, abs=1e-12), column
        low, high = metrics[column]["interval"]
        assert low <= metrics[column]["value"] <= high, column
    for column in ("MME", "POPE", "Specificity"):
        assert metrics[column]["interval"] is None


def test_general_accuracies_and_an_incomplete_judge_get_no_interval(tmp_path: Path):
    general = {"fingerprint": {}, "mme": {"accuracy": 0.6, "n": 10}, "pope": {"accuracy": 0.8, "n": 10}}
    summary, results = evaluated(True, general)
    results["val"]["samples"]["harmless"][0]["score"] = {"value": None, "judge_failed": True, "judge_reply": None,
                                                         "judge_error": "HTTP 500"}
    samples = results["val"]["samples"]
    aggregate, by_metric = aggregate_split(samples["harmful"], samples["sd"], samples["harmless"], True,
                                           split_settings())
    results["val"].update(aggregate=aggregate, judge_by_metric=by_metric)
    summary["splits"]["val"], summary["judge"]["val"] = aggregate, by_metric
    summary["metrics"] = table_metrics(SafeEraserTask.report, SafeEraserTask.table_rows(RUN, summary), summary)
    add(summary, results, tmp_path)
    metrics = summary["metrics"]["all"]
    assert metrics["MME"]["value"] == pytest.approx(60.0) and metrics["Specificity"]["value"] == pytest.approx(80)
    assert all(metrics[c]["interval"] is None for c in ("MME", "POPE", "Specificity", "Judge"))
    assert metrics["Generality ASR"]["interval"] is not None  # the complete metrics keep theirs
    assert (tmp_path / "bootstrap.npz").is_file()


def test_table_cell_shows_value_plus_minus_half_width(tmp_path: Path):
    summary, results = evaluated(False)
    add(summary, results, tmp_path)
    metric = summary["metrics"]["all"]["Efficacy ASR"]
    low, high = metric["interval"]
    row = {"Efficacy ASR": metric["value"], "intervals": {"Efficacy ASR": metric["interval"]}}
    assert _cell_with_spread(row, "Efficacy ASR") == f"{_cell(metric['value'])} ± {_cell((high - low) / 2)}"
