"""fp32 master weights for parameters held in bf16: updates that bf16 AdamW rounds away are kept, and a bf16
parameter follows the fp32 trajectory (rounded)."""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator

import unlearning.training.trainer as trainer_module
from unlearning.data.examples import Example
from unlearning.models.loading import apply_lora, load_model
from unlearning.training.master_weights import MasterWeightAdamW, needs_master_weights
from unlearning.training.trainer import TrainSettings, _optimizer, train

MODULES = {"language_model": ["model.language_model", "lm_head"], "projector": ["model.multi_modal_projector"],
           "vision_tower": ["model.vision_tower"]}
LEAVES = ["q_proj", "k_proj", "v_proj", "o_proj"]


def test_a_bf16_weight_moves_as_its_fp32_twin():
    """A weight of magnitude 0.05 (bf16 spacing there: 2.4e-4) under AdamW steps of 1e-4: bf16 AdamW never moves it;
    with master weights its fp32 copy takes exactly the fp32 steps and the bf16 value follows, rounded."""
    start = torch.full((4, 4), 0.05)
    gradient = torch.tensor([1.0, -1.0, 0.5, -0.5]).repeat(4, 1)  # exact in bf16: the same gradient for both
    plain = torch.nn.Parameter(start.to(torch.bfloat16))
    mastered = torch.nn.Parameter(start.to(torch.bfloat16))
    twin = torch.nn.Parameter(start.to(torch.bfloat16).float())
    optimizers = [torch.optim.AdamW([plain], lr=1e-4), MasterWeightAdamW([{"params": [mastered]}], lr=1e-4),
                  torch.optim.AdamW([twin], lr=1e-4)]
    for _ in range(5):
        for parameter, optimizer in zip((plain, mastered, twin), optimizers, strict=True):
            parameter.grad = gradient.to(parameter.dtype)
            optimizer.step()
            optimizer.zero_grad()
    assert torch.equal(plain, start.to(torch.bfloat16))  # every update rounded away
    master = optimizers[1].param_groups[0]["params"][0]
    assert torch.equal(master, twin.detach())  # the fp32 trajectory, step for step
    assert torch.equal(mastered.detach(), twin.detach().to(torch.bfloat16))
    assert not torch.equal(mastered.detach(), start.to(torch.bfloat16))  # 5e-4 is two bf16 spacings away


def test_the_trainer_keeps_fp32_masters_for_a_bf16_model(tiny_dir: Path, collator):
    """The tiny LLaVA loaded in bf16 with LoRA and a trained projector, 4 steps at 2e-5: with fp32 masters the
    bf16 projector moves and ends where the fp32 run's ends (rounded) for more weights than with plain bf16 AdamW,
    which leaves about 70% of them where they started (the issue's 29% moved, measured again here)."""
    image = next(p for p in tiny_dir.parent.parent.rglob("*.jpg"))
    examples = [Example("What is the job of the person?", "juno works as a florist.", image, uid=str(i))
                for i in range(8)]

    def step_loss(model, batch, progress):
        return model(**batch["inputs"], labels=batch["labels"], use_cache=False).loss, {}

    def projector_after(dtype: str, masters: bool, monkeypatch=None) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        model = apply_lora(load_model(tiny_dir, dtype), MODULES, {"language_model": True, "projector": True}, 8, 16,
                           0.0, LEAVES)
        name = next(n for n, p in model.named_parameters() if p.requires_grad and "multi_modal_projector" in n
                    and n.endswith("weight"))
        before = dict(model.named_parameters())[name].detach().clone()
        settings = TrainSettings(lr=2e-5, epochs=1, batch_size=2, shuffle=False, weight_decay=0.0)
        trained, _ = train(model, examples, collator, step_loss, settings, Accelerator(cpu=True))
        return before, dict(trained.named_parameters())[name].detach()

    start, fp32 = projector_after("float32", True)
    _, mastered = projector_after("bfloat16", True)
    trainer_module.needs_master_weights, original = (lambda parameters, deepspeed: False), needs_master_weights
    try:
        _, plain = projector_after("bfloat16", False)
    finally:
        trainer_module.needs_master_weights = original
    target = fp32.to(torch.bfloat16)
    assert (fp32 != start).float().mean() == 1.0
    moved_plain = (plain != start.to(torch.bfloat16)).float().mean().item()
    agree_mastered = (mastered == target).float().mean().item()
    agree_plain = (plain == target).float().mean().item()
    moved_mastered = (mastered != start.to(torch.bfloat16)).float().mean().item()
    # measured here: moved 57% with masters, 30% plain; agreeing with the fp32 run 69% against 51%
    assert moved_plain < 0.4 and moved_mastered > moved_plain + 0.2 and agree_mastered > agree_plain + 0.1


def test_when_masters_are_needed():
    low = torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))
    full = torch.nn.Parameter(torch.zeros(2))
    frozen = torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16), requires_grad=False)
    assert needs_master_weights([full, low], deepspeed=False)
    assert not needs_master_weights([full, frozen], deepspeed=False)
    assert not needs_master_weights([low], deepspeed=True)  # DeepSpeed's bf16 mode keeps its own
    model = torch.nn.Linear(2, 2).to(torch.bfloat16)
    settings = TrainSettings(lr=1e-3, epochs=1, batch_size=1)
    assert isinstance(_optimizer(model, settings), MasterWeightAdamW)
    assert type(_optimizer(model.float(), settings)) is torch.optim.AdamW
