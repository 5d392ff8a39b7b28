"""The tiny model is a real HF checkpoint: Auto classes reload it, and loss survives the round trip."""

from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, LlavaForConditionalGeneration

from tests.conftest import SMALL_MODEL
from unlearning.models.tiny import build_tiny_model


def test_tiny_llava_reloads_through_auto_classes(tmp_path: Path, collator, tiny_dir: Path, fiu_dir: Path):
    from fiubench.benchmark import FiuBenchTask

    model = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    processor = AutoProcessor.from_pretrained(tiny_dir)
    assert isinstance(model, LlavaForConditionalGeneration)
    assert processor.tokenizer.chat_template and processor.tokenizer.eos_token == "</s>"
    n_params = sum(p.numel() for p in model.parameters())
    assert 50_000 < n_params < 500_000
    batch = collator(FiuBenchTask(fiu_dir).train_examples("forget10")[:2])
    loss = model(**batch["inputs"], labels=batch["labels"]).loss
    model.save_pretrained(tmp_path / "again")
    again = AutoModelForImageTextToText.from_pretrained(tmp_path / "again")
    assert torch.equal(again(**batch["inputs"], labels=batch["labels"]).loss, loss)


def test_tokenizer_training_is_deterministic(tmp_path: Path):
    texts = ["the full name of the person in the image is juno fairbanks."] * 3
    a = build_tiny_model("llava", tmp_path / "a", texts, **SMALL_MODEL)
    b = build_tiny_model("llava", tmp_path / "b", texts, **SMALL_MODEL)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
