"""UMU-Bench through the user's launchers: the vanilla finetune, forgetting on both modalities' QAs, the three-set
evaluation with the modalities side by side, the table; the configs; the original's behaviours under compat."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from tests.conftest import assert_summaries_fit
from tests.test_launchers import run
from umu.evaluate import correct_option, target
from umu.synthetic import write_umu
from unlearning.compat import Compat
from unlearning.recipes.common import CONFIG_DIR


def test_launchers_run_umu_end_to_end(tmp_path: Path, tiny_dir: Path):
    data = write_umu(tmp_path / "umu", n_profiles=4, n_real=1, image_size=56)  # forget_15: 1 profile, retain_85: 3
    common = ["benchmark=umu", f"run_root={tmp_path}/runs", f"data_dir={data}", f"model.path={tiny_dir}"]
    run("bash", "scripts/finetune.bash", "max_steps=2", *common)
    run("bash", "scripts/forget_lora.bash", "method=po", "max_steps=2", "batch_size=2", "forget_split=forget_15",
        *common)
    runs = tmp_path / "runs" / "umu" / "tiny"
    (forget,) = runs.glob("po_forget_15_*")
    info = json.loads((forget / "run.json").read_text())
    assert info["streams"] == {"refusal": "aligned", "retain": "random"}  # PO: refusals of both modalities' QAs
    assert info["stream_sizes"]["refusal"]["examples"] == info["stream_sizes"]["forget"]["examples"] == 25
    run("bash", "scripts/eval_everything.bash", "eval.max_new_tokens=4", "forget_split=forget_15", *common)
    summary = json.loads((forget / "eval" / "summary.json").read_text())
    assert summary["retain_split"] == "retain_85" and set(summary["sets"]) == {"forget", "retain", "real"}
    metrics = summary["metrics"]["all"]
    assert metrics["AccF"]["direction"] == "lower" and metrics["AccF"]["n"] == 4  # 4 classification pairs
    assert metrics["RLR"]["n"] == 3 * 4 and metrics["AccR"]["interval"] is not None  # profiles resampled
    samples = json.loads((forget / "eval" / "forget_15.json").read_text())["samples"]
    assert {(s["task"], s["modality"]) for s in samples} == {(t, m) for t in ("classification", "cloze", "generation")
                                                             for m in ("image_text", "text")}
    assert_summaries_fit(tmp_path / "runs", 2)
    result = run(sys.executable, "results_collect.py", f"run_root={tmp_path}/runs", f"out_dir={tmp_path}/results")
    table = (tmp_path / "results" / "umu.md").read_text()
    assert "| Forget Class. MM ↓ | Forget Class. UM ↓ | AccF ↓ |" in table and "| RLR ↑ |" in table
    assert "| vanilla_full |" in result.stdout and "| po |" in table


def test_umu_configs_compose():
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        forget = compose("forget", overrides=["benchmark=umu", "method=npo"])
        official = compose("forget", overrides=["benchmark=umu", "method=npo", "model=llava_1_5_7b"])
        evaluate = compose("eval", overrides=["benchmark=umu"])
    assert forget.run_label == "npo_forget_10_0.0005_4" and forget.data_dir == "dataset/builtin/umu"
    assert forget.model.path == "models/umu/tiny-llava" and forget.benchmark.options.retain_pool == "all"
    assert official.lr == 6.2e-6 and official.lora.r == 64 and official.lora.alpha == 32  # NPO.py, GA.py
    assert official.batch_size == 12 and official.method.beta == 0.4 and official.lora.init == "gaussian"
    assert evaluate.benchmark.eval_options.classification_scoring == "loglik"
    assert evaluate.benchmark.eval_options.shared_prefix is False  # the tiny recipe's
    assert list(evaluate.benchmark.robustness.parts) == ["forget"]
    assert evaluate.benchmark.selection.forget_metric == "AccF"


def test_compat_targets(umu_dir: Path):
    """The multimodal MCQ graded by its unimodal twin's letter (eval.py:142) and the cloze truth cut at its first
    '.' (eval.py:352) only under their switches."""
    from umu.data import UmuBench

    profile = UmuBench(umu_dir).profiles("forget_10")[0]
    item = profile.items_of("classification", "image_text")[0]
    twin = profile.items_of("classification", "text")[0]
    default, official = Compat.of("umu"), Compat.of("umu", "official")
    assert correct_option(profile, item, default) == dict(item.options)[item.answer]
    assert correct_option(profile, item, official) == dict(item.options)[twin.answer]
    cloze = profile.items_of("cloze", "text")[0]
    assert target(profile, cloze, default) == cloze.answer.rstrip(".")
    assert target(profile, cloze, official) == cloze.answer.split(".")[0]


def test_official_switches_set_the_originals_settings():
    from unlearning.compat import apply_switches

    with initialize_config_dir(CONFIG_DIR, version_base=None):
        cfg = compose("forget", overrides=["benchmark=umu", "method=npo"])
        evaluate = compose("eval", overrides=["benchmark=umu"])
    official = Compat.of("umu", "official")
    apply_switches(cfg, official, "train")
    apply_switches(evaluate, official, "eval")
    assert cfg.label_scope == "sequence" and cfg.append_eos is False and cfg.lora_match == "leaf"
    assert cfg.method.granularity == "batch_token_mean" and cfg.benchmark.options.retain_pool == "subsample"
    assert evaluate.benchmark.eval_options.classification_scoring == "generate"


def test_eval_limit_cuts_each_set(umu_dir: Path):
    """eval.limit (the engine's smoke check): each set's first profiles."""
    from umu.data import UmuBench
    from umu.evaluate import EvalOptions, evaluation
    from unlearning.evaluation.runner import EvalSettings
    from unlearning.inference.decoding import Decoding

    settings = EvalSettings(4, Decoding(max_new_tokens=4), Compat.of("umu"), limit=1)
    parts = evaluation(UmuBench(umu_dir), EvalOptions(), settings, "forget_10").parts
    assert {name: len(part.data) for name, part in parts.items()} == {"forget": 1, "retain": 1, "real": 1}
    assert settings.limit_applied
