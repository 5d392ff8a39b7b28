"""Every shipped config composes, binds to what it names, and every accelerate config parses."""

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from hydra import compose, initialize_config_dir

from unlearning.methods import build_method
from unlearning.models import PARTS
from unlearning.recipes.common import CONFIG_DIR

CONFIG = Path(CONFIG_DIR)
MODELS = sorted(p.stem for p in (CONFIG / "model").glob("*.yaml"))
METHODS = sorted(p.stem for p in (CONFIG / "method").glob("*.yaml"))


def compose_config(name: str, *overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return compose(name, overrides=list(overrides))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("recipe", ["finetune", "forget", "eval"])
def test_recipe_composes_with_every_model(recipe: str, model: str):
    cfg = compose_config(recipe, f"model={model}")
    assert set(cfg.model.modules) == set(PARTS) and cfg.model.lora_targets
    assert cfg.run_root == "runs" and cfg.data_dir == "dataset/builtin/fiubench"
    if recipe != "eval":
        assert cfg.run_dir.startswith(f"runs/fiubench/{model}/") and cfg.lr > 0


def test_paper_model_carries_fiubench_lora_settings():
    cfg = compose_config("forget", "model=llava_phi3_mini", "forget_split=forget5", "method=kl",
                         "data_dir=dataset/FIUBench")
    assert (cfg.lora.r, cfg.lora.alpha, cfg.tune.vision_tower, cfg.tune.projector) == (128, 256, False, True)
    assert cfg.run_name == "kl_forget5_0.0001_5"


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
