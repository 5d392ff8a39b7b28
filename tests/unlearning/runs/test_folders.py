"""A training run's identity: what it holds, and settings added later that keep earlier runs' names."""

from pathlib import Path

from unlearning.runs.identity import identity_hash, training_identity


def test_settings_at_their_old_behaviour_keep_the_identity():
    before = {"lr": 1e-4, "epochs": 3, "method": {"name": "ga"}}
    with_defaults = {**before, "shuffle": True, "decay_exempt": "1d"}
    assert identity_hash(training_identity(with_defaults, "base")) == identity_hash(training_identity(before, "base"))
    for changed in ({"shuffle": False}, {"decay_exempt": "bias"}):
        other = training_identity({**with_defaults, **changed}, "base")
        assert identity_hash(other) != identity_hash(training_identity(before, "base"))
    assert "compat" not in training_identity({**before, "compat": {"mode": "official"}}, "base")  # the switches count
    assert training_identity(before, "base", compat=["file_order"])["compat"] == ["file_order"]
    assert "compat" not in training_identity(before, "base", compat=[])  # none on: the names runs had before


def test_method_and_benchmark_settings_added_later_keep_the_identity():
    before = {"lr": 1e-4, "method": {"name": "kl_pd", "retain_weight": 1.0, "base": {"name": "kl"}},
              "benchmark": {"name": "fiubench", "options": {"seed": 0}}}
    added = {"lr": 1e-4, "method": {"name": "kl_pd", "retain_weight": 1.0, "reduction": "answer_tokens",
                                    "retain_nll": 0.0, "base": {"name": "kl", "reduction": "answer_tokens"}},
             "benchmark": {"name": "fiubench", "options": {"seed": 0, "capitalize": False}}}
    assert identity_hash(training_identity(added, "b")) == identity_hash(training_identity(before, "b"))
    official = {**added, "benchmark": {"name": "fiubench", "options": {"seed": 0, "capitalize": True}}}
    assert identity_hash(training_identity(official, "b")) != identity_hash(training_identity(before, "b"))


def test_how_an_original_prompt_generates_is_not_part_of_training():
    prompt = {"question_start_tag": "USER: ", "answer_tag": " ASSISTANT: "}
    before = {"lr": 1e-4, "original_prompt": prompt}
    decoded = {"lr": 1e-4, "original_prompt": {**prompt, "generation_prompt": "decoded"}}
    assert identity_hash(training_identity(decoded, "b")) == identity_hash(training_identity(before, "b"))
    other = {"lr": 1e-4, "original_prompt": {**prompt, "answer_tag": " A: "}}
    assert identity_hash(training_identity(other, "b")) != identity_hash(training_identity(before, "b"))


def test_adapter_merged_into_a_copy_of_a_base_loaded_once(tmp_path: Path, tiny_dir: Path, fiu_dir: Path, caplog):
    """Issue 13: a forget run is evaluated with its adapter (LoRA on the language model, the projector trained in
    full) merged into a copy of its base; the base is read from disk once for both runs and left unchanged."""
    import logging

    import torch

    from unlearning.data.collator import ChatCollator
    from unlearning.data.examples import Example
    from unlearning.inference.scoring import forward_answer_logits
    from unlearning.models.loading import apply_lora, load_model, load_processor
    from unlearning.runs.checkpoints import BaseModels, ModelSource, save_checkpoint

    modules = {"language_model": ["model.language_model", "lm_head"], "projector": ["model.multi_modal_projector"],
               "vision_tower": ["model.vision_tower"]}
    peft_model = apply_lora(load_model(tiny_dir), modules, {"language_model": True, "projector": True}, 4, 8, 0.0,
                            ["q_proj", "v_proj"])
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in peft_model.parameters():
            if parameter.requires_grad:  # a trained adapter: B != 0, the projector's copy moved
                parameter.add_(torch.randn_like(parameter) * 0.05)
    adapter = save_checkpoint(tmp_path / "adapter", peft_model)
    processor = load_processor(tiny_dir)
    collator = ChatCollator(processor, [processor.tokenizer.eos_token_id])
    batch = collator([Example("Who is this?", "juno fairbanks.", next((fiu_dir / "SFHQ").glob("*.jpg")), "a")])

    def logits(model) -> torch.Tensor:
        with torch.no_grad():
            return forward_answer_logits(model.eval(), batch).logits

    caplog.set_level(logging.INFO, logger="unlearning.models.loading")
    caplog.clear()  # the loads above are logged too where an earlier test left INFO on
    models = BaseModels("float32", "sdpa")
    plain_base = models.load(ModelSource(str(tiny_dir), None, str(tiny_dir)))
    before = logits(plain_base)
    merged = models.load(ModelSource(str(tiny_dir / ".." / tiny_dir.name), str(adapter), str(tiny_dir)))
    assert sum("loaded LlavaForConditionalGeneration" in r.getMessage() for r in caplog.records) == 1
    assert not any("lora" in name for name, _ in merged.named_parameters())  # merged, no LoRA detour
    unmerged = BaseModels("float32", "sdpa", merge=False).load(ModelSource(str(tiny_dir), str(adapter), str(tiny_dir)))
    assert torch.allclose(logits(merged), logits(unmerged), atol=1e-4)
    assert not torch.allclose(logits(merged), before, atol=1e-3)  # the adapter changes the model
    assert torch.equal(logits(models.load(ModelSource(str(tiny_dir), None, str(tiny_dir)))), before)  # base intact


def test_runs_of_a_run_root_kept_inside_another_are_left_out(tmp_path: Path, caplog):
    """``make demo-methods`` writes runs/methods/ inside the demo's runs/: collecting runs/ must not mix them in."""
    from unlearning.runs.folders import RUN_FILE, find_runs

    def run(*parts: str) -> Path:
        folder = tmp_path.joinpath(*parts)
        folder.mkdir(parents=True)
        (folder / RUN_FILE).write_text("{}")
        return folder

    own = [run("fiubench", "tiny", "ga-1"), run("safeeraser", "tiny", "ga-2")]
    nested = run("methods", "fiubench", "tiny", "ga-1")
    run("fiubench", "tiny", ".attempts", "ga-3")
    with caplog.at_level("INFO"):
        assert find_runs(tmp_path) == sorted(own)
    assert str(tmp_path / "methods") in caplog.text
    assert find_runs(tmp_path / "methods") == [nested]
    assert find_runs(tmp_path / "fiubench" / "tiny") == [own[0]]
    assert find_runs(tmp_path / "efuf") == []
