"""EFUF's bootstrap intervals on hand-made captions: images resampled, CHAIR_i a ratio of the drawn captions' summed
counts (checked by hand), each column's interval equal to scipy's percentile interval over the same draws, MME and
POPE without one, and the table cell ``value ± half-width``."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from efuf.benchmark import EfufTask
from efuf.chair import CaptionChair, chair_scores, weighted_chair
from efuf.evaluate import STRATUM, aggregate, resample_captions
from results_collect import _cell, _cell_with_spread
from unlearning.evaluation.intervals import BootstrapSettings, Resampler, add_intervals
from unlearning.evaluation.schema import table_metrics

SETTINGS = BootstrapSettings(1000, 2, 0.95)
RUN = {"kind": "forget", "method": "efuf_sentence", "split": "curated"}

# Per image: (object words mentioned, of which hallucinated, BLEU-1, words). Named so that their sorted order (the
# draws' order) is not the order here.
CAPTIONS = {"img_7": (["dog", "frisbee", "tree"], ["tree"], 0.61, 40),
            "img_3": (["car"], [], 0.55, 35),
            "img_9": ([], [], 0.20, 12),
            "img_1": (["cat", "bed", "lamp", "book"], ["lamp", "book"], 0.48, 52),
            "img_5": (["bus", "person"], [], 0.70, 44),
            "img_2": (["pizza", "knife"], ["knife"], 0.33, 28)}


def samples() -> list[dict]:
    return [{"image": image, "caption": "…", "truth": [], "mentioned": [[w, w] for w in mentioned],
             "hallucinated": [[w, w] for w in hallucinated], "bleu1": bleu, "bleu2": bleu / 2, "bleu4": bleu / 4,
             "length": length}
            for image, (mentioned, hallucinated, bleu, length) in CAPTIONS.items()]


def evaluated(general: dict | None = None) -> tuple[dict, dict]:
    results: dict = {"captions": {"aggregate": aggregate(samples()), "samples": samples()}}
    if general:
        results["general"] = general
    summary = {"captions": results["captions"]["aggregate"],
               "general": {k: v for k, v in general.items() if k != "fingerprint"} if general else None}
    summary["metrics"] = table_metrics(EfufTask.report, EfufTask.table_rows(RUN, summary), summary)
    return summary, results


def add(summary: dict, results: dict, tmp_path: Path) -> dict:
    return add_intervals(summary, results, None, lambda r, _, s: resample_captions(r, s),
                         lambda s: table_metrics(EfufTask.report, EfufTask.table_rows(RUN, s), s),
                         SETTINGS, tmp_path, "summary.json", True)


def per_image(value) -> np.ndarray:
    """A per-image number in the draws' order (sorted image names)."""
    return np.array([value(*CAPTIONS[image]) for image in sorted(CAPTIONS)], dtype=float)


def scipy_interval(statistic, *data: np.ndarray) -> tuple[float, float]:
    result = stats.bootstrap(data, statistic, paired=True, vectorized=True, n_resamples=SETTINGS.resamples,
                             confidence_level=SETTINGS.confidence, method="percentile", batch=None,
                             rng=np.random.default_rng([SETTINGS.seed, zlib.crc32(STRATUM.encode())]))
    return result.confidence_interval.low, result.confidence_interval.high


def test_chair_i_is_a_ratio_of_sums_per_resample():
    """Hand-made weights: caption A (2 mentioned, 1 hallucinated) twice and C (3 mentioned, none) once give
    CHAIR_i = 2/7, not the mean of per-caption ratios (1/3); a resample drawing only captions without objects
    gets 0, as the point value does."""
    captions = [CaptionChair((("a", "a"), ("b", "b")), (("b", "b"),)), CaptionChair((), ()),
                CaptionChair((("c", "c"), ("d", "d"), ("e", "e")), ())]
    scores = weighted_chair(np.array([[2, 0, 1], [0, 3, 0], [1, 1, 1]]), captions)
    assert scores["chair_i"].tolist() == pytest.approx([2 / 7, 0.0, 1 / 5])
    assert scores["chair_s"].tolist() == pytest.approx([2 / 3, 0.0, 1 / 3])
    assert scores["chair_i"][2] == chair_scores(captions)["chair_i"]


