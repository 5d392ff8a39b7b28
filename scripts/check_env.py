"""Fail fast on environments known to break: torchvision on a CPU-only machine breaks transformers' imports."""

import importlib.util
import sys

import torch

if importlib.util.find_spec("torchvision") is not None and not torch.cuda.is_available():
    sys.exit(
        "torchvision is installed on a machine without CUDA: it is a CUDA build that makes transformers fail "
        "to import. Remove it (pip uninstall -y torchvision); the image processors fall back to PIL."
    )
import transformers

print(f"torch {torch.__version__} (cuda: {torch.cuda.is_available()}), transformers {transformers.__version__}")
