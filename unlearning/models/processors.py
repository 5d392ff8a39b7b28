"""Processor classes the Auto classes cannot build on every machine, selected by ``model.processor_class``."""

from __future__ import annotations

from typing import ClassVar

from transformers import Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin

from unlearning.registry import Registry

PROCESSORS: Registry[type] = Registry("processor class")


@PROCESSORS.register("qwen2_vl_image_only")
class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):
    """Qwen2-VL's processor without its video processor, which needs torchvision (absent on CPU machines).

    Images are processed exactly as by ``Qwen2VLProcessor``; ``AutoProcessor`` would return only the
    tokenizer for such a folder, so it is loaded by name (``model.processor_class: qwen2_vl_image_only``).
    """

    attributes: ClassVar[list[str]] = ["image_processor", "tokenizer"]  # no video_processor

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
