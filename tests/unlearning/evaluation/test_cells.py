"""The tables' number format and ``value ± half-width`` cells, against hand-written strings."""

from __future__ import annotations

import math

import pytest

from unlearning.evaluation.cells import half_width, number, row_intervals, with_spread


def test_number_follows_one_rule_for_every_magnitude():
    assert [number(v) for v in (64.07936, 0.5, 0.0, 9.547e-06, -5.02, math.nan, None, True, 30)] == [
        "64.08", "0.500", "0.000", "9.55e-06", "-5.02", "nan", "n/a", "true", "30"]


def test_a_cell_shows_the_half_width_of_its_interval_or_the_seed_spread():
    assert half_width([54.865, 76.651]) == pytest.approx(10.893)
    assert with_spread(64.07936, [54.865, 76.651]) == "64.08 ± 10.89"
    assert with_spread(64.07936, [54.865, 76.651], spread=2.5) == "64.08 ± 2.50"  # mean ± sd over seeds wins
    assert with_spread(0.336, [0.2, 0.4]) == "0.336 ± 0.100"
    assert with_spread(64.07936, None) == "64.08"
    assert with_spread(64.07936, [None, 3.0]) == "64.08"  # an end the bootstrap could not give: no ±
    assert with_spread(30, [20.0, 40.0]) == "30"  # a count is not a measured value
    assert with_spread(None, [1.0, 2.0]) == "n/a"


def test_row_intervals_reads_the_summary_schema():
    summary = {"metrics": {"all": {"ROUGE-L": {"value": 64.0, "interval": [54.0, 76.0]},
                                   "GPT": {"value": None, "interval": None}}}}
    assert row_intervals(summary, "all") == {"ROUGE-L": [54.0, 76.0]}
    assert row_intervals(summary, "image+text") == {}
    assert row_intervals({}, "all") == {}
