"""The demo's shape check: expectations over a table's rows, a missing row failing, FIUBench's on tables measured
under three CPU settings and a hand-made one that does not hold."""

from __future__ import annotations

import pytest

from efuf.benchmark import EfufTask
from fiubench.benchmark import FiuBenchTask
from mllmu.benchmark import MllmuTask
from safeeraser.benchmark import SafeEraserTask
from unlearning.evaluation.shape import Expectation, check_shape, rows_by

# The demo's FIUBench table (forget ROUGE-L, retain ROUGE-L, forget quality) measured with the default (AVX-512)
# kernels, the pinned ones, the pinned ones on 8 threads (docs/reproducibility.md), and on the machine the README's
# earlier table came from: other digits, one shape.
MEASURED = {
    "avx512": {"stage1_full": (97.50, 98.75, 2.70e-4), "stage1_retain": (53.64, 98.75, 1.0),
               "ga": (50.48, 49.14, 0.012), "npo": (55.43, 55.79, 3.97e-3), "gd": (83.67, 94.08, 2.70e-4),
               "kl": (81.42, 97.50, 2.70e-4), "po": (84.79, 99.17, 3.97e-3)},
    "pinned": {"stage1_full": (99.38, 100.0, 9.55e-6), "stage1_retain": (54.68, 99.17, 1.0),
               "ga": (59.64, 64.08, 0.336), "npo": (59.43, 68.56, 0.175), "gd": (88.04, 95.46, 5.57e-5),
               "kl": (87.42, 92.46, 5.57e-5), "po": (82.64, 98.33, 3.97e-3)},
    "readme_machine": {"stage1_full": (100.0, 100.0, 1.33e-6), "stage1_retain": (54.27, 99.03, 1.0),
                       "ga": (52.43, 59.10, 3.97e-3), "npo": (46.93, 58.37, 0.012), "gd": (83.67, 99.17, 5.57e-5),
                       "kl": (85.54, 98.08, 2.70e-4), "po": (94.79, 99.52, 2.70e-4)},
    "pinned_8_threads": {"stage1_full": (100.0, 100.0, 1.12e-3), "stage1_retain": (57.56, 100.0, 1.0),
                         "ga": (51.39, 57.67, 0.336), "npo": (51.18, 61.48, 0.175), "gd": (87.42, 95.61, 1.12e-3),
                         "kl": (84.92, 92.87, 3.97e-3), "po": (91.46, 100.0, 3.97e-3)},
}


def table(values: dict[str, tuple[float, float, float]]) -> list[dict]:
    return [{"method": method, "forget ROUGE-L": f, "ROUGE-L": r, "forget quality": q}
            for method, (f, r, q) in values.items()]


@pytest.mark.parametrize("setting", sorted(MEASURED))
def test_fiubench_demo_shape_holds_on_every_measured_setting(setting: str):
    results = check_shape(rows_by(table(MEASURED[setting]), "method"), FiuBenchTask.demo_shape)
    assert all(holds for _, holds in results), results


def test_a_table_of_another_shape_fails_and_a_missing_row_fails():
    values = dict(MEASURED["pinned"], gd=(99.0, 60.0, 1e-5))  # GD that ruins retain answers and forgets nothing
    results = dict(check_shape(rows_by(table(values), "method"), FiuBenchTask.demo_shape))
    assert not results["GD and KL keep retain answers: retain ROUGE-L within 10 points of Stage I's"]
    assert not results["while forgetting some: forget ROUGE-L at least 5 points below Stage I's"]
    without_kl = {m: v for m, v in MEASURED["pinned"].items() if m != "kl"}
    assert not all(holds for _, holds in check_shape(rows_by(table(without_kl), "method"), FiuBenchTask.demo_shape))
    assert check_shape({}, [Expectation("anything", lambda rows: rows["x"]["y"] > 0)]) == [("anything", False)]
    with pytest.raises(ValueError, match="two rows are labelled 'ga'"):
        rows_by([{"method": "ga"}, {"method": "ga"}], "method")


