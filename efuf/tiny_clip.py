"""A tiny CLIP built offline (random weights, a tokenizer trained on the given text), saved like a released one.

It runs the same ``ClipScorer`` path as ``openai/clip-vit-base-patch32``; the built-in benchmark trains it to tell
its drawn objects apart before it scores captions.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

from unlearning.tiny import train_tokenizer


def build_tiny_clip(out_dir: str | Path, texts: Iterable[str], image_size: int = 64, patch_size: int = 16,
                    hidden: int = 64, layers: int = 2, projection: int = 32, vocab_size: int = 400,
                    seed: int = 0) -> Path:
    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(texts, [], vocab_size=vocab_size)
    text = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                num_attention_heads=4, max_position_embeddings=32, eos_token_id=tokenizer.eos_token_id,
                bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=4,
                  image_size=image_size, patch_size=patch_size)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection))
    images = CLIPImageProcessor(size={"shortest_edge": image_size},
                                crop_size={"height": image_size, "width": image_size})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir
