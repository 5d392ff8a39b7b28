"""The engine's bootstrap: scipy's percentile intervals on a hand-made sample, draws shared per stratum, paired
differences."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from unlearning.evaluation.intervals import (
    BootstrapSettings,
    Resampler,
    bootstrap_interval,
    metric_replicates,
    paired_difference,
    percentile_interval,
    read_replicates,
    replicates_file,
    with_values,
    write_replicates,
)

# Hand-made: skewed, with ties, small enough that intervals differ visibly between statistics.
SAMPLE = [0.1, 0.4, 0.4, 0.9, 1.7, 2.2, 2.3, 3.5, 5.0, 8.25, 0.0, 0.4]


def scipy_interval(sample, statistic, settings: BootstrapSettings) -> tuple[float, float]:
    result = stats.bootstrap((np.asarray(sample),), statistic, n_resamples=settings.resamples,
                             confidence_level=settings.confidence, method="percentile", batch=None,
                             rng=np.random.default_rng(settings.seed))
    return result.confidence_interval.low, result.confidence_interval.high


@pytest.mark.parametrize("statistic", [np.mean, np.median, np.std])
@pytest.mark.parametrize("settings", [BootstrapSettings(), BootstrapSettings(2000, 7, 0.9)])
def test_bootstrap_equals_scipy_percentile(statistic, settings: BootstrapSettings):
    ours = bootstrap_interval(SAMPLE, statistic, settings)
    assert ours == pytest.approx(scipy_interval(SAMPLE, statistic, settings), rel=1e-12, abs=1e-12)


def test_resampler_mean_is_scipys_mean_with_one_sample_per_unit():
    """Counts per unit give the same resampled means as scipy's index draws, from the stratum's generator."""
    settings = BootstrapSettings(1000, 3)
    units = [f"u{i:02d}" for i in range(len(SAMPLE))]
    resampler = Resampler(settings)
    replicates = resampler.mean("forget", units, SAMPLE)
    scipy_result = stats.bootstrap((np.asarray(SAMPLE),), np.mean, n_resamples=1000, method="percentile",
                                   batch=None, rng=np.random.default_rng([3, _crc("forget")]))
    scipy_distribution = scipy_result.bootstrap_distribution
    assert replicates == pytest.approx(scipy_distribution, rel=1e-12)


def _crc(name: str) -> int:
    import zlib

    return zlib.crc32(name.encode())


def test_units_are_resampled_whole():
    """Samples of one unit move together: a unit's two samples are drawn equally often in every resample."""
    resampler = Resampler(BootstrapSettings(200, 1))
    units = ["a", "a", "b", "b", "c"]
    weights = resampler.weights("forget", units)
    assert np.array_equal(weights[:, 0], weights[:, 1]) and np.array_equal(weights[:, 2], weights[:, 3])
    assert np.all(weights[:, [0, 2, 4]].sum(axis=1) == 3)  # three units drawn per resample
    # a stratum's draws do not depend on the order of its samples, nor on the other strata drawn before it
    other = Resampler(BootstrapSettings(200, 1))
    other.counts("retain", ["x", "y"])
    assert np.array_equal(other.weights("forget", list(reversed(units))), weights[:, ::-1])


def test_mean_skips_missing_values_as_the_point_does():
    resampler = Resampler(BootstrapSettings(50, 0))
    replicates = resampler.mean("s", ["a", "b", "c"], [1.0, None, float("nan")])
    assert np.all((replicates == 1.0) | np.isnan(replicates))


def test_composite_metrics_are_recomputed_per_resample():
    """The table code runs on each resample's summary: a column combining two fields moves with both."""
    summary = {"retain": {"a": 0.5, "b": 0.25}, "other": 1}

    def metrics(s):
        return {"all": {"sum": {"value": s["retain"]["a"] + s["retain"]["b"]}, "fixed": {"value": s["other"]}}}

    table = metric_replicates(summary, {"retain.a": np.array([0.0, 1.0]), "retain.b": np.array([1.0, 2.0])},
                              metrics, 2)
    assert table["all"]["sum"].tolist() == [1.0, 3.0] and table["all"]["fixed"].tolist() == [1.0, 1.0]
    assert summary == {"retain": {"a": 0.5, "b": 0.25}, "other": 1}  # the point summary is untouched
    assert with_values(summary, {"retain.a": 2})["retain"] == {"a": 2, "b": 0.25}


def test_undefined_resamples_give_no_interval():
    assert percentile_interval(np.array([1.0, np.nan, 2.0]), 0.95) is None
    assert percentile_interval(np.array([1.0, 2.0, 3.0]), 0.5) == (1.5, 2.5)


def test_paired_difference_of_a_run_with_itself_is_zero_with_p_one():
    replicates = np.random.default_rng(0).normal(size=1000)
    same = paired_difference(0.3, 0.3, replicates, replicates.copy(), 0.95)
    assert same == {"difference": 0.0, "interval": [0.0, 0.0], "p_value": 1.0}
    apart = paired_difference(1.0, 0.0, replicates + 5, replicates, 0.95)
    assert apart["p_value"] == pytest.approx(2 / 1001) and apart["interval"] == [5.0, 5.0]


