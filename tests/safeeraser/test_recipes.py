"""SafeEraser end to end on the small model: the vanilla finetune, every method the benchmark can run (the
Prompt-Decouple ones found from their YAMLs), the offline and the LLM-judged evaluation, the table, the launchers."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from results_collect import collect
from safeeraser.benchmark import SafeEraserTask
from tests.conftest import assert_summaries_fit
from unlearning.recipes.common import CONFIG_DIR
from unlearning.recipes.evaluate import evaluate
from unlearning.recipes.finetune import finetune
from unlearning.recipes.forget import forget
from unlearning.runs.folders import read_run
from unlearning.runs.io import read_json
from unlearning.training.methods import build_method

REPO = Path(__file__).resolve().parents[2]


def config(name: str, root: Path, data: Path, model: Path, *overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose(name, overrides=["benchmark=safeeraser", f"run_root={root}", f"data_dir={data}",
                                        f"model.path={model}", *overrides])


def safeeraser_methods() -> list[str]:
    """Every method YAML whose streams SafeEraser provides (all of them but NPO's none: NPO works too)."""
    names = sorted(p.stem for p in (Path(CONFIG_DIR) / "method").glob("*.yaml"))
    provided = SafeEraserTask.stream_names
    out = []
    for name in names:
        cfg = config("forget", Path("runs"), Path("."), Path("."), f"method={name}")
        if all(use.name in provided for use in build_method(cfg.method).streams()):
            out.append(name)
    return out


METHODS = safeeraser_methods()
EVAL = ("eval.batch_size=8", "eval.max_new_tokens=12")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, safe_dir: Path, safe_tiny_dir: Path, monkeypatch_module) -> Path:
    monkeypatch_module.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch_module.delenv("OPENAI_BASE_URL", raising=False)
    root = tmp_path_factory.mktemp("safe_runs")
    finetune(config("finetune", root, safe_dir, safe_tiny_dir, "max_steps=4"))
    for method in METHODS:
        forget(config("forget", root, safe_dir, safe_tiny_dir, f"method={method}", "max_steps=2", "batch_size=2",
                      "log_every=1"))
    return root


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_every_pd_method_is_found_and_runs(runs: Path):
    assert {"ga", "gd", "kl", "po", "npo", "ga_pd", "gd_pd", "kl_pd", "po_pd"} <= set(METHODS)
    for run in (runs / "safeeraser" / "tiny").glob("*_pd_train_*"):
        info = read_run(run)
        assert info["streams"]["decoupled"] == "aligned" and info["base_model"].startswith("../finetune_full_")
        losses = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
        assert losses and all(abs(step["loss"]) < 1e4 and "nll_decoupled" in step for step in losses)


def test_offline_evaluation_table_and_plot(runs: Path, safe_dir: Path, safe_tiny_dir: Path, tmp_path: Path):
    summaries = evaluate(config("eval", runs, safe_dir, safe_tiny_dir, *EVAL))
    assert len(summaries) == 1 + len(METHODS)
    for summary in summaries:
        assert summary["judged_by"] == "offline" and summary["judge"]["status"].startswith("skipped")
        for split, n_records in (("train", 6), ("val", 3)):
            values = summary["splits"][split]
            assert values["n_harmful_answers"] == values["n_sd"] == 2 * n_records
            assert values["n_harmless"] == 4 * n_records
            assert all(0 <= values[key] <= 1 for key in ("asr", "rr", "sarr", "rougeL"))
            assert values["score"] is None and values["asr"] == values["offline"]["asr"]
    run = next((runs / "safeeraser" / "tiny").glob("ga_pd_train_*"))
    samples = read_json(run / "eval" / "train.json")["samples"]
    assert {"harmful", "sd", "harmless"} == set(samples) and samples["harmful"][0]["category"]
    rows = collect(runs, tmp_path / "results")["safeeraser"]
    assert {row["method"] for row in rows} == {"vanilla_full", *METHODS}
    for summary in assert_summaries_fit(runs):
        metrics = summary["metrics"]["all"]
        assert metrics["Efficacy ASR"]["judge"] == "offline" and metrics["ROUGE-L"]["judge"] == "none"
        assert metrics["SARR"]["n"] == 2 * 3 and metrics["RR"]["n"] == 2 * 6
        # records resampled within each split: every offline column has an interval, the unjudged score none
        assert {k: v["units"] for k, v in summary["bootstrap"]["strata"].items()} == {"train": 6, "val": 3}
        assert all(metrics[c]["interval"] is not None for c in ("Efficacy ASR", "Generality ASR", "RR", "SARR",
                                                                  "ROUGE-L"))
        assert metrics["Judge"]["interval"] is None
    assert all(row["judge"] == "offline" and row["Judge"] is None and row["Specificity"] is None for row in rows)
    table = (tmp_path / "results" / "safeeraser.md").read_text()
    header = ("| Efficacy ASR ↓ | Generality ASR ↓ | RR ↑ | SARR ↓ | ROUGE-L ↑ | Judge ↑ | MME ↑ | POPE ↑ | GQA ↑ | "
              "VizWiz ↑ | SQA-IMG ↑ | VQAv2 ↑ | MM-Vet ↑ | MMBench ↑ | Specificity ↑ | Specificity over | judge |")
    assert header in table and " ± " in table
    assert (tmp_path / "results" / "safeeraser_tradeoff.png").read_bytes()[:4] == b"\x89PNG"


