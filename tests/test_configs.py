"""Every shipped config composes, binds to what it names, and every accelerate config parses; benchmark recipes
give each (benchmark, model) its own training defaults."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from hydra import compose, initialize_config_dir

from unlearning.models.loading import PARTS
from unlearning.recipes.common import CONFIG_DIR, with_compat
from unlearning.training.methods import build_method

CONFIG = Path(CONFIG_DIR)
MODELS = sorted(p.stem for p in (CONFIG / "model").glob("*.yaml"))
METHODS = sorted(p.stem for p in (CONFIG / "method").glob("*.yaml"))
BENCHMARKS = sorted(p.stem for p in (CONFIG / "benchmark").glob("*.yaml"))


def compose_config(name: str, *overrides: str):
    """The config as a recipe sees it: composed, then its compat switches' values set (``with_compat``)."""
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        cfg = compose(name, overrides=list(overrides))
    if "compat" in cfg:
        with_compat(cfg, "eval" if name == "eval" else "train")
    return cfg


@pytest.mark.parametrize("benchmark", BENCHMARKS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("recipe", ["finetune", "forget", "eval"])
def test_recipe_composes_with_every_model_and_benchmark(recipe: str, model: str, benchmark: str):
    cfg = compose_config(recipe, f"model={model}", f"benchmark={benchmark}")
    assert set(cfg.model.modules) == set(PARTS) and cfg.model.lora_targets
    assert cfg.run_root == "runs" and cfg.data_dir == f"dataset/builtin/{benchmark}"
    assert cfg.benchmark.starts_from in ("stage_one", "vanilla")
    if recipe == "eval":
        assert cfg.eval.batch_size > 0 and cfg.eval.max_new_tokens > 0
    else:
        assert cfg.lr > 0 and cfg.epochs > 0 and cfg.run_name is None and cfg.run_label


def test_paper_model_carries_fiubench_lora_settings():
    cfg = compose_config("forget", "model=llava_phi3_mini", "forget_split=forget5", "method=kl",
                         "data_dir=dataset/FIUBench")
    assert (cfg.lora.r, cfg.lora.alpha, cfg.tune.vision_tower, cfg.tune.projector) == (128, 256, False, True)
    assert (cfg.grad_accum, cfg.batch_size, cfg.weight_decay, cfg.warmup_ratio) == (16, 4, 0.01, 0.06)
    assert cfg.run_label == "kl_forget5_0.0001_5"
    assert compose_config("forget", "model=llava_phi3_mini", "method=po").lr == 3e-4


def test_each_benchmark_owns_its_recipe_per_model():
    """The system prompt and training settings come from config/recipe/<benchmark>_<model>.yaml over
    config/benchmark/<benchmark>.yaml, not from the model."""
    llava = compose_config("finetune", "model=llava_1_5_7b", "benchmark=fiubench")
    assert llava.system_prompt.startswith("A chat between a curious human")
    assert compose_config("finetune", "model=llava_phi3_mini", "benchmark=fiubench").system_prompt is None
    for benchmark in ("fiubench", "mllmu"):  # the tiny model's measured rates
        tiny = compose_config("forget", "model=tiny", f"benchmark={benchmark}", "method=gd")
        assert (tiny.lr, tiny.epochs, tiny.lora.r, tiny.lora.alpha) == (2e-4, 8, 32, 64)
        assert "finetune" not in compose_config("finetune", f"benchmark={benchmark}").model
    assert compose_config("finetune", "model=qwen2_vl_7b").lr == 1e-5
    assert compose_config("forget", "model=qwen2_vl_7b", "method=po").lr == 1e-4  # no per-method rate there
    edited = compose_config("forget", "benchmark=mllmu", "benchmark.recipe.forget.epochs=1")
    assert edited.epochs == 1 and compose_config("forget").epochs == 8
    safe = compose_config("forget", "model=llava_1_5_7b", "benchmark=safeeraser", "method=ga_pd")
    assert (safe.lr, safe.epochs, safe.lora.r, safe.lora.alpha, safe.batch_size, safe.grad_accum) == (
        1e-4, 10, 32, 256, 1, 16)  # SafeEraser's forget_lora.yaml
    assert safe.benchmark.starts_from == "vanilla" and "curious user" in safe.system_prompt
    assert compose_config("forget", "benchmark=safeeraser").benchmark.starts_from == "stage_one"  # tiny: built here


@pytest.mark.parametrize("model", ["llava_1_5_7b", "idefics2_8b", "llava_phi3_mini"])
def test_mllmu_runs_with_its_own_recipe(model: str):
    """MLLMU-Bench's README, finetune.py and baselines/*.py: not FIUBench's values."""
    vanilla = compose_config("finetune", f"model={model}", "benchmark=mllmu")
    assert vanilla.system_prompt is None
    assert (vanilla.lr, vanilla.epochs, vanilla.batch_size, vanilla.grad_accum, vanilla.lora.r, vanilla.lora.alpha,
            vanilla.scheduler, vanilla.warmup_ratio, vanilla.weight_decay, vanilla.max_grad_norm) == (
        2e-5, 5, 4, 1, 16, 16, "linear", 0.0, 0.0, 0.0)
    for method in ("ga", "gd", "kl", "npo"):
        forget = compose_config("forget", f"model={model}", "benchmark=mllmu", f"method={method}")
        assert (forget.lr, forget.epochs, forget.batch_size, forget.grad_accum, forget.lora.r, forget.lora.alpha,
                forget.weight_decay, forget.max_grad_norm, forget.tune.projector) == (
            2e-5, 1, 4, 1, 16, 16, 0.0, 0.0, False)
    assert compose_config("forget", f"model={model}", "benchmark=mllmu", "method=npo").method.beta == 0.4
    assert compose_config("forget", f"model={model}", "benchmark=fiubench", "method=npo").method.beta == 0.1
    assert compose_config("forget", "benchmark=mllmu", "method=npo").method.beta == 0.4  # the tiny recipe too
    assert compose_config("forget", "benchmark=mllmu", "method=npo", "method.beta=0.2").method.beta == 0.2


def test_efuf_recipe_is_the_original_for_llava():
    efuf = compose_config("forget", "model=llava_1_5_7b", "benchmark=efuf", "method=efuf")
    assert (efuf.lr, efuf.epochs, efuf.batch_size, efuf.lora.r, efuf.weight_decay, efuf.max_grad_norm) == (
        1e-5, 1, 1, 0, 0.05, 0.0)
    assert dict(efuf.tune) == {"vision_tower": False, "projector": True, "language_model": False}
    assert efuf.benchmark.starts_from == "vanilla" and efuf.forget_split == "curated"


@pytest.mark.parametrize("method", METHODS)
def test_method_configs_build(method: str):
    assert build_method(compose_config("forget", f"method={method}").method)


def test_aggregate_config():
    assert compose_config("aggregate").out_dir == "results"


@pytest.mark.parametrize("path", sorted((CONFIG / "accelerate").glob("*.yaml")), ids=lambda p: p.stem)
def test_accelerate_configs_parse(path: Path):
    config = load_config_from_file(str(path))
    assert config.num_processes >= 1
    if path.stem.startswith("zero"):
        assert config.distributed_type.value == "DEEPSPEED" and config.deepspeed_config["zero_stage"] in (2, 3)


def test_learning_rate_per_method_falls_back_to_the_model_default():
    assert compose_config("forget", "method=ga").lr == 5e-4  # tiny: method_lr.ga
    assert compose_config("forget", "method=gd").lr == 2e-4  # tiny: forget.lr
    assert compose_config("forget", "method=po", "model=llama32_vision_11b").lr == 3e-4
    assert compose_config("forget", "method=ga", "model=llama32_vision_11b").lr == 2e-5
    assert compose_config("forget", "method=po", "lr=7e-4").lr == 7e-4  # an explicit override wins


def test_fiubench_compat_evaluates_retain5():
    """The original eval.yaml's retain split under compat=official, unless the user names one."""
    assert compose_config("eval").retain_split == "retain15"
    assert compose_config("eval", "compat=official").retain_split == "retain5"
    assert compose_config("eval", "compat.retain5=true").retain_split == "retain5"  # the switch alone
    assert compose_config("eval", "compat=official", "compat.retain5=false").retain_split == "retain15"
    assert compose_config("eval", "compat=official", "retain_split=retain15").retain_split == "retain15"


def test_a_switch_alone_and_a_misspelt_one():
    alone = compose_config("forget", "compat.file_order=true")
    assert (alone.shuffle, alone.decay_exempt) == (False, "1d")  # only that switch's value
    with pytest.raises(Exception, match="compat.file_ordr"):
        compose_config("forget", "compat.file_ordr=true")
    with pytest.raises(Exception, match="compat/paper"):
        compose_config("forget", "compat=paper")


def test_fiubench_compat_trains_in_file_order_with_bias_only_decay_exemption():
    for name in ("finetune", "forget"):
        default = compose_config(name)
        official = compose_config(name, "compat=official")
        assert (default.shuffle, default.decay_exempt) == (True, "1d")
        assert (official.shuffle, official.decay_exempt) == (False, "bias")
        mllmu = compose_config(name, "benchmark=mllmu", "compat=official")  # its original shuffled: no such switch
        assert (mllmu.shuffle, mllmu.decay_exempt) == (True, "1d")


def test_po_under_compat_is_one_token_mean_over_the_concatenated_batch():
    for method in ("po", "po_pd"):
        default = build_method(compose_config("forget", "benchmark=safeeraser", f"method={method}").method)
        official = build_method(compose_config("forget", "benchmark=safeeraser", f"method={method}",
                                               "compat=official").method)
        assert (getattr(default, "base", None) or default).joint is False
        assert (getattr(official, "base", None) or official).joint is True


def test_kl_under_compat_is_each_originals():
    def kl(benchmark: str, *overrides: str):
        method = build_method(compose_config("forget", f"benchmark={benchmark}", "method=kl", *overrides).method)
        return method.reduction, method.retain_nll

    assert kl("fiubench") == kl("mllmu") == kl("safeeraser") == ("answer_tokens", 0.0)
    assert kl("fiubench", "compat=official") == kl("safeeraser", "compat=official") == ("all_positions", 0.0)
    assert kl("mllmu", "compat=official") == ("all_positions_per_row", 1.0)
    kl_pd = build_method(compose_config("forget", "benchmark=safeeraser", "method=kl_pd", "compat=official").method)
    assert kl_pd.base.reduction == "all_positions" and kl_pd.needs_full_logits


def test_npo_under_compat_is_mllmus_batch_mean():
    def npo(benchmark: str, *overrides: str):
        method = build_method(compose_config("forget", f"benchmark={benchmark}", "method=npo", *overrides).method)
        return method.granularity, method.beta

    assert npo("mllmu") == ("sequence", 0.4) and npo("fiubench", "compat=official") == ("sequence", 0.1)
    assert npo("mllmu", "compat=official") == ("batch_token_mean", 0.4)
    assert compose_config("forget", "reference_model=runs/oracle").reference_model == "runs/oracle"


def test_lora_targets_under_compat_are_mllmus_leaf_names():
    for name in ("finetune", "forget"):
        assert compose_config(name, "benchmark=mllmu").lora_match == "path"
        assert compose_config(name, "benchmark=mllmu", "compat=official").lora_match == "leaf"
        assert compose_config(name, "benchmark=fiubench", "compat=official").lora_match == "path"


def test_mllmu_judge_temperature_under_compat_is_the_apis_default():
    assert compose_config("eval", "benchmark=mllmu").eval.judge.temperature == 0.0
    assert compose_config("eval", "benchmark=mllmu", "compat=official").eval.judge.temperature is None
    assert compose_config("eval", "benchmark=fiubench", "compat=official").eval.judge.temperature == 0.0


def test_mllmu_shots_per_model_as_the_original():
    assert dict(compose_config("eval", "benchmark=mllmu", "model=llava_1_5_7b").benchmark.eval_options.shots) == {
        "classification": 1, "cloze": 2}
    assert dict(compose_config("eval", "benchmark=mllmu", "model=idefics2_8b").benchmark.eval_options.shots) == {
        "classification": 1, "cloze": 1}
    assert compose_config("eval", "benchmark=mllmu", "benchmark.recipe.eval.shots.cloze=0"
                          ).benchmark.eval_options.shots.cloze == 0  # the demo's override


def test_mllmu_compat_labels_the_whole_sequence():
    for name in ("finetune", "forget"):
        assert compose_config(name, "benchmark=mllmu").label_scope == "answer"
        assert compose_config(name, "benchmark=mllmu", "compat=official").label_scope == "sequence"
        assert compose_config(name, "benchmark=fiubench", "compat=official").label_scope == "answer"


def test_fiubench_compat_renders_the_original_prompt_and_capitalises():
    official = compose_config("forget", "model=llava_1_5_7b", "compat=official")
    assert official.original_prompt.answer_tag == " ASSISTANT: " and official.benchmark.options.capitalize is True
    assert compose_config("forget", "model=llava_phi3_mini", "compat=official").original_prompt.answer_tag == (
        "<|end|>\n<|assistant|>\n")
    assert compose_config("forget", "model=llava_1_5_7b").original_prompt is None
    assert compose_config("eval", "compat=official").benchmark.eval_options.original_prompt.question_start_tag == (
        "USER: ")
    assert compose_config("forget", "model=qwen2_vl_7b", "compat=official").original_prompt is None  # not FIUBench's


@pytest.mark.parametrize("benchmark", ["fiubench", "mllmu", "safeeraser", "efuf"])
@pytest.mark.parametrize("name", ["finetune", "forget"])
def test_evaluation_settings_stay_out_of_the_training_identity(name: str, benchmark: str):
    """A setting added to a benchmark's config for evaluation (its robustness tables, judge, general evaluations)
    must not rename every trained run: the benchmark section of the identity holds only what trains."""
    from omegaconf import OmegaConf

    from unlearning.runs.identity import training_identity

    with initialize_config_dir(CONFIG_DIR, version_base=None):
        cfg = compose(name, overrides=[f"benchmark={benchmark}"])
    identity = training_identity(OmegaConf.to_container(cfg, resolve=True), "base")
    assert set(identity["benchmark"]) <= {"name", "options", "synthetic", "curation"}, sorted(identity["benchmark"])
    # settings added later are left out at their defaults, so runs trained before keep their names
    assert "min_separation" not in identity["benchmark"].get("curation", {})
