"""A recipe's config read into typed slices: a bad value names its setting and stops the recipe before any data,
model or run folder is touched."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from unlearning.recipes.common import CONFIG_DIR
from unlearning.recipes.evaluate import evaluate
from unlearning.recipes.finetune import finetune
from unlearning.recipes.forget import forget
from unlearning.recipes.slices import EvalConfig, SettingError, TrainingConfig, accumulation


def config(name: str, root: Path, *overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose(name, overrides=[f"run_root={root}/runs", f"data_dir={root}/data",
                                        f"benchmark.builtin_dir={root}/data", f"model.path={root}/model",
                                        *overrides])


def test_slices_of_the_shipped_configs(tmp_path: Path):
    forget_config = TrainingConfig.from_config(config("forget", tmp_path), "forget")
    assert forget_config.forget.split == "forget10" and forget_config.tune.r > 0 and forget_config.split is None
    assert forget_config.group_dir == tmp_path / "runs" / "fiubench" / "tiny"
    assert forget_config.resolved["method"]["name"] == "ga"  # the whole config, for the run's identity
    finetune_config = TrainingConfig.from_config(config("finetune", tmp_path), "finetune")
    assert finetune_config.split == "full" and finetune_config.forget is None and finetune_config.tune.r == 0
    evaluation = EvalConfig.from_config(config("eval", tmp_path, "steps=[6,12]"))
    assert evaluation.steps == (6, 12) and evaluation.general_evals == ("mme", "pope")


def test_the_effective_batch_on_any_launch(tmp_path: Path, monkeypatch):
    """SafeEraser's recipe states 32 sequences per optimiser step (the original's 1 x 16 x 2 GPUs): the
    accumulation follows the launch, so one process and two optimise alike."""
    assert accumulation(32, 1, 16, processes=1) == 32 and accumulation(32, 1, 16, processes=2) == 16
    assert accumulation(None, 1, 16, processes=8) == 16  # not stated: grad_accum as given
    with pytest.raises(SettingError, match="effective_batch 32 is not a multiple of batch_size 3 x 2 processes"):
        accumulation(32, 3, 16, processes=2)
    safe = ("benchmark=safeeraser", "model=llava_1_5_7b")
    for processes, expected in (("1", 32), ("2", 16)):
        monkeypatch.setenv("WORLD_SIZE", processes)
        train = TrainingConfig.from_config(config("forget", tmp_path, *safe), "forget").train
        assert (train.batch_size, train.grad_accum) == (1, expected)
    tiny = TrainingConfig.from_config(config("forget", tmp_path, "benchmark=safeeraser"), "forget").train
    assert tiny.grad_accum == 1  # the tiny recipe keeps its own batch
    monkeypatch.setenv("WORLD_SIZE", "2")  # FIUBench's scripts: Stage I 3 x 16 = 48, forgetting 4 x 16 = 64, 1 GPU
    fiu = ("benchmark=fiubench", "model=llava_phi3_mini")
    assert TrainingConfig.from_config(config("finetune", tmp_path, *fiu), "finetune").train.grad_accum == 8
    assert TrainingConfig.from_config(config("forget", tmp_path, *fiu), "forget").train.grad_accum == 8


def test_lora_init_and_adam_eps_per_recipe(tmp_path: Path):
    """MLLMU-Bench's recipes initialise LoRA and AdamW as its code did (gaussian, eps 1e-6); the tiny recipes keep
    the defaults their tables were measured with; the other benchmarks use peft's and torch's defaults."""
    def init(*overrides: str) -> str:
        return TrainingConfig.from_config(config("forget", tmp_path, *overrides), "forget").tune.init

    assert init("benchmark=mllmu", "model=llava_1_5_7b") == "gaussian"
    mllmu = TrainingConfig.from_config(config("forget", tmp_path, "benchmark=mllmu", "model=llava_1_5_7b"), "forget")
    assert mllmu.train.adam_eps == 1e-6  # transformers.AdamW's, which MLLMU-Bench used
    assert TrainingConfig.from_config(config("forget", tmp_path, "benchmark=mllmu"), "forget").train.adam_eps == 1e-8
    assert init("benchmark=mllmu") == "default" and init() == "default"
    with pytest.raises(SettingError, match="lora.init must be one of"):
        init("lora.init=orthogonal")


def test_evaluation_precision(tmp_path: Path):
    """eval.dtype (null: the model's); under compat fp16 for models held in bf16, as the originals evaluated."""
    from unlearning.recipes.common import with_compat

    assert EvalConfig.from_config(config("eval", tmp_path)).eval_dtype == "float32"  # the tiny model's
    assert EvalConfig.from_config(config("eval", tmp_path, "eval.dtype=bfloat16")).eval_dtype == "bfloat16"
    for benchmark in ("fiubench", "mllmu", "safeeraser", "efuf"):
        cfg = config("eval", tmp_path, f"benchmark={benchmark}", "model=llava_1_5_7b", "compat=official")
        with_compat(cfg, "eval")
        assert EvalConfig.from_config(cfg).eval_dtype == "float16", benchmark
        tiny = config("eval", tmp_path, f"benchmark={benchmark}", "compat=official")
        with_compat(tiny, "eval")
        assert EvalConfig.from_config(tiny).eval_dtype == "float32", benchmark
    with pytest.raises(SettingError, match="eval.dtype must be one of"):
        EvalConfig.from_config(config("eval", tmp_path, "eval.dtype=float8"))


@pytest.mark.parametrize(("recipe", "override", "message"), [
    ("forget", "model.dtype=float8", "model.dtype must be one of"),
    ("forget", "lora.r=-1", "lora.r must be a whole number >= 0"),
    ("forget", "lora.dropout=1.5", r"lora.dropout must be in \[0, 1\)"),
    ("forget", "tune.projector=maybe", "tune.projector must be true or false"),
    ("forget", "save_every=0", "save_every must be a whole number >= 1"),
    ("forget", "report_to=comet", "report_to must be none or among"),
    ("forget", "forget_modality=audio", "forget_modality must be one of"),
    ("forget", "label_scope=prompt", "label_scope must be one of"),
    ("forget", "lr=abc", "lr must be a number"),
    ("finetune", "overwrite=maybe", "overwrite must be true or false"),
    ("finetune", "pixel_cache_mb=-1", "pixel_cache_mb must be a whole number >= 0"),
    ("eval", "steps=[a]", "steps must be null, all or a list"),
    ("eval", "adapter_path=/x", "adapter_path goes with model_path"),
    ("eval", "eval.merge_adapters=sometimes", "eval.merge_adapters must be true or false"),
])
def test_a_bad_setting_is_named_before_anything_is_touched(tmp_path: Path, recipe: str, override: str,
                                                           message: str):
    run = {"forget": forget, "finetune": finetune, "eval": evaluate}[recipe]
    with pytest.raises(SettingError, match=message):
        run(config(recipe, tmp_path, override))
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()  # no data generated, no run


@pytest.mark.parametrize(("original", "message"), [
    ({"answer_tag": " A: ", "generation_prompt": "bogus"}, "generation_prompt must be one of"),
    ({"answer_tag": " A: ", "answer_tga": "x"}, "answer_tga"),
    ({"question_start_tag": "Q: "}, "needs its answer_tag"),
])
def test_original_prompt_checked_before_work_starts(original: dict, message: str):
    from omegaconf import OmegaConf

    from unlearning.recipes.slices import PromptSlice

    with pytest.raises(SettingError, match=message):
        PromptSlice.from_config(OmegaConf.create({"original_prompt": original}))
