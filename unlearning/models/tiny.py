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

# Each family's conversation format, written for the offline tokenizers (same strings as the real
# checkpoints' templates render, so the collator's answer masking is exercised on each shape of template).

# LLaVA-1.5 (llava-hf): "USER: <image>\n{q} ASSISTANT: {a} "; no EOS in the template, the collator adds it.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['content'] is string %}{% set parts = [{'type': 'text', 'text': message['content']}] %}"
    "{% else %}{% set parts = message['content'] %}{% endif %}"
    "{% if message['role'] == 'system' %}"
    "{% for part in parts if part['type'] == 'text' %}{{ part['text'] + ' ' }}{% endfor %}"
    "{% else %}{{ message['role'].upper() + ': ' }}"
    "{% for part in parts if part['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in parts if part['type'] == 'text' %}{{ part['text'] + ' ' }}{% endfor %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

# Qwen2-VL-Instruct: ChatML turns, a default system turn, the image between vision markers.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Idefics2: "User:<image>{q}<end_of_utterance>\nAssistant: {a}<end_of_utterance>\n".
IDEFICS2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'].capitalize() }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% elif part['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# Llama-3.2-Vision-Instruct: header-delimited turns ending in <|eot_id|>, BOS written by the template.
MLLAMA_CHAT_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|image|>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def train_tokenizer(
    texts: Iterable[str],
    extra_special_tokens: list[str],
    vocab_size: int = 1000,
    chat_template: str = LLAVA_CHAT_TEMPLATE,
    bos: str = BOS,
    eos: str = EOS,
) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on ``texts`` (any string still encodes, byte by byte), BOS prepended like Llama."""
    specials = [PAD, bos, eos, UNK, *extra_special_tokens]
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
    bos_id = backend.token_to_id(bos)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, pad_token=PAD,
                                        unk_token=UNK)
    tokenizer.chat_template = chat_template
    return tokenizer


def _text_config_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    return {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id}


def _save(model: torch.nn.Module, processor: object, tokenizer: PreTrainedTokenizerFast, out_dir: str | Path,
          stop_tokens: Iterable[str] = ()) -> None:
    """Save like a hub checkpoint; generation stops at EOS and at the family's end-of-turn tokens."""
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    stops = [tokenizer.eos_token_id, *(tokenizer.convert_tokens_to_ids(t) for t in stop_tokens)]
    model.generation_config.eos_token_id = stops[0] if len(stops) == 1 else stops
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("built tiny %s (%.2fM parameters, vocab %d) in %s", type(model).__name__, n_params / 1e6,
             len(tokenizer), out_dir)


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
        tie_word_embeddings=False,
        **_text_config_ids(tokenizer),
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(image_token),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    model = LlavaForConditionalGeneration(config)
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
    _save(model, processor, tokenizer, out_dir)


def build_tiny_model(architecture: str, out_dir: str | Path, texts: Iterable[str], **sizes: int) -> Path:
    """Build the named tiny architecture into ``out_dir``, atomically, and return the folder."""
    from unlearning.runs.io import atomic_write_dir

    texts = list(texts)
    builder = TINY_BUILDERS.get(architecture)
    return atomic_write_dir(out_dir, lambda tmp: builder(tmp, texts, **sizes))