def test_resampled_chair_i_by_hand():
    """Resample b's CHAIR_i is the drawn images' hallucinated words over their mentioned words, images counted
    as often as drawn."""
    _, results = evaluated()
    resampler = Resampler(SETTINGS)
    replicates = resample_captions(results, resampler)
    draws = np.random.default_rng([SETTINGS.seed, zlib.crc32(STRATUM.encode())]).integers(
        0, len(CAPTIONS), (SETTINGS.resamples, len(CAPTIONS)))
    names = sorted(CAPTIONS)
    for b in (0, 1, 500, 999):
        drawn = [CAPTIONS[names[i]] for i in draws[b]]
        mentioned = sum(len(m) for m, *_ in drawn)
        hallucinated = sum(len(h) for _, h, *_ in drawn)
        assert replicates["captions.chair_i"][b] == pytest.approx(hallucinated / mentioned if mentioned else 0.0)
        assert replicates["captions.chair_s"][b] == pytest.approx(sum(bool(h) for _, h, *_ in drawn) / len(drawn))


def test_every_column_equals_scipys_interval_over_images(tmp_path: Path):
    summary, results = evaluated()
    block = add(summary, results, tmp_path)
    assert block["strata"] == {STRATUM: {"units": 6, "hash": block["strata"][STRATUM]["hash"]}}
    metrics = summary["metrics"]["all"]
    assert metrics["CHAIR_i"]["value"] == pytest.approx(100 * 4 / 12)
    hallucinated, mentioned = per_image(lambda m, h, *_: len(h)), per_image(lambda m, h, *_: len(m))
    expected = {
        "CHAIR_i": scipy_interval(lambda h, m, axis=-1: 100 * h.sum(axis) / m.sum(axis), hallucinated, mentioned),
        "CHAIR_s": scipy_interval(lambda x, axis=-1: 100 * x.mean(axis), per_image(lambda m, h, *_: float(bool(h)))),
        "BLEU-1": scipy_interval(lambda x, axis=-1: 100 * x.mean(axis), per_image(lambda m, h, bleu, n: bleu)),
        "BLEU-4": scipy_interval(lambda x, axis=-1: 100 * x.mean(axis), per_image(lambda m, h, bleu, n: bleu / 4)),
        "Length": scipy_interval(lambda x, axis=-1: x.mean(axis), per_image(lambda m, h, bleu, n: n)),
        "Grounded": scipy_interval(lambda x, axis=-1: x.mean(axis), mentioned - hallucinated),
    }
    for column, interval in expected.items():
        assert metrics[column]["interval"] == pytest.approx(list(interval), rel=1e-12, abs=1e-12), column
        low, high = metrics[column]["interval"]
        assert low <= metrics[column]["value"] <= high, column
    assert metrics["BLEU-2"]["interval"] is not None
    assert metrics["MME"]["interval"] is None and metrics["POPE"]["interval"] is None


def test_general_accuracies_get_no_interval_and_the_cell_shows_the_half_width(tmp_path: Path):
    summary, results = evaluated({"fingerprint": {}, "pope": {"accuracy": 0.85, "n": 20}})
    add(summary, results, tmp_path)
    metrics = summary["metrics"]["all"]
    assert metrics["POPE"]["value"] == pytest.approx(85.0) and metrics["POPE"]["interval"] is None
    metric = metrics["CHAIR_i"]
    low, high = metric["interval"]
    row = {"CHAIR_i": metric["value"], "intervals": {"CHAIR_i": metric["interval"]}}
    assert _cell_with_spread(row, "CHAIR_i") == f"{_cell(metric['value'])} ± {_cell((high - low) / 2)}"


def test_no_captions_no_interval(tmp_path: Path):
    results = {"captions": {"aggregate": aggregate([]), "samples": []}}
    replicates = resample_captions(results, Resampler(SETTINGS))
    assert all(np.isnan(values).all() for values in replicates.values()) and "captions.chair_i" in replicates
