"""Tiny vision-language models built offline from a config, for tests and the built-in demo.

Model hubs are unreachable on CPU machines, so the tokenizer is trained on the benchmark's own text and
the weights are random. The result is saved with ``save_pretrained`` and loaded back through exactly the
``AutoProcessor`` / ``AutoModelForImageTextToText`` path a real checkpoint takes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from unlearning.registry import Registry

log = logging.getLogger(__name__)

TINY_BUILDERS: Registry[Callable[..., None]] = Registry("tiny model architecture")

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"

# LLaVA-1.5's conversation format ("USER: <image>\n... ASSISTANT: ..."), written for the offline tokenizer.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['content'] is string %}{% set parts = [{'type': 'text', 'text': message['content']}] %}"
    "{% else %}{% set parts = message['content'] %}{% endif %}"
    "{% if message['role'] == 'system' %}"
    "{% for part in parts if part['type'] == 'text' %}{{ part['text'] + ' ' }}{% endfor %}"
    "{% elif message['role'] == 'user' %}USER: "
    "{% for part in parts if part['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in parts if part['type'] == 'text' %}{{ part['text'] }}{% endfor %} "
    "{% elif message['role'] == 'assistant' %}ASSISTANT: "
    "{% for part in parts if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}{{ eos_token }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def train_tokenizer(
    texts: Iterable[str],
    extra_special_tokens: list[str],
    vocab_size: int = 1000,
    chat_template: str = LLAVA_CHAT_TEMPLATE,
) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on ``texts`` (any string still encodes, byte by byte), BOS prepended like Llama."""
    specials = [PAD, BOS, EOS, UNK, *extra_special_tokens]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    bos_id = backend.token_to_id(BOS)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK
    )
    tokenizer.chat_template = chat_template
    return tokenizer


@TINY_BUILDERS.register("llava")
def build_tiny_llava(
    out_dir: str | Path,
    texts: Iterable[str],
    seed: int = 0,
    image_size: int = 112,
    patch_size: int = 14,
    text_hidden: int = 256,
    text_layers: int = 4,
    text_heads: int = 4,
    text_ffn: int = 1024,
    vision_hidden: int = 128,
    vision_layers: int = 2,
    vision_heads: int = 4,
    vision_ffn: int = 512,
    vocab_size: int = 1000,
) -> None:
    """A LLaVA (CLIP vision tower + Llama language model) with random weights, saved like a hub checkpoint."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    torch.manual_seed(seed)
    image_token = "<image>"
    tokenizer = train_tokenizer(texts, [image_token], vocab_size=vocab_size)
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=vision_ffn,
        num_hidden_layers=vision_layers,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=patch_size,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=text_hidden,
        intermediate_size=text_ffn,
        num_hidden_layers=text_layers,
        num_attention_heads=text_heads,
        num_key_value_heads=text_heads,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(image_token),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        chat_template=tokenizer.chat_template,
        image_token=image_token,
        num_additional_image_tokens=1,
    )
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("built tiny llava (%.2fM parameters, vocab %d) in %s", n_params / 1e6, len(tokenizer), out_dir)


def build_tiny_model(architecture: str, out_dir: str | Path, texts: Iterable[str], **sizes: int) -> Path:
    """Build the named tiny architecture into ``out_dir``, atomically, and return the folder."""
    from unlearning.io import atomic_write_dir

    texts = list(texts)
    builder = TINY_BUILDERS.get(architecture)
    return atomic_write_dir(out_dir, lambda tmp: builder(tmp, texts, **sizes))