@TINY_BUILDERS.register("qwen2_vl")
def build_tiny_qwen2_vl(out_dir: str | Path, texts: Iterable[str], seed: int = 0, image_size: int = 112,
                        text_hidden: int = 128, text_layers: int = 2, vocab_size: int = 1000) -> None:
    """Qwen2-VL (ViT with 2x2 patch merger + Qwen2 with M-RoPE); 4 image tokens per 56 px."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor

    from unlearning.models.processors import Qwen2VLImageOnlyProcessor

    torch.manual_seed(seed)
    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tokenizer = train_tokenizer(texts, specials, vocab_size, QWEN2_VL_CHAT_TEMPLATE)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=text_hidden, intermediate_size=2 * text_hidden,
                         num_hidden_layers=text_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, rope_scaling={"type": "mrope", "mrope_section": [4, 6, 6]},
                         tie_word_embeddings=False, **_text_config_ids(tokenizer)),
        vision_config=dict(depth=2, embed_dim=64, hidden_size=text_hidden, num_heads=4, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, in_chans=3),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    model = Qwen2VLForConditionalGeneration(config)
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=image_size * image_size, patch_size=14,
                                            merge_size=2, temporal_patch_size=2)
    processor = Qwen2VLImageOnlyProcessor(image_processor, tokenizer, chat_template=QWEN2_VL_CHAT_TEMPLATE)
    _save(model, processor, tokenizer, out_dir, stop_tokens=["<|im_end|>"])


@TINY_BUILDERS.register("idefics2")
def build_tiny_idefics2(out_dir: str | Path, texts: Iterable[str], seed: int = 0, image_size: int = 56,
                        text_hidden: int = 64, text_layers: int = 2, vocab_size: int = 1000) -> None:
    """Idefics2 (SigLIP-style vision + perceiver connector + Mistral); 16 image tokens, no image splitting."""
    from transformers import Idefics2Config, Idefics2ForConditionalGeneration, Idefics2ImageProcessor, Idefics2Processor

    torch.manual_seed(seed)
    specials = ["<image>", "<fake_token_around_image>", "<end_of_utterance>"]
    tokenizer = train_tokenizer(texts, specials, vocab_size, IDEFICS2_CHAT_TEMPLATE)
    config = Idefics2Config(
        text_config=dict(model_type="mistral", vocab_size=len(tokenizer), hidden_size=text_hidden,
                         intermediate_size=2 * text_hidden, num_hidden_layers=text_layers, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=False,
                         **_text_config_ids(tokenizer)),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=image_size, patch_size=14),
        perceiver_config=dict(hidden_size=text_hidden, rms_norm_eps=1e-5, hidden_act="silu", resampler_n_latents=16,
                              resampler_depth=1, resampler_n_heads=2, resampler_head_dim=16, num_key_value_heads=1),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=False,
    )
    model = Idefics2ForConditionalGeneration(config)
    image_processor = Idefics2ImageProcessor(do_image_splitting=False,
                                             size={"shortest_edge": image_size, "longest_edge": image_size})
    processor = Idefics2Processor(image_processor, tokenizer, image_seq_len=16, chat_template=IDEFICS2_CHAT_TEMPLATE)
    _save(model, processor, tokenizer, out_dir, stop_tokens=["<end_of_utterance>"])


@TINY_BUILDERS.register("mllama")
def build_tiny_mllama(out_dir: str | Path, texts: Iterable[str], seed: int = 0, image_size: int = 56,
                      text_hidden: int = 64, text_layers: int = 2, vocab_size: int = 1000) -> None:
    """Llama-3.2-Vision (Mllama: vision encoder + cross-attention layers in the language model), 4 tiles of 56 px."""
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessor, MllamaProcessor

    torch.manual_seed(seed)
    specials = ["<|image|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tokenizer = train_tokenizer(texts, specials, vocab_size, MLLAMA_CHAT_TEMPLATE, bos="<|begin_of_text|>",
                                eos="<|end_of_text|>")
    config = MllamaConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1,
                           attention_heads=2, image_size=image_size, patch_size=14, vision_output_dim=64,
                           intermediate_layers_indices=[0]),
        text_config=dict(vocab_size=len(tokenizer), hidden_size=text_hidden, intermediate_size=2 * text_hidden,
                         num_hidden_layers=text_layers, num_attention_heads=4, num_key_value_heads=2,
                         cross_attention_layers=[1], tie_word_embeddings=False, **_text_config_ids(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids("<|image|>"),
    )
    model = MllamaForConditionalGeneration(config)
    image_processor = MllamaImageProcessor(size={"height": image_size, "width": image_size}, max_image_tiles=4)
    processor = MllamaProcessor(image_processor, tokenizer, chat_template=MLLAMA_CHAT_TEMPLATE)
    _save(model, processor, tokenizer, out_dir, stop_tokens=["<|eot_id|>"])