def test_replicates_round_trip(tmp_path):
    table = {"all": {"KS": np.arange(4.0), "EM": np.ones(4)}, "text-only": {"KS": np.zeros(4)}}
    write_replicates(tmp_path / "bootstrap.npz", table)
    back = read_replicates(tmp_path / "bootstrap.npz")
    assert {row: {k: v.tolist() for k, v in cols.items()} for row, cols in back.items()} == \
        {row: {k: v.tolist() for k, v in cols.items()} for row, cols in table.items()}
    assert replicates_file("summary.json") == "bootstrap.npz"
    assert replicates_file("summary.forget5.json") == "bootstrap.forget5.npz"


@pytest.mark.parametrize("bad", [{"resamples": -1}, {"confidence": 1.0}, {"seed": "x"}, {"resample": 10}])
def test_bad_settings_are_named(bad):
    with pytest.raises(ValueError, match="eval.bootstrap"):
        BootstrapSettings.from_config(bad)


def test_a_metric_resting_on_one_unit_gets_no_interval(tmp_path):
    """Resampling a stratum of one unit draws it every time: its metrics (and those combining them) would get an
    interval of width 0, so they get none and say why; the other strata's keep theirs."""
    from unlearning.evaluation.intervals import SINGLE_UNIT_NOTE, add_intervals

    results = {"forget": {"units": ["p1", "p1"], "values": [0.2, 0.6]},
               "retain": {"units": ["r1", "r2", "r3"], "values": [0.1, 0.5, 0.9]}}

    def replicate(parts, reference_dir, resampler):
        return {f"{name}.mean": resampler.mean(name, part["units"], part["values"]) for name, part in parts.items()}

    def metrics(s):  # as a benchmark's table code: a field without a value (None) gives a metric without one
        forget, retain = s["forget"]["mean"], s["retain"]["mean"]
        gap = None if forget is None or retain is None else retain - forget
        return {"all": {"forget": {"value": forget}, "retain": {"value": retain}, "gap": {"value": gap},
                        "fixed": {"value": 3.0}}}

    summary = {"forget": {"mean": 0.4}, "retain": {"mean": 0.5}}
    summary["metrics"] = {row: {name: {**m, "interval": None, "note": None} for name, m in columns.items()}
                          for row, columns in metrics(summary).items()}
    block = add_intervals(summary, results, None, replicate, metrics, BootstrapSettings(200), tmp_path,
                          "summary.json", write=False)
    row = summary["metrics"]["all"]
    assert block["single_unit_strata"] == ["forget"]
    assert row["forget"]["interval"] is None and row["forget"]["note"] == SINGLE_UNIT_NOTE
    assert row["gap"]["interval"] is None  # combines the one-unit stratum
    low, high = row["retain"]["interval"]
    assert low < 0.5 < high and row["retain"]["note"] is None
    assert row["fixed"]["interval"] == [3.0, 3.0]  # rests on no stratum: its interval is its value

    results["forget"]["units"] = ["p1", "p2"]  # two units: an interval again
    summary["metrics"]["all"]["forget"].update(interval=None, note=None)
    block = add_intervals(summary, results, None, replicate, metrics, BootstrapSettings(200), tmp_path,
                          "summary.json", write=False)
    assert "single_unit_strata" not in block
    assert summary["metrics"]["all"]["forget"]["interval"] == [0.2, 0.6]  # means of {0.2, 0.6} drawn twice


def test_each_is_undefined_where_a_resample_draws_nothing():
    """A statistic of no samples (a KS test of an empty set) is never called: the resample is NaN, as ``mean``."""
    from unlearning.evaluation.intervals import PointResampler, RestrictedResampler

    def statistic(positions):
        if not len(positions):
            raise ValueError("empty")
        return float(len(positions))

    none_kept = RestrictedResampler(PointResampler(), lambda stratum, unit: False)
    assert np.isnan(none_kept.each("forget", ["a", "a", "b"], statistic)).all()
    assert PointResampler().each("forget", ["a", "a", "b"], statistic).tolist() == [3.0]


def test_when_the_one_unit_check_cannot_run_no_metric_claims_an_interval(tmp_path, caplog):
    """Benchmark code that cannot compute without the one-unit stratum: every metric is left without an interval,
    with a warning, rather than some keeping a width-0 one."""
    from unlearning.evaluation.intervals import SINGLE_UNIT_NOTE, add_intervals

    results = {"forget": {"units": ["p1"], "values": [0.4]}, "retain": {"units": ["r1", "r2"], "values": [0.1, 0.9]}}

    def replicate(parts, reference_dir, resampler):
        weights = resampler.weights("forget", parts["forget"]["units"])
        if not weights.any():
            raise ValueError("no forget sample drawn")
        return {f"{name}.mean": resampler.mean(name, part["units"], part["values"]) for name, part in parts.items()}

    def metrics(s):
        return {"all": {"forget": {"value": s["forget"]["mean"]}, "retain": {"value": s["retain"]["mean"]}}}

    summary = {"forget": {"mean": 0.4}, "retain": {"mean": 0.5}}
    summary["metrics"] = {"all": {name: {**m, "interval": None, "note": None}
                                  for name, m in metrics(summary)["all"].items()}}
    with caplog.at_level("WARNING"):
        block = add_intervals(summary, results, None, replicate, metrics, BootstrapSettings(100), tmp_path,
                              "summary.json", write=False)
    assert block["single_unit_strata"] == ["forget"] and "could not be told apart" in caplog.text
    assert all(m["interval"] is None and m["note"] == SINGLE_UNIT_NOTE for m in summary["metrics"]["all"].values())