def test_llm_judge_official_sampling_and_general_accuracy(runs: Path, safe_dir: Path, safe_tiny_dir: Path,
                                                     tmp_path: Path, monkeypatch):
    from tests.fake_openai import FakeOpenAI, fake_openai_server

    run = next((runs / "safeeraser" / "tiny").glob("po_pd_train_*"))
    general = [f"eval.general.{name}.{key}={tmp_path}/{name}" for name in ("mme", "pope")
               for key in ("data_dir", "builtin_dir")]
    common = (*EVAL, f"run_dirs=[{run}]", f"eval.judge.cache_dir={tmp_path}/cache")
    with fake_openai_server() as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        (summary,) = evaluate(config("eval", runs, safe_dir, safe_tiny_dir, *common, *general,
                                     "benchmark.general_evals=[mme,pope]"))
        models = {r["body"]["model"] for r in FakeOpenAI.requests}
        default_requests = len(FakeOpenAI.requests)
        (official,) = evaluate(config("eval", runs, safe_dir, safe_tiny_dir, *common, "compat=official"))
    default_bodies = [r["body"] for r in FakeOpenAI.requests[:default_requests]]
    official_bodies = [r["body"] for r in FakeOpenAI.requests[default_requests:]]
    assert all(b["temperature"] == 0.0 and b["max_tokens"] == 16 for b in default_bodies)
    # eval_all.py:10-16: the model, "You are a helpful assistant." and the prompt; no temperature, no token cap
    assert official_bodies and all("temperature" not in b and "max_tokens" not in b for b in official_bodies)
    assert all(b["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
               for b in official_bodies)
    assert models == {"gpt-4o"} and summary["judged_by"] == "gpt-4o" and summary["judge"]["status"] == "scored"
    train = summary["splits"]["train"]
    assert all(train[key] is not None for key in ("asr", "rr", "sarr", "score"))
    assert summary["judge"]["train"]["asr"]["n"] == 12 and summary["judge"]["val"]["score"]["n"] == 12
    assert set(summary["general"]) == {"mme", "pope"}
    (row,) = SafeEraserTask.table_rows(read_run(run), summary)
    mme, pope = (100 * summary["general"][name]["accuracy"] for name in ("mme", "pope"))
    assert (row["MME"], row["POPE"]) == (mme, pope)
    assert row["Specificity"] == pytest.approx(pope) and row["Specificity over"] == "POPE"  # MME is not of the seven
    metrics = summary["metrics"]["all"]  # the general accuracies keep no per-record results: no interval
    assert all(metrics[c]["interval"] is None for c in ("MME", "POPE", "Specificity"))
    assert metrics["Efficacy ASR"]["interval"] is not None
    train = official["splits"]["train"]  # three sampled answers per question; empty ones left out, as the original
    assert train["n_harmful_answers"] + train["n_empty"]["harmful"] == 3 * 12
    assert official["splits"]["train"]["n_sd"] == 12
    harmful = read_json(run / "eval" / "train.json")["samples"]["harmful"]
    assert sorted({h["sample"] for h in harmful}) == [0, 1, 2]


def test_a_release_with_empty_vanilla_answers_trains_and_evaluates(tmp_path: Path, safe_dir: Path,
                                                                    safe_tiny_dir: Path, runs: Path, caplog):
    """The release's vanilla answers can be empty strings: they are data (counted in the log and the run's
    stream sizes), train the end of the turn, and evaluation leaves a harmless question with an empty reference
    out of ROUGE-L."""
    data = tmp_path / "data"
    shutil.copytree(safe_dir, data)
    records = json.loads((data / "all_train.json").read_text())
    records[0]["unsafe_pairs"][0]["model_response"] = ""
    records[0]["unsafe_pairs"][1]["sd_response"] = ""
    records[1]["UnharmPair_text1"]["Prediction"] = ""
    (data / "all_train.json").write_text(json.dumps(records))
    root = tmp_path / "runs"
    vanilla = next((runs / "safeeraser" / "tiny").glob("finetune_full_*"))
    with caplog.at_level("INFO"):
        for method in ("ga_pd", "gd", "po"):
            run = forget(config("forget", root, data, safe_tiny_dir, f"method={method}", "max_steps=2",
                                "batch_size=8", "shuffle=false", f"model_path={vanilla}/checkpoint"))
            sizes = read_run(run)["stream_sizes"]
            assert sizes["forget"] == {"examples": 12, "empty_answers": 1}
            if method == "ga_pd":
                assert sizes["decoupled"] == {"examples": 12, "empty_answers": 1}
            if method == "gd":
                assert sizes["retain"]["empty_answers"] == 1
            steps = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
            assert steps and all(math.isfinite(step["loss"]) for step in steps)
    assert "empty vanilla answers kept as data: model_response 1, sd_response 1, Prediction 1" in caplog.text
    assert "forget 12 (aligned, 1 empty answers)" in caplog.text
    for mode in ("default", "official"):
        summaries = evaluate(config("eval", root, data, safe_tiny_dir, *EVAL, f"compat={mode}"))
        for summary in summaries:
            train = summary["splits"]["train"]
            assert train["n_empty"]["harmless_reference"] == 1 and train["n_harmless"] <= 4 * 6 - 1
            assert train["asr"] is not None and train["rougeL"] is not None


def test_official_training_text(runs: Path, safe_dir: Path, safe_tiny_dir: Path, tmp_path: Path):
    """compat=official trains on data_module.py's text: the recipe's tags and label rule, capitalised, in file
    order; the run records the switches."""
    vanilla = next((runs / "safeeraser" / "tiny").glob("finetune_full_*"))
    run = forget(config("forget", tmp_path / "runs", safe_dir, safe_tiny_dir, "method=ga_pd", "compat=official",
                        "max_steps=2", "batch_size=2", f"model_path={vanilla}/checkpoint"))
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["original_prompt"]["max_length"] == 512 and resolved["original_prompt"]["answer_tag"] == \
        " ASSISTANT: "
    assert resolved["benchmark"]["options"]["capitalize"] is True and resolved["shuffle"] is False
    identity = json.loads((run / "identity.json").read_text())
    assert {"original_prompt", "capitalize", "file_order", "pd_weights_as_original"} <= set(identity["compat"])


def test_launchers_run_safeeraser(tmp_path: Path, safe_dir: Path, safe_tiny_dir: Path):
    """As a user runs it: forget_lora.bash benchmark=safeeraser method=ga_pd, eval_everything.bash, results_collect."""
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    env.pop("ACCELERATE_CONFIG", None)
    common = ["benchmark=safeeraser", f"run_root={tmp_path}/runs", f"data_dir={safe_dir}",
              f"model.path={safe_tiny_dir}"]

    def run(*command: str) -> None:
        subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True, text=True)

    run("bash", "scripts/finetune.bash", *common, "max_steps=2")
    run("bash", "scripts/forget_lora.bash", *common, "method=ga_pd", "max_steps=1", "batch_size=2")
    run("bash", "scripts/eval_everything.bash", *common, *EVAL, "eval.judge.enabled=false")
    run(sys.executable, "results_collect.py", f"run_root={tmp_path}/runs", f"out_dir={tmp_path}/results")
    rows = json.loads((tmp_path / "results" / "safeeraser.json").read_text())["rows"]
    assert sorted(row["method"] for row in rows) == ["ga_pd", "vanilla_full"]
