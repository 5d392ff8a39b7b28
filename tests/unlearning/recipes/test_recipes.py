"""The recipes in-process on the small model: Stage I, every forget method, evaluation, collection.

Every method with a YAML in ``config/method/`` gets the same checks (trl's pattern), without a list to edit:
finite logged loss, trainable weights moved, Stage-I weights untouched, adapter reloads strictly.
"""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

from tests.conftest import assert_summaries_fit
from unlearning.benchmarks import benchmark_class
from unlearning.recipes.common import CONFIG_DIR
from unlearning.recipes.evaluate import evaluate
from unlearning.recipes.finetune import finetune
from unlearning.recipes.forget import forget
from unlearning.runs.folders import RunExists, find_runs, read_run
from unlearning.runs.io import read_json
from unlearning.training.methods import build_method

METHOD_CONFIGS = sorted(p.stem for p in (Path(CONFIG_DIR) / "method").glob("*.yaml"))


def make_config(name: str, root: Path, fiu_dir: Path, tiny_dir: Path, *overrides: str):
    common = [f"run_root={root}", f"data_dir={fiu_dir}", f"model.path={tiny_dir}"]
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose(name, overrides=[*common, *overrides])


def runnable_on_fiubench(method: str) -> bool:
    """The shared checks run on FIUBench: every method whose streams it provides."""
    cfg = make_config("forget", Path("runs"), Path("."), Path("."), f"method={method}")
    streams = benchmark_class("fiubench").stream_names
    return all(use.name in streams for use in build_method(cfg.method).streams())


METHODS = [m for m in METHOD_CONFIGS if runnable_on_fiubench(m)]


