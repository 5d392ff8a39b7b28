"""MLLMU-Bench through the user's launchers: vanilla finetune, multimodal and unimodal forgetting, evaluation, table."""

import json
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from tests.conftest import assert_summaries_fit
from tests.test_launchers import run
from unlearning.recipes.common import CONFIG_DIR
from unlearning.runs.folders import read_run


def test_launchers_run_mllmu_end_to_end(tmp_path: Path, mllmu_dir: Path, tiny_dir: Path):
    common = ["benchmark=mllmu", f"run_root={tmp_path}/runs", f"data_dir={mllmu_dir}", f"model.path={tiny_dir}"]
    run("bash", "scripts/finetune.bash", "max_steps=2", *common)
    for modality in ("multimodal", "unimodal"):
        run("bash", "scripts/forget_lora.bash", "method=gd", "forget_split=forget_15", f"forget_modality={modality}",
            "max_steps=2", "batch_size=2", *common)
    runs = tmp_path / "runs" / "mllmu" / "tiny"
    names = sorted(p.name.rsplit("-", 1)[0] for p in runs.iterdir() if not p.name.startswith("."))  # .locks: hidden
    assert names == ["finetune_full_0.001_24", "gd_forget_15_0.0002_8", "gd_forget_15_0.0002_8_unimodal"]
    (unimodal,) = runs.glob("gd_forget_15_0.0002_8_unimodal-*")
    assert read_run(unimodal)["forget_modality"] == "unimodal"
    run("bash", "scripts/eval_everything.bash", "forget_split=forget_15", "eval.max_new_tokens=4",
        "eval.judge.enabled=false", *common)
    (multimodal,) = runs.glob("gd_forget_15_0.0002_8-*")
    summary = json.loads((multimodal / "eval" / "summary.json").read_text())
    assert summary["retain_split"] == "retain_85" and summary["judge"]["status"].startswith("skipped")
    assert set(summary["metrics"]) == {"image+text", "text-only"}  # one row per evaluated modality
    text = summary["metrics"]["text-only"]
    assert text["Retain ROUGE-L"]["n"] == summary["sets"]["retain"]["text"]["n_generation"] > 0
    assert text["Forget Fact."]["judge"] == "llm" and text["Forget Fact."]["n"] is None  # not judged
    assert_summaries_fit(tmp_path / "runs", 3)
    assert not (tmp_path / "dataset").exists()  # no MME/POPE built for MLLMU-Bench
    result = run(sys.executable, "results_collect.py", f"run_root={tmp_path}/runs", f"out_dir={tmp_path}/results")
    table = (tmp_path / "results" / "mllmu.md").read_text()
    assert ("| Forget Class. Acc ↓ | Forget ROUGE-1 ↓ | Forget ROUGE-2 ↓ | Forget ROUGE-L ↓ | Forget Fact. ↓ | "
            "Forget Cloze Acc ↓ | Test Class. Acc ↓") in table
    assert "| Retain Class. Acc ↑ |" in table
    assert table.count("| gd | forget_15 | text-only | image+text |") == 1
    assert table.count("| gd | forget_15 | image+text |") == 2 and "| vanilla_full |" in result.stdout
    assert (tmp_path / "results" / "mllmu_tradeoff.png").stat().st_size > 1000


def test_mllmu_configs_compose():
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        forget = compose("forget", overrides=["benchmark=mllmu", "method=npo", "forget_modality=unimodal"])
        evaluate = compose("eval", overrides=["benchmark=mllmu"])
    assert forget.forget_split == "forget_10" and forget.run_label == "npo_forget_10_0.0005_8_unimodal"
    assert forget.data_dir == "dataset/builtin/mllmu" and forget.model.path == "models/mllmu/tiny-llava"
    assert evaluate.eval.judge.max_tokens == 700 and "factuality" in evaluate.eval.judge.system_prompt
    assert evaluate.benchmark.reference_split is None and list(evaluate.benchmark.general_evals) == []


def test_bad_forget_modality_is_rejected(tmp_path: Path, mllmu_dir: Path, tiny_dir: Path):
    result = subprocess.run(
        ["bash", "scripts/forget_lora.bash", "benchmark=mllmu", "forget_modality=text", f"data_dir={mllmu_dir}",
         f"model.path={tiny_dir}", f"run_root={tmp_path}", f"model_path={tiny_dir}"],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"})
    assert result.returncode != 0 and "forget_modality must be one of" in result.stderr


def test_official_training_runs_as_the_original(tmp_path: Path, mllmu_dir: Path, tiny_dir: Path):
    """compat=official: the vanilla LoRA finetune and KL_Min / NPO with whole-sequence labels, leaf-name LoRA (the
    vision tower adapted too), KL_Min in sequential passes (KL over every position per row plus the retain NLL),
    NPO on the batch-mean NLL."""
    from safetensors.torch import load_file

    from unlearning.recipes.finetune import finetune
    from unlearning.recipes.forget import forget

    def config(name: str, *overrides: str):
        with initialize_config_dir(CONFIG_DIR, version_base=None):
            return compose(name, overrides=["benchmark=mllmu", f"run_root={tmp_path}", f"data_dir={mllmu_dir}",
                                            f"model.path={tiny_dir}", "compat=official", *overrides])

    vanilla = finetune(config("finetune", "max_steps=2", "lora.r=8", "lora.alpha=8"))
    assert json.loads((vanilla / "identity.json").read_text())["label_scope"] == "sequence"
    for method, logged in (("kl", {"forget_pass", "retain_pass"}), ("npo", {"npo", "log_ratio"})):
        run_dir = forget(config("forget", f"method={method}", "forget_split=forget_15", "epochs=1",
                                "batch_size=32", "log_every=1"))
        steps = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
        assert logged <= {key for step in steps for key in step} and all(abs(step["loss"]) < 1e6 for step in steps)
        adapter = load_file(run_dir / "checkpoint" / "adapter_model.safetensors")
        assert any("vision_tower" in key for key in adapter)  # leaf names matched everywhere
        identity = json.loads((run_dir / "identity.json").read_text())
        assert identity["label_scope"] == "sequence" and identity["lora_match"] == "leaf"


def test_official_gd_trains_in_sequential_passes(tmp_path: Path, mllmu_dir: Path, tiny_dir: Path):
    """GA_Difference.py: per epoch every forget batch ascends, then every retain batch descends, one optimiser,
    a constant rate; GA (forget only) is the same either way."""
    from unlearning.recipes.finetune import finetune
    from unlearning.recipes.forget import forget

    def config(name: str, *overrides: str):
        with initialize_config_dir(CONFIG_DIR, version_base=None):
            return compose(name, overrides=["benchmark=mllmu", f"run_root={tmp_path}", f"data_dir={mllmu_dir}",
                                            f"model.path={tiny_dir}", *overrides])

    finetune(config("finetune", "max_steps=2"))
    run_dir = forget(config("forget", "method=gd", "forget_split=forget_15", "epochs=1", "batch_size=16",
                            "log_every=1", "compat=official", "compat.whole_sequence_labels=false",
                            "compat.lora_leaf_names=false"))
    info = read_run(run_dir)
    steps = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    kinds = ["forget" if "forget_pass" in step else "retain" for step in steps]
    n_forget = kinds.count("forget")
    assert info["passes"] == "sequential" and kinds == ["forget"] * n_forget + ["retain"] * (len(kinds) - n_forget)
    assert 0 < n_forget < len(kinds) and all(step["forget_pass"] < 0 for step in steps[:n_forget])
    assert len({step["lr"] for step in steps}) == 1  # constant within the epoch
    assert info["train"]["steps"] == len(steps)
