"""What trains (full-path targeting), strict adapter reload, and the adapters-disabled reference."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from unlearning.models.loading import (
    CheckpointError,
    apply_lora,
    check_prefixes,
    count_trainable,
    freeze_all_but,
    load_adapter,
    load_model,
    lora_target_regex,
    tuned_prefixes,
)

MODULES = {
    "language_model": ["model.language_model", "lm_head"],
    "projector": ["model.multi_modal_projector"],
    "vision_tower": ["model.vision_tower"],
}
LEAVES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
FIU_TUNE = {"language_model": True, "projector": True, "vision_tower": False}


def lora(model, r=4):
    return apply_lora(model, MODULES, FIU_TUNE, r=r, alpha=8, dropout=0.0, target_leaves=LEAVES)


def test_leaf_name_matching_adapts_the_vision_tower_too(tiny_model):
    """MLLMU-Bench's original (compat=official): leaf names matched anywhere, so CLIP's q/k/v_proj get adapters."""
    model = apply_lora(tiny_model, MODULES, {"language_model": True}, 4, 8, 0.0, LEAVES, match="leaf")
    adapted = [name for name, _ in model.named_modules() if name.endswith("lora_A")]
    vision = {name.split(".")[-2] for name in adapted if "vision_tower" in name}
    assert vision == {"q_proj", "k_proj", "v_proj"}  # CLIP's out_proj, fc1, fc2 are not in the list
    assert any(".language_model." in name for name in adapted)
    assert not any("multi_modal_projector" in name for name in adapted)
    with pytest.raises(ValueError, match="lora_match must be one of"):
        apply_lora(tiny_model, MODULES, {"language_model": True}, 4, 8, 0.0, LEAVES, match="name")


def test_lora_adapts_the_language_model_only_and_trains_the_projector(tiny_model):
    model = lora(tiny_model)
    adapted = [name for name, _ in model.named_modules() if name.endswith("lora_A")]
    assert adapted and all(".language_model." in name for name in adapted)
    assert not any("vision_tower" in name for name in adapted)  # CLIP has q_proj/k_proj/v_proj too
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert all("lora_" in name or "multi_modal_projector.modules_to_save" in name for name in trainable)
    assert any("multi_modal_projector" in name for name in trainable)
    assert not any("vision_tower" in name for name in trainable)


def test_target_regex_is_full_path():
    import re

    pattern = lora_target_regex(["model.language_model"], ["q_proj"])
    assert re.fullmatch(pattern, "model.language_model.layers.0.self_attn.q_proj")
    assert not re.fullmatch(pattern, "model.vision_tower.encoder.layers.0.self_attn.q_proj")


def test_full_finetuning_selects_parts(tiny_model):
    n = freeze_all_but(tiny_model, [p for ps in tuned_prefixes(MODULES, FIU_TUNE).values() for p in ps])
    assert n == count_trainable(tiny_model)[0]
    assert not any(p.requires_grad for name, p in tiny_model.named_parameters() if name.startswith("model.vision"))
    assert tiny_model.lm_head.weight.requires_grad
    with pytest.raises(ValueError, match="unknown parts"):
        tuned_prefixes(MODULES, {"decoder": True})


def test_wrong_module_paths_are_reported(tiny_model):
    with pytest.raises(ValueError, match="no module named 'model.vision_model'"):
        check_prefixes(tiny_model, {"vision_tower": ["model.vision_model"]})
    with pytest.raises(ValueError, match="tune.language_model"):
        apply_lora(tiny_model, MODULES, {"projector": True}, 4, 8, 0.0, LEAVES)


def _perturb(model):
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))


def test_disabled_adapters_are_exactly_the_base_model(tiny_dir: Path, tiny_model, collator, fiu_dir):
    from fiubench.benchmark import FiuBenchTask

    batch = collator(FiuBenchTask(fiu_dir).train_examples("forget10")[:2])
    # The base frozen as the adapter's base layers are: torch's matmul folds a batch into one product or not
    # depending on whether the weight requires grad, and the two products round differently on some CPU code
    # paths (MKL's COMPATIBLE branch, which the tests pin).
    base = load_model(tiny_dir).requires_grad_(False)(**batch["inputs"]).logits
    model = lora(tiny_model)
    _perturb(model)  # adapters and the projector copy both move
    assert not torch.allclose(model(**batch["inputs"]).logits, base)
    with model.disable_adapter():
        assert torch.equal(model(**batch["inputs"]).logits, base)


def test_adapter_round_trip_and_strict_reload(tmp_path: Path, tiny_dir: Path, tiny_model, collator, fiu_dir):
    from fiubench.benchmark import FiuBenchTask

    batch = collator(FiuBenchTask(fiu_dir).train_examples("forget10")[:2])
    model = lora(tiny_model)
    _perturb(model)
    expected = model.requires_grad_(False)(**batch["inputs"]).logits  # frozen as the reloaded adapter is
    model.save_pretrained(tmp_path / "adapter")
    reloaded = load_adapter(load_model(tiny_dir), tmp_path / "adapter")
    assert torch.equal(reloaded(**batch["inputs"]).logits, expected)

    weights = tmp_path / "adapter" / "adapter_model.safetensors"
    state = load_file(weights)
    dropped = dict(list(state.items())[1:])
    save_file(dropped, weights)
    with pytest.raises(CheckpointError, match="1 missing keys"):
        load_adapter(load_model(tiny_dir), tmp_path / "adapter")
    renamed = {key.replace("language_model", "text_model"): value for key, value in state.items()}
    save_file(renamed, weights)  # the key drift FIUBench's strict=False load silently ignored
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_adapter(load_model(tiny_dir), tmp_path / "adapter")
    with pytest.raises(CheckpointError, match="no adapter_model.safetensors"):
        load_adapter(load_model(tiny_dir), tmp_path)


def test_gaussian_lora_init_as_mllmu_bench(tiny_dir: Path):
    """init_lora_weights="gaussian" (MLLMU-Bench's finetune.py:118): A ~ N(0, 1/r), B zero; peft's default A is
    Kaiming-uniform, bounded by 1/sqrt(fan_in)."""
    torch.manual_seed(0)
    gaussian = apply_lora(load_model(tiny_dir), MODULES, FIU_TUNE, 16, 16, 0.0, LEAVES, init="gaussian")
    torch.manual_seed(0)
    default = apply_lora(load_model(tiny_dir), MODULES, FIU_TUNE, 16, 16, 0.0, LEAVES)
    a = torch.cat([p.detach().reshape(-1) for n, p in gaussian.named_parameters() if "lora_A" in n])
    assert a.mean().abs() < 0.01 and a.std().item() == pytest.approx(1 / 16, rel=0.05)
    assert all(torch.count_nonzero(p) == 0 for n, p in gaussian.named_parameters() if "lora_B" in n)
    for name, parameter in default.named_parameters():
        if "lora_A" in name:
            assert parameter.abs().max() <= 1 / parameter.shape[1] ** 0.5 + 1e-6
    with pytest.raises(ValueError, match="lora.init must be one of"):
        apply_lora(load_model(tiny_dir), MODULES, FIU_TUNE, 16, 16, 0.0, LEAVES, init="orthogonal")
