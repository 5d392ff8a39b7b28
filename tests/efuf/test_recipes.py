"""EFUF end to end on the small model: the captioner, curation (CLIP and COCO labels), forgetting, evaluation, the
table, and the launchers as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from efuf.benchmark import EfufTask
from efuf.chair_original import has_wordnet
from efuf.curation import curate_folder
from efuf.synthetic import write_efuf
from results_collect import collect
from tests.conftest import SMALL_MODEL, assert_summaries_fit
from unlearning.data.streams import StreamError
from unlearning.models.tiny import build_tiny_model
from unlearning.recipes.common import CONFIG_DIR
from unlearning.recipes.evaluate import evaluate
from unlearning.recipes.finetune import finetune
from unlearning.recipes.forget import forget
from unlearning.runs.folders import read_run
from unlearning.runs.io import read_json
from unlearning.training.methods import build_method

REPO = Path(__file__).resolve().parents[2]
EVAL = ("eval.batch_size=8", "eval.max_new_tokens=12", "benchmark.recipe.eval.n_images=4")


def build_world(root: Path) -> tuple[Path, Path, Path]:
    """(data folder, small model, CLIP folder) with a finetuned captioner under ``root``/runs."""
    data = root / "data"
    write_efuf(data, n_pretrain=6, n_images=10, image_size=240, seed=3)
    model = build_tiny_model("llava", root / "model", EfufTask(data).texts(), **SMALL_MODEL)
    finetune(config("finetune", root, data, model, "max_steps=60", "lr=3e-3"))  # enough to write captions
    return data, model, root / "clip"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path, Path]:
    return build_world(tmp_path_factory.mktemp("efuf"))


def ensure_a_negative(data: Path) -> None:
    """A captioner trained for seconds may name no absent object: then one curated clause is made a negative."""
    if not EfufTask(data).stream("forget", "curated"):
        clauses = read_json(data / "pos_neg.json")
        clauses[0]["score"] = 15.0
        (data / "pos_neg.json").write_text(json.dumps(clauses))


def config(name: str, root: Path, data: Path, model: Path, *overrides: str):
    common = ["benchmark=efuf", f"run_root={root}/runs", f"data_dir={data}", f"model.path={model}",
              f"benchmark.recipe.curation.clip_path={root}/clip", "benchmark.recipe.curation.n_images=5",
              "benchmark.recipe.curation.tiny_clip.steps=20", "benchmark.recipe.eval.max_new_tokens=12"]
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose(name, overrides=[*common, *overrides])


def test_curation_forgetting_and_evaluation(world, tmp_path: Path):
    data, model, clip = world
    root = data.parent
    stats = curate_folder(config("curate", root, data, model))
    assert stats["captions"] == 5 and (clip / "config.json").is_file()
    assert stats["separation"]["n_present"] + stats["separation"]["n_absent"] == stats["objects"]
    assert stats["clauses"] >= stats["negatives"] + stats["positives"]
    for name in ("captions.txt", "pos_neg.json", "sentences.json", "curation.json"):
        assert (data / name).is_file()
    assert curate_folder(config("curate", root, data, model)) == read_json(data / "curation.json")  # found, kept
    with pytest.raises(FileExistsError, match="curation.overwrite=true"):
        curate_folder(config("curate", root, data, model, "benchmark.curation.labels=coco"))
    assert "partial_edges" not in stats["identity"]["curation"]["windows"]  # folders curated before it keep theirs
    with pytest.raises(FileExistsError, match="curation.overwrite=true"):  # the original's edge windows: other data
        curate_folder(config("curate", root, data, model, "compat=official"))
    coco = curate_folder(config("curate", root, data, model, "benchmark.curation.labels=coco",
                                "benchmark.curation.overwrite=true"))
    clauses = read_json(data / "pos_neg.json")
    assert {c["score"] for c in clauses} <= {40.0, 15.0} and coco["labels"] == "coco"
    # COCO labels are the annotations: every absent object scores as a negative, every present one as a positive
    separation = coco["separation"]
    assert separation.get("absent_below_neg", 1.0) == 1.0 and separation.get("present_above_pos", 1.0) == 1.0
    ensure_a_negative(data)
    run = forget(config("forget", root, data, model, "method=efuf", "max_steps=2", "log_every=1"))
    info = read_run(run)
    assert info["streams"] == {"forget": "aligned", "positive": "random", "gold": "random"}
    assert (run / "checkpoint" / "config.json").is_file()  # lora.r = 0: a full model, evaluated as such
    steps = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert steps[0]["w_sequence_ascent_forget"] == pytest.approx(0.3)
    summaries = evaluate(config("eval", root, data, model, *EVAL))
    assert len(summaries) == 2
    for summary in summaries:
        captions = summary["captions"]
        assert captions["n_captions"] == 4 and 0 <= captions["chair_i"] <= 1 and 0 <= captions["bleu4"] <= 1
    samples = read_json(run / "eval" / "captions.json")["samples"]
    curated = {line.split(" ### ")[0] for line in (data / "captions.txt").read_text().splitlines()}
    assert not curated & {s["image"] for s in samples}  # evaluated on images curation did not use
    rows = collect(root / "runs", tmp_path / "results")["efuf"]
    assert sorted(row["method"] for row in rows) == ["efuf", "vanilla_full"]
    for summary in assert_summaries_fit(root / "runs", 2):
        assert summary["metrics"]["all"]["CHAIR_s"]["n"] == summary["captions"]["n_captions"] > 0
        # images resampled: every caption column has an interval
        assert summary["bootstrap"]["strata"]["images"]["units"] == 4
        assert all(summary["metrics"]["all"][c]["interval"] is not None
                   for c in ("CHAIR_s", "CHAIR_i", "BLEU-1", "BLEU-2", "BLEU-4", "Length", "Grounded"))
    table = (tmp_path / "results" / "efuf.md").read_text()
    assert "| CHAIR_s ↓ | CHAIR_i ↓ | BLEU-1 ↑ | BLEU-2 ↑ | BLEU-4 ↑ | Length | Grounded ↑ | POPE ↑ | MME ↑ |" in table
    assert " ± " in table
    check_attacks(root, data, model, run, tmp_path / "attacked")
    general = [f"eval.general.pope.{key}={tmp_path}/pope" for key in ("data_dir", "builtin_dir")]
    wordnet = [] if has_wordnet() else ["compat.chair_as_original=false"]  # its own tests skip without it
    (official,) = evaluate(config("eval", root, data, model, *EVAL, "compat=official", f"run_dirs=[{run}]",
                                  "benchmark.general_evals=[pope]", *general, *wordnet))
    assert official["compat"] == "official" and 0 <= official["general"]["pope"]["accuracy"] <= 1
    fingerprint = read_json(run / "eval" / "captions.json")["fingerprint"]
    decoding = fingerprint["decoding"]
    assert decoding["num_beams"] == 5 and decoding["length_penalty"] == 0.0  # common/args.py:259-261
    assert fingerprint["chair"]["reader"] == ("original" if not wordnet else "toolkit")
    (row,) = EfufTask.table_rows(read_run(run), official)
    assert row["POPE"] == pytest.approx(100 * official["general"]["pope"]["accuracy"]) and row["MME"] is None
    assert official["metrics"]["all"]["POPE"]["interval"] is None  # no per-image results of POPE: no interval


def check_attacks(root: Path, data: Path, model: Path, run: Path, tables: Path) -> None:
    """Attacks on EFUF: the captioner it starts from is the baseline; relearning trains on some curated images'
    hallucinated clauses and evaluates every held-out image."""
    attacks = ("relearn_0", "relearn_2", "quantize_8bit", "image_rephrase")
    summaries = evaluate(config("eval", root, data, model, *EVAL, f"run_dirs=[{run}]", f"attacks.table_dir={tables}",
                                "attack=[relearn,quantize_8bit,image_rephrase]", "attacks.relearn.steps=[0,2]",
                                "attacks.relearn.lr=3e-3", "eval.bootstrap.resamples=50"))
    assert len(summaries) == 2 * len(attacks)  # the captioner first, then the EFUF run
    vanilla = next(p.parent for p in (root / "runs").rglob("identity.json") if read_run(p.parent)["split"] == "full")
    plain = read_json(run / "eval" / "captions.json")["samples"]
    for folder in (vanilla, run):
        relearned = read_json(folder / "eval" / "attacks" / "relearn_2" / "summary.json")
        assert relearned["relearn"]["restricted_fields"] == [] and relearned["captions"]["n_captions"] == 4
        assert relearned["attack"]["relearn"]["split"]["n_relearn"] >= 1
    assert read_json(run / "eval" / "attacks" / "relearn_0" / "captions.json")["samples"] == plain
    assert read_json(run / "eval" / "attacks" / "relearn_2" / "captions.json")["samples"] != plain
    table = json.loads((tables / "efuf_robustness.json").read_text())
    assert {(row["run"], row["attack"]) for row in table["rows"]} == {
        (folder.name, attack) for folder in (vanilla, run) for attack in ("none", *attacks)}
    assert "| CHAIR_s ↓ |" in (tables / "efuf_robustness.md").read_text()


def test_methods_needing_a_reference_need_an_adapter(world):
    data, model, _ = world
    with pytest.raises(ValueError, match="needs lora.r > 0"):
        forget(config("forget", data.parent, data, model, "method=npo", "max_steps=1"))


def test_launchers_run_efuf(world, tmp_path: Path):
    """As a user runs it: curate_efuf.bash, forget_lora.bash benchmark=efuf, eval_everything.bash, results_collect."""
    _, model, clip = world
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}
    env.pop("ACCELERATE_CONFIG", None)
    common = ["benchmark=efuf", f"run_root={tmp_path}/runs", f"data_dir={tmp_path}/data", f"model.path={model}",
              f"benchmark.recipe.curation.clip_path={clip}", "benchmark.recipe.curation.n_images=5"]

    def run(*command: str) -> None:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]

    write_efuf(tmp_path / "data", n_pretrain=6, n_images=10, image_size=240, seed=3)
    run("bash", "scripts/finetune.bash", *common, "max_steps=60", "lr=3e-3")
    run("bash", "scripts/curate_efuf.bash", *common, "benchmark.curation.labels=coco")
    assert read_json(tmp_path / "data" / "curation.json")["captions"] == 5
    # the released files read the same way: a user who skips curation writes them (here by hand)
    image = "COCO_train2014_000000000001.jpg"
    (tmp_path / "data" / "pos_neg.json").write_text(json.dumps([
        {"image": image, "sentence": "A photo of a dog, a frisbee is next to it", "position": 17, "score": 18.5},
        {"image": image, "sentence": "A photo of a dog", "position": 0, "score": 36.0}]))
    (tmp_path / "data" / "sentences.json").write_text(json.dumps([
        {"image": image, "sentence": "A photo of a dog.", "mean": 36.0, "min": 36.0}]))
    run("bash", "scripts/forget_lora.bash", *common, "method=efuf_sentence", "max_steps=1")
    run("bash", "scripts/eval_everything.bash", *common, *EVAL)
    run(sys.executable, "results_collect.py", f"run_root={tmp_path}/runs", f"out_dir={tmp_path}/results")
    rows = json.loads((tmp_path / "results" / "efuf.json").read_text())["rows"]
    assert sorted(row["method"] for row in rows) == ["efuf_sentence", "vanilla_full"]


KEEPING_A_RETAIN_SET = ("simnpo", "idkdpo", "wga", "rmu", "mmunlearner", "manu")  # UNDIAL by default keeps none


@pytest.mark.parametrize("method", KEEPING_A_RETAIN_SET)
def test_a_method_needing_a_stream_efuf_lacks_says_so_before_any_model_loads(world, method: str):
    """EFUF's streams are forget, positive, sentence and gold: the baselines that keep a retain set (or prefer a
    refusal) are refused, naming the stream and the benchmarks that have it (docs/methods.md)."""
    data, model, _ = world
    with pytest.raises(StreamError, match=r"needs stream '(retain|refusal)', which benchmark 'efuf' does not provide"):
        forget(config("forget", data.parent, data, model, f"method={method}"))


@pytest.mark.parametrize("method", ["simnpo", "wga", "undial"])
def test_the_forget_terms_alone_fit_efufs_streams(method: str):
    cfg = config("forget", Path("runs"), Path("."), Path("."), f"method={method}", "method.retain_weight=0")
    assert {use.name for use in build_method(cfg.method).streams()} <= set(EfufTask.stream_names)
