"""CLEAR through the recipes in-process on the small model: Stage I on full+tofu, the retain model, forgetting
(a method reading forget and retain, one reading the refusal stream), the six-task evaluation with intervals and
forget quality against the retain model, the table; the configs compose (reference split per forget split)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import SMALL_MODEL, assert_summaries_fit
from unlearning.recipes.common import CONFIG_DIR
from unlearning.runs.folders import read_run
from unlearning.runs.io import read_json


@pytest.fixture(scope="module")
def clear_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clear.synthetic import write_clear

    return write_clear(tmp_path_factory.mktemp("clear"), n_persons=10, images_per_person=1, n_retain_eval=3,
                       n_real_faces=2, n_real_world=2, image_size=56)


@pytest.fixture(scope="module")
def clear_tiny(tmp_path_factory: pytest.TempPathFactory, clear_dir: Path) -> Path:
    from clear.benchmark import ClearTask
    from unlearning.models.tiny import build_tiny_model

    path = tmp_path_factory.mktemp("models") / "tiny-llava-clear"
    return build_tiny_model("llava", path, ClearTask(clear_dir).texts(), **SMALL_MODEL)


def config(name: str, root: Path, data: Path, model: Path, *overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose(name, overrides=["benchmark=clear", f"run_root={root}", f"data_dir={data}",
                                        f"model.path={model}", *overrides])


def test_configs_compose_with_the_reference_of_each_forget_split():
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        evaluate = compose("eval", overrides=["benchmark=clear", "forget_split=forget05"])
        finetune = compose("finetune", overrides=["benchmark=clear"])
        forget = compose("forget", overrides=["benchmark=clear", "method=npo"])
        real = compose("forget", overrides=["benchmark=clear", "model=llava_1_5_7b", "method=gd"])
    assert evaluate.benchmark.reference_split == "retain95+tofu" and evaluate.retain_split is None
    assert finetune.split == "full+tofu" and finetune.data_dir == "dataset/builtin/clear"
    assert forget.lr == 5.0e-4 and forget.run_label == "npo_forget10_0.0005_8"
    assert real.lr == 1.0e-5 and real.lora.r == 0 and real.epochs == 5 and real.effective_batch == 8


def test_finetune_forget_evaluate_and_collect(tmp_path: Path, clear_dir: Path, clear_tiny: Path):
    from results_collect import collect
    from unlearning.recipes.evaluate import evaluate
    from unlearning.recipes.finetune import finetune
    from unlearning.recipes.forget import forget

    root = tmp_path / "runs"
    for split in ("full+tofu", "retain90+tofu"):
        finetune(config("finetune", root, clear_dir, clear_tiny, f"split={split}", "max_steps=2"))
    for method in ("gd", "idkdpo"):
        forget(config("forget", root, clear_dir, clear_tiny, f"method={method}", "max_steps=1", "batch_size=2"))
    group = root / "clear" / "tiny"
    (idkdpo,) = group.glob("idkdpo_forget10_*")
    run = read_run(idkdpo)
    assert "packaged" in run["stream_sources"]["refusal"] or "refusals" in run["stream_sources"]["refusal"]
    evaluate(config("eval", root, clear_dir, clear_tiny, "eval.max_new_tokens=4", "eval.bootstrap.resamples=20",
                    "eval.judge.enabled=false"))
    summaries = assert_summaries_fit(root, 4)
    (gd,) = group.glob("gd_forget10_*")
    summary = read_json(gd / "eval" / "summary.json")
    assert set(summary["tasks"]) == {"forget", "retain", "forget_facerec", "retain_facerec", "real_faces",
                                     "real_world"}
    assert summary["tasks"]["forget"]["n"] == 1 and summary["tasks"]["retain"]["n"] == 3  # 10% of 10 persons
    assert summary["forget_quality"] is not None and 0 <= summary["forget_quality"] <= 1
    assert math.isfinite(summary["js"]) and summary["model_utility"] >= 0
    (row,) = summary["metrics"].values()
    assert row["Forget ROUGE"]["direction"] == "lower" and row["Retain FaceRec TR"]["n"] == 3
    assert row["Retain ROUGE"]["interval"] is not None or summary["bootstrap"] is not None
    (reference,) = group.glob("finetune_retain90+tofu_*")
    assert read_json(reference / "eval" / "summary.json")["forget_quality"] == 1.0  # itself
    selection = read_json(gd / "eval" / "selection.json")
    assert selection["available"], selection
    forget_rows = read_json(gd / "eval" / "forget.json")["samples"]
    assert {"generation", "truth_ratio", "probability", "rougeL_recall", "unit"} <= set(forget_rows[0])
    rows = collect(root, tmp_path / "results")["clear"]
    assert {r["method"] for r in rows} == {"finetune_full+tofu", "finetune_retain90+tofu", "gd", "idkdpo"}
    table = (tmp_path / "results" / "clear.md").read_text()
    assert "| Forget ROUGE ↓ | Forget Prob. ↓ | Forget TR ↑ |" in table and "| MU ↑ | FQ ↑ | JS ↓ |" in table
    assert len(summaries) == 4


def test_official_evaluation_switches(tmp_path: Path, clear_dir: Path):
    """compat=official: the first 300 rows (all of the small data), the pooled truth ratio, generation without
    the image; each part's fingerprint records the switches."""
    from clear.benchmark import ClearTask
    from unlearning.compat import Compat
    from unlearning.evaluation.runner import EvalSettings
    from unlearning.inference.decoding import Decoding

    compat = Compat.of("clear", "official")
    assert compat.at("eval") == ["first_300_rows", "generation_without_image", "pooled_perturbed_loss"]
    settings = EvalSettings(batch_size=4, decoding=Decoding(max_new_tokens=4), compat=compat)
    evaluation = ClearTask(clear_dir).evaluation(settings, "forget10", None)
    assert set(evaluation.parts) == {"forget", "retain", "forget_facerec", "retain_facerec", "real_faces",
                                     "real_world"}
    assert evaluation.parts["forget"].key(compat, None)["compat"] == compat.at("eval")
    limited = EvalSettings(batch_size=4, decoding=Decoding(max_new_tokens=4), compat=compat, limit=1)
    parts = ClearTask(clear_dir).evaluation(limited, "forget10", None).parts
    assert limited.limit_applied and all(len(part.data) == 1 for part in parts.values())  # eval.limit: first rows
    with pytest.raises(ValueError, match="leave retain_split unset"):
        ClearTask(clear_dir).evaluation(settings, "forget10", "retain90")
    with pytest.raises(ValueError, match="unknown CLEAR forget split 'forget20'"):
        ClearTask(clear_dir).stream("forget", "forget20")