# MLLMU-Bench's demo (image+text rows): forget class. acc, forget ROUGE-L, retain class. acc, measured pinned here
# and on the machine the README's earlier table came from.
MLLMU_MEASURED = {
    "pinned": {"vanilla_full": (100.0, 0.899, 100.0), "ga": (20.0, 0.0, 32.2), "gd": (100.0, 0.609, 100.0),
               "kl": (100.0, 0.578, 100.0), "npo": (20.0, 0.298, 41.1)},
    "readme_machine": {"vanilla_full": (100.0, 0.91, 98.9), "ga": (30.0, 0.0, 15.6), "gd": (90.0, 0.71, 97.8),
                       "kl": (90.0, 0.68, 95.6), "npo": (30.0, 0.58, 44.4)},
}


@pytest.mark.parametrize("setting", sorted(MLLMU_MEASURED))
def test_mllmu_demo_shape_holds_on_every_measured_setting(setting: str):
    rows = [{"method": method, "forget data": "—" if method == "vanilla_full" else "image+text",
             "eval modality": "image+text", "Forget Class. Acc": fc, "Forget ROUGE-L": fr, "Retain Class. Acc": rc}
            for method, (fc, fr, rc) in MLLMU_MEASURED[setting].items()]
    results = check_shape(rows_by(rows, *MllmuTask.demo_rows), MllmuTask.demo_shape)
    assert all(holds for _, holds in results), results


# SafeEraser's demo: efficacy ASR, SARR, RR, measured pinned here and on the README's earlier machine.
SAFEERASER_MEASURED = {
    "pinned": {"vanilla_full": (94.44, 0.0, 0.0), "ga": (0.0, 100.0, 0.0), "ga_pd": (0.0, 0.0, 0.0),
               "gd": (13.89, 0.0, 0.0), "gd_pd": (22.22, 0.0, 0.0), "kl": (0.0, 0.0, 0.0), "kl_pd": (0.0, 0.0, 0.0),
               "po": (0.0, 100.0, 91.67), "po_pd": (55.56, 0.0, 13.89)},
    "readme_machine": {"vanilla_full": (80.56, 0.0, 0.0), "ga": (0.0, 100.0, 0.0), "ga_pd": (0.0, 0.0, 0.0),
                       "gd": (5.56, 0.0, 0.0), "gd_pd": (13.89, 0.0, 0.0), "kl": (5.56, 0.0, 0.0),
                       "kl_pd": (5.56, 0.0, 0.0), "po": (0.0, 83.33, 94.44), "po_pd": (52.78, 0.0, 27.78)},
}


@pytest.mark.parametrize("setting", sorted(SAFEERASER_MEASURED))
def test_safeeraser_demo_shape_holds_on_every_measured_setting(setting: str):
    rows = [{"method": method, "Efficacy ASR": asr, "SARR": sarr, "RR": rr}
            for method, (asr, sarr, rr) in SAFEERASER_MEASURED[setting].items()]
    results = check_shape(rows_by(rows, *SafeEraserTask.demo_rows), SafeEraserTask.demo_shape)
    assert all(holds for _, holds in results), results


# EFUF's demo: CHAIR_s, CHAIR_i, BLEU-1, measured pinned here and on the README's earlier machine (where EFUF with
# the released code's terms lowered CHAIR too; pinned here it does not, so only the sentence loss is expected to).
EFUF_MEASURED = {
    "pinned": {"vanilla_full": (45.0, 20.69, 85.44), "efuf": (51.67, 25.90, 87.58),
               "efuf_sentence": (38.33, 17.52, 87.20), "ga": (6.67, 21.43, 44.28)},
    "readme_machine": {"vanilla_full": (40.0, 17.88, 86.24), "efuf": (33.33, 16.91, 89.34),
                       "efuf_sentence": (26.67, 12.50, 90.90), "ga": (58.33, 58.33, 1.56)},
}


@pytest.mark.parametrize("setting", sorted(EFUF_MEASURED))
def test_efuf_demo_shape_holds_on_every_measured_setting(setting: str):
    rows = [{"method": method, "CHAIR_s": s, "CHAIR_i": i, "BLEU-1": b}
            for method, (s, i, b) in EFUF_MEASURED[setting].items()]
    results = check_shape(rows_by(rows, *EfufTask.demo_rows), EfufTask.demo_shape)
    assert all(holds for _, holds in results), results