@pytest.fixture(scope="session")
def runs(tmp_path_factory, fiu_dir: Path, tiny_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for split in ("full", "retain"):
        finetune(make_config("finetune", root, fiu_dir, tiny_dir, f"split={split}", "max_steps=3",
                             "+judge.api_key=sk-not-for-disk"))
    for method in METHODS:
        forget(make_config("forget", root, fiu_dir, tiny_dir, f"method={method}", "max_steps=2", "batch_size=2",
                           "log_every=1"))
    return root / "fiubench" / "tiny"


def run_dir(runs: Path, prefix: str) -> Path:
    (match,) = [p for p in runs.iterdir() if p.name.startswith(prefix)]
    return match


def test_methods_are_discovered_from_their_yaml():
    """Every method YAML runs through the shared checks on some benchmark: here the ones FIUBench's streams
    allow, the others (SafeEraser's Prompt-Decouple ones) in tests/safeeraser/test_recipes.py."""
    from unlearning.benchmarks import benchmark_names

    assert {"ga", "gd", "kl", "npo", "po"} <= set(METHODS) <= set(METHOD_CONFIGS)
    for method in set(METHOD_CONFIGS) - set(METHODS):
        uses = build_method(make_config("forget", Path("runs"), Path("."), Path("."), f"method={method}").method)
        assert any(all(use.name in benchmark_class(name).stream_names for use in uses.streams())
                   for name in benchmark_names()), method


def test_finetune_writes_a_complete_run(runs: Path):
    run = run_dir(runs, "finetune_full_")
    info = read_run(run)
    assert info["kind"] == "finetune" and info["train"]["steps"] == 3 and info["git"] is not None
    assert (run / "checkpoint" / "model.safetensors").is_file()
    assert (run / "checkpoint" / "tokenizer.json").is_file()
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(math.isfinite(r["loss"]) for r in log)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["judge"]["api_key"] == "***" and "sk-not-for-disk" not in (run / "config.yaml").read_text()
    assert "sk-not-for-disk" not in (run / "identity.json").read_text()
    assert config["split"] == "full" and config["lora"]["r"] == 0
    assert run.name.startswith("finetune_full_0.001_24-") and len(run.name.split("-")[-1]) == 8


def trains(method: str) -> bool:
    """False for a training-free method (an edit of the weights, saved as a full model)."""
    return getattr(build_method(make_config("forget", Path("runs"), Path("."), Path("."), f"method={method}").method),
                   "trains", True)


@pytest.mark.parametrize("method", METHODS)
def test_forget_method_trains_adapters_only(runs: Path, method: str):
    run = run_dir(runs, f"{method}_forget10_")
    info = read_run(run)
    assert info["method"] == method and info["kind"] == "forget"
    stage_one = (run / info["base_model"]).resolve()
    assert stage_one == (run_dir(runs, "finetune_full_") / "checkpoint").resolve()
    if not trains(method):  # one edit, no step: a full model that loads like any other
        assert info["train"]["steps"] == 0 and info["train"]["edit"]
        checkpoint = run / "checkpoint"
        assert (checkpoint / "config.json").is_file() and not (checkpoint / "adapter_config.json").exists()
        return
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(math.isfinite(r["loss"]) for r in log)
    expected_parts = {"ga": "forget_nll", "gd": "retain_nll", "kl": "retain_kl", "po": "refusal_nll", "npo": "npo"}
    assert expected_parts.get(method, "loss") in log[0]
    if "refusal" in info["streams"]:  # no prompt.json in the built-in folder: the packaged refusals were used
        assert "16 refusals from the toolkit's packaged list" in info["stream_sources"]["refusal"]
    else:
        assert "refusal" not in info["stream_sources"]
    adapter = load_file(run / "checkpoint" / "adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: it moved
    projector = [k for k in adapter if "multi_modal_projector" in k]
    assert projector  # the fully trained projector is saved with the adapter
    assert not any("vision_tower" in k for k in adapter)


@pytest.mark.parametrize("method", METHODS)
def test_stage_one_weights_are_untouched_by_forgetting(runs: Path, method: str):
    from unlearning.models.loading import load_model
    from unlearning.runs.checkpoints import BaseModels, model_source

    base_state = load_model(run_dir(runs, "finetune_full_") / "checkpoint").state_dict()
    if not trains(method):  # the edit went into the run's own full model; Stage I's stays as it was
        edited = load_model(run_dir(runs, f"{method}_forget10_") / "checkpoint").state_dict()
        changed = [name for name, value in edited.items() if not torch.equal(value, base_state[name])]
        assert changed and all("mlp" in name or "fc" in name for name in changed)
        return
    model = BaseModels("float32", "sdpa", merge=False).load(model_source(run_dir(runs, f"{method}_forget10_")))
    with model.disable_adapter():
        for name, value in model.get_base_model().state_dict().items():
            if "lora_" in name or "modules_to_save" in name:
                continue
            key = name.replace("original_module.", "").replace("base_layer.", "")
            assert torch.equal(value, base_state[key]), name


def test_forget_without_stage_one_names_the_fix(tmp_path: Path, fiu_dir: Path, tiny_dir: Path):
    with pytest.raises(FileNotFoundError, match="run scripts/finetune.bash split=full first"):
        forget(make_config("forget", tmp_path, fiu_dir, tiny_dir, "max_steps=1"))


def test_forgetting_from_the_vanilla_model(tmp_path: Path, fiu_dir: Path, tiny_dir: Path):
    """A benchmark whose forgetting starts from the vanilla model (SafeEraser, EFUF) needs no Stage I."""
    run = forget(make_config("forget", tmp_path, fiu_dir, tiny_dir, "benchmark.starts_from=vanilla", "max_steps=1",
                             "batch_size=2"))
    assert (run / read_run(run)["base_model"]).resolve() == tiny_dir.resolve()


def test_official_training_behaviours_run_on_the_model(tmp_path: Path, fiu_dir: Path, tiny_dir: Path):
    """compat=official at forgetting (from the vanilla model): KL over every position of the retain batch (the
    model's full logits kept), batches in file order, bias-only decay exemption: its own run beside the default."""
    common = ("benchmark.starts_from=vanilla", "method=kl", "max_steps=2", "batch_size=2", "log_every=1")
    default = forget(make_config("forget", tmp_path, fiu_dir, tiny_dir, *common))
    official = forget(make_config("forget", tmp_path, fiu_dir, tiny_dir, *common, "compat=official"))
    assert default != official
    identity = json.loads((official / "identity.json").read_text())
    assert identity["shuffle"] is False and identity["decay_exempt"] == "bias"
    assert identity["method"]["reduction"] == "all_positions"
    assert identity["original_prompt"]["answer_tag"] == " ASSISTANT: "  # the hand-written prompt, its labels, no EOS
    assert identity["benchmark"]["options"]["capitalize"] is True
    logs = {run: [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
            for run in (default, official)}
    assert all(math.isfinite(r["retain_kl"]) and r["retain_kl"] >= 0 for r in logs[official])
    # the first step's KL is 0 either way (the adapter starts as the identity), after that the two reductions differ
    assert logs[official][1]["retain_kl"] != pytest.approx(logs[default][1]["retain_kl"])


def test_a_reference_model_by_path(tmp_path: Path, fiu_dir: Path, tiny_dir: Path):
    """NPO against a frozen model named by reference_model (MLLMU-Bench's "oracle"), even without an adapter."""
    common = ("benchmark.starts_from=vanilla", "method=npo", "max_steps=2", "batch_size=2", "log_every=1",
              f"reference_model={tiny_dir}")
    run = forget(make_config("forget", tmp_path, fiu_dir, tiny_dir, *common, "lora.r=0"))
    steps = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert steps[0]["log_ratio"] == pytest.approx(0.0, abs=1e-5)  # the reference is the starting weights
    assert steps[0]["npo"] == pytest.approx(2 / 0.1 * math.log(2), rel=1e-4)
    assert json.loads((run / "identity.json").read_text())["reference_model"] == str(tiny_dir)
    with pytest.raises(ValueError, match="scores no reference"):
        forget(make_config("forget", tmp_path, fiu_dir, tiny_dir, "method=ga", f"reference_model={tiny_dir}"))


def test_a_leaf_matched_adapter_saves_and_loads_back(tmp_path: Path, fiu_dir: Path, tiny_dir: Path):
    """lora_match=leaf (MLLMU-Bench's original) adapts the vision tower too; the run's adapter loads strictly."""
    from unlearning.runs.checkpoints import BaseModels, model_source

    run = forget(make_config("forget", tmp_path, fiu_dir, tiny_dir, "benchmark.starts_from=vanilla", "max_steps=1",
                             "batch_size=2", "lora_match=leaf"))
    adapter = load_file(run / "checkpoint" / "adapter_model.safetensors")
    assert any("vision_tower" in key and "lora_A" in key for key in adapter)
    model = BaseModels("float32", "sdpa", merge=False).load(model_source(run))
    assert any("vision_tower" in name and name.endswith("lora_A") for name, _ in model.named_modules())


def test_runs_differing_in_one_setting_both_survive_with_their_evaluations(runs: Path, fiu_dir: Path,
                                                                           tiny_dir: Path, tmp_path: Path):
    root = runs.parents[1]
    before = run_dir(runs, "npo_forget10_")
    other = forget(make_config("forget", root, fiu_dir, tiny_dir, "method=npo", "method.beta=0.5", "max_steps=2",
                               "batch_size=2", "log_every=1"))
    assert other != before and other.name.startswith("npo_forget10_0.0005_8-")
    assert read_run(before)["method"] == read_run(other)["method"] == "npo"
    for run in (before, other):
        evaluate(eval_config(root, fiu_dir, tiny_dir, tmp_path, f"run_dirs=[{run}]", "eval.general=null"))
    assert (before / "eval" / "summary.json").is_file() and (other / "eval" / "summary.json").is_file()
    betas = [yaml.safe_load((run / "config.yaml").read_text())["method"]["beta"] for run in (before, other)]
    assert betas == [0.1, 0.5]


def test_the_same_settings_again_find_the_finished_run(runs: Path, fiu_dir: Path, tiny_dir: Path, caplog):
    caplog.set_level("INFO")
    root = runs.parents[1]
    run = run_dir(runs, "gd_forget10_")
    log_before = (run / "train_log.jsonl").read_text()
    again = forget(make_config("forget", root, fiu_dir, tiny_dir, "method=gd", "max_steps=2", "batch_size=2",
                               "log_every=1"))
    assert again == run and (run / "train_log.jsonl").read_text() == log_before
    assert "already trained with these settings" in caplog.text
    with pytest.raises(RunExists, match=rf"{run.name} already holds a run trained with other settings "
                                        r"\(max_steps: 2 there, 1 now\)"):
        forget(make_config("forget", root, fiu_dir, tiny_dir, "method=gd", "max_steps=1", "batch_size=2",
                           f"run_name={run.name}"))
    assert (run / "run.json").is_file() and (run / "train_log.jsonl").read_text() == log_before


def eval_config(root: Path, fiu_dir: Path, tiny_dir: Path, general: Path, *overrides: str):
    """Evaluation on the small model, with the built-in MME/POPE generated under ``general``."""
    return make_config(
        "eval", root, fiu_dir, tiny_dir, "eval.batch_size=8", "eval.max_new_tokens=8",
        f"eval.general.mme.data_dir={general}/mme", f"eval.general.mme.builtin_dir={general}/mme",
        f"eval.general.pope.data_dir={general}/pope", f"eval.general.pope.builtin_dir={general}/pope", *overrides,
    )


def test_evaluate_then_collect(runs: Path, fiu_dir: Path, tiny_dir: Path, tmp_path: Path, monkeypatch):
    from results_collect import collect

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    root = runs.parents[1]
    n_runs = len(find_runs(runs))  # Stage I full and retain, every method (and runs other tests added)
    summaries = evaluate(eval_config(root, fiu_dir, tiny_dir, tmp_path))
    assert len(summaries) == n_runs >= 2 + len(METHODS)
    retain_run = run_dir(runs, "finetune_retain_")
    retain_summary = json.loads((retain_run / "eval" / "summary.json").read_text())
    assert retain_summary["forget_quality"] == pytest.approx(1.0)  # the reference against itself
    for summary in summaries:
        forget, retain = summary["forget"], summary["retain"]
        assert forget["n"] == 6 and retain["n"] == 9
        assert 0 <= summary["forget_quality"] <= 1 and 0 <= summary["model_utility"] <= 1
        assert 0 <= forget["ape"] <= 1 and 0 < forget["mia"] <= 1 and forget["mia_pp"] > 0
        assert forget["gpt"] is None and summary["judge"]["status"].startswith("skipped: no judge endpoint")
        assert summary["parts"] == {"forget": "forget10.json", "retain": "retain15.json",
                                    "holdout": "holdout.json", "general": "general.json"}
        auc = summary["membership_auc"]
        assert (auc["n_members"], auc["n_nonmembers"]) == (6, 12)
        metrics = summary["metrics"]["all"]  # the schema's typed metrics, each from the table row
        assert metrics["ROUGE-L"]["n"] == 9 and metrics["EM"]["n"] == 6 and metrics["MIA AUC (Min-K++)"]["n"] == 18
        assert metrics["GPT"] == {"value": None, "direction": "higher", "n": None, "judge": "llm", "interval": None,
                                  "note": None}
        assert metrics["forget quality"]["value"] == summary["forget_quality"] and "Avg FQ" not in metrics
        assert all(0 <= auc[k] <= 1 for k in ("loss", "zlib", "mink", "mink_pp"))
        general = summary["general"]
        assert general["mme"]["n"] == 96 and len(general["pope"]["splits"]) == 3
        assert general["acc"] == pytest.approx((general["mme"]["accuracy"] + general["pope"]["accuracy"]) / 2)
    assert len(assert_summaries_fit(runs)) >= len(summaries)  # other tests' runs too
    samples = json.loads((run_dir(runs, "ga_forget10_") / "eval" / "forget10.json").read_text())["samples"]
    assert {"uid", "generation", "rougeL_recall", "exact_match", "truth_ratio", "perturbed_nll", "ape",
            "paraphrase_generations", "mia", "mia_pp", "membership"} <= set(samples[0])
    assert len(samples[0]["paraphrase_generations"]) == 3

    before = (retain_run / "eval" / "forget10.json").stat().st_mtime_ns
    evaluate(eval_config(root, fiu_dir, tiny_dir, tmp_path, f"run_dirs=[{retain_run}]"))
    assert (retain_run / "eval" / "forget10.json").stat().st_mtime_ns == before  # resumed, not recomputed

    rows = collect(root, tmp_path / "results")["fiubench"]
    assert len(rows) == n_runs and {row["method"] for row in rows} >= set(METHODS) | {"stage1_full", "stage1_retain"}
    assert all(row["GPT"] is None and row["Avg MU"] is None and row["Avg FQ"] is not None for row in rows)
    assert (tmp_path / "results" / "fiubench.csv").read_text().count("\n") == len(rows) + 1
    table = (tmp_path / "results" / "fiubench.md").read_text()
    assert "| ROUGE-L ↑ | GPT ↑ | Truth ↑ | ACC ↑ | Avg MU ↑ | KS ↑ | EM ↓ | MIA ↓ | APE ↓ | Avg FQ ↑ |" in table
    results = json.loads((tmp_path / "results" / "fiubench.json").read_text())
    assert results["better"]["forget quality"] == "higher" and results["better"]["EM"] == "lower"
    assert len(results["rows"]) == len(rows) and "run" in results["columns"]
    assert (tmp_path / "results" / "fiubench_tradeoff.png").read_bytes()[:4] == b"\x89PNG"


def test_judge_scores_over_http_and_official_compat(runs: Path, fiu_dir: Path, tiny_dir: Path, tmp_path: Path,
                                                    monkeypatch):
    """GPT through a local OpenAI-compatible server; compat=official changes only what it should."""
    from tests.fake_openai import FakeOpenAI, fake_openai_server

    root, run = runs.parents[1], run_dir(runs, "gd_forget10_")
    overrides = (f"run_dirs=[{run}]", "eval.general=null", f"eval.judge.cache_dir={tmp_path}/cache")
    with fake_openai_server() as url:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-in-env")
        reference, default = evaluate(eval_config(root, fiu_dir, tiny_dir, tmp_path, *overrides))
        assert reference["forget_quality"] == 1.0  # the retain model is evaluated first, as the reference
        prompts = [r["body"]["messages"][-1]["content"] for r in FakeOpenAI.requests]
        assert len(prompts) == len(set(prompts)) <= 2 * (6 + 9)  # identical prompts come from the cache
        assert default["judge"]["status"] == "scored"
        assert default["judge"]["forget"] == {"n": 6, "n_scored": 6, "n_failed": 0, "n_unparseable": 0,
                                              "failures": {}, "complete": True}
        asked = {p.split("Question: ")[1].split("\n")[0] for p in prompts}
        assert len(asked) > 1  # each QA's own question (FIUBench always sent the split's first one)
        _, official = evaluate(eval_config(root, fiu_dir, tiny_dir, tmp_path, *overrides, "compat=official"))
    assert "sk-secret-in-env" not in "".join(p.read_text() for p in run.rglob("*.json"))
    assert official["compat"] == "official" and 0 <= official["forget_quality"] <= 1
    assert official["forget"]["rougeL_recall"] <= default["forget"]["rougeL_recall"] + 1e-9
    assert official["forget"]["probability"] != pytest.approx(default["forget"]["probability"])
    # scored on the original's hand-written prompt and label tokens, fingerprinted as such
    split_file = read_json(run / "eval" / f"{official['forget_split']}.json")
    assert split_file["fingerprint"]["original_prompt"]["answer_tag"] == " ASSISTANT: "
    assert split_file["fingerprint"]["original_prompt"]["generation_prompt"] == "decoded"
    # the original's retain5 (a third of retain15 here) unless retain_split= names another
    assert official["retain_split"] == "retain5" and default["retain_split"] == "retain15"
    assert 0 < official["retain"]["n"] < default["retain"]["n"]


def test_built_in_benchmark_is_generated_once_and_checked(tmp_path: Path, tiny_dir: Path):
    from accelerate import Accelerator

    from unlearning.recipes.common import BUILTIN_MARKER, build_benchmark
    from unlearning.recipes.slices import BenchmarkSlice

    builtin = tmp_path / "builtin"
    settings = ["benchmark.synthetic.n_identities=20", "benchmark.synthetic.qa_per_identity=2",
                "benchmark.synthetic.image_size=32", f"benchmark.builtin_dir={builtin}"]
    cfg = make_config("finetune", tmp_path, builtin, tiny_dir, *settings)
    benchmark = build_benchmark(BenchmarkSlice.from_config(cfg), Accelerator(cpu=True))
    assert len(benchmark.train_examples("full")) == 40 and (builtin / BUILTIN_MARKER).is_file()
    changed = make_config("finetune", tmp_path, builtin, tiny_dir, *settings, "benchmark.synthetic.seed=5")
    with pytest.raises(ValueError, match="delete the folder to regenerate"):
        build_benchmark(BenchmarkSlice.from_config(changed), Accelerator(cpu=True))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_benchmark(BenchmarkSlice.from_config(make_config("finetune", tmp_path, tmp_path / "nope", tiny_dir)),
                        Accelerator(cpu=True))


def test_a_model_that_is_not_a_run_is_evaluated_by_path(runs: Path, fiu_dir: Path, tiny_dir: Path, tmp_path: Path):
    """The tiny model as ``unlearning/models/tiny.py`` saved it, and a forget run's adapter on top of its base."""
    from results_collect import collect_rows

    root = runs.parents[1]
    (summary,) = [s for s in evaluate(eval_config(root, fiu_dir, tiny_dir, tmp_path, f"model_path={tiny_dir}",
                                                  "eval.general=null")) if s["forget_quality"] != 1.0]
    (external,) = runs.glob("external_tiny-llava-*")
    info = read_run(external)
    assert info["kind"] == "external" and info["source"] == {"model_path": str(tiny_dir), "adapter_path": None}
    assert (external / info["base_model"]).resolve() == tiny_dir.resolve()
    assert json.loads((external / "eval" / "summary.json").read_text()) == summary
    assert summary["forget"]["n"] == 6 and 0 <= summary["forget_quality"] <= 1

    ga = run_dir(runs, "ga_forget10_")
    evaluate(eval_config(root, fiu_dir, tiny_dir, tmp_path, f"run_dirs=[{ga}]", "eval.general=null"))
    stage_one = run_dir(runs, "finetune_full_") / "checkpoint"
    evaluate(eval_config(root, fiu_dir, tiny_dir, tmp_path, f"model_path={stage_one}",
                         f"adapter_path={ga / 'checkpoint'}", "eval.general=null"))
    (adapted,) = runs.glob(f"external_{ga.name}-*")
    assert read_run(adapted)["source"]["adapter_path"] == str(ga / "checkpoint")
    same = [json.loads((run / "eval" / "forget10.json").read_text())["samples"] for run in (ga, adapted)]
    assert [s["generation"] for s in same[0]] == [s["generation"] for s in same[1]]  # the same model, by path
    assert [s["truth_ratio"] for s in same[0]] == pytest.approx([s["truth_ratio"] for s in same[1]], rel=1e-5)
    assert {row["method"] for row in collect_rows(root)["fiubench"] if row["run"].startswith("external_")} == {
        "external"}
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        evaluate(eval_config(root, fiu_dir, tiny_dir, tmp_path, f"model_path={tiny_dir}", f"adapter_path={tmp_path}"))


def test_intermediate_checkpoints_give_a_metric_versus_step_table(fiu_dir: Path, tiny_dir: Path, tmp_path: Path):
    from results_collect import collect

    root = tmp_path / "runs"
    finetune(make_config("finetune", root, fiu_dir, tiny_dir, "max_steps=2"))
    run = forget(make_config("forget", root, fiu_dir, tiny_dir, "method=gd", "max_steps=3", "batch_size=2",
                             "save_every=1"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000001", "step_000002"]
    evaluate(eval_config(root, fiu_dir, tiny_dir, tmp_path, f"run_dirs=[{run}]", "steps=all", "eval.general=null"))
    assert sorted(p.name for p in (run / "eval" / "steps").iterdir()) == ["step_000001", "step_000002"]
    first = json.loads((run / "eval" / "steps" / "step_000001" / "forget10.json").read_text())["samples"]
    final = json.loads((run / "eval" / "forget10.json").read_text())["samples"]
    assert [s["answer_nll"] for s in first] != [s["answer_nll"] for s in final]  # other weights
    collect(root, tmp_path / "results")
    table = (tmp_path / "results" / "fiubench_steps.csv").read_text().splitlines()
    assert table[0].startswith("model,step,run,method") and [line.split(",")[1] for line in table[1:]] == [
        "1", "2", "3"]
    assert (tmp_path / "results" / "fiubench_steps.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FileNotFoundError, match="no checkpoint for steps \\[5\\]"):
        evaluate(eval_config(root, fiu_dir, tiny_dir, tmp_path, f"run_dirs=[{run}]", "steps=[5]"))


def test_bad_streams_and_spans_stop_before_training(runs: Path, fiu_dir: Path, tiny_dir: Path, tmp_path: Path,
                                                    mllmu_dir: Path, monkeypatch):
    from fiubench.benchmark import FiuBenchTask
    from unlearning.data.examples import DataError, span_example
    from unlearning.data.streams import StreamError

    root = runs.parents[1]
    composed = ["method.name=ga_pd", "+method.base={name: ga}", "+method.terms=[{loss: nll, stream: decoupld}]"]
    with pytest.raises(StreamError, match="method 'ga_pd' names unknown stream 'decoupld'; benchmark 'fiubench' "
                                          "provides forget, retain, refusal"):
        forget(make_config("forget", root, fiu_dir, tiny_dir, *composed))
    with pytest.raises(StreamError, match="method 'po' needs stream 'refusal', which benchmark 'mllmu' does not "
                                          r"provide \(it provides forget, retain; 'refusal' comes with clear, "
                                          r"fiubench, safeeraser, umu\)"):
        forget(make_config("forget", tmp_path, mllmu_dir, tiny_dir, "benchmark=mllmu", "method=po"))

    def spans(self, name: str, forget_split: str):  # a release whose span positions run past their text
        return [span_example(qa.question, qa.answer, 0, len(qa.answer) + (40 if i == 3 else 0), final=True,
                             where=f"{self.data_dir}/full.json record {i}", uid=qa.uid)
                for i, qa in enumerate(self.data.qas(forget_split))]

    monkeypatch.setattr(FiuBenchTask, "stream", spans)
    before = sorted(p.name for p in runs.iterdir())
    with pytest.raises(DataError, match=r"benchmark 'fiubench', method 'ga', stream 'forget': .*full.json record 3: "
                                        r"span \[0, \d+\) lies outside its text"):
        forget(make_config("forget", root, fiu_dir, tiny_dir, "method=ga", "max_steps=1", "run_name=never"))
    assert sorted(p.name for p in runs.iterdir()) == before  # nothing was created


@pytest.mark.parametrize(("override", "error", "message"), [
    ("eval.decoding.n=2", ValueError, "decoding n must be 1 for greedy decoding"),
    ("eval.decoding.sample=true eval.decoding.n=3", ValueError, "FIUBench scores one answer per question"),
    ("forget_split=forget7", Exception, "unknown split 'forget7'"),
    ("compat.mode=paper", ValueError, "compat must be one of"),
    ("+eval.general.pope.colour=red", ValueError, "eval.general.pope: .*colour"),
])
def test_evaluation_settings_are_checked_before_any_run_or_model(tmp_path: Path, fiu_dir: Path, tiny_dir: Path,
                                                                 override: str, error: type, message: str):
    """An empty run root: an error about the settings (not "no finished runs") shows they are checked first."""
    with pytest.raises(error, match=message):
        evaluate(eval_config(tmp_path / "empty", fiu_dir, tiny_dir, tmp_path, *override.split()))
