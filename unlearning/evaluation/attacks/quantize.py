"""Weight quantization: the evaluated model (its LoRA merged first) with every linear layer's weights rounded to 8
or 4 bits, as Zhang et al. (2024) found 4-bit quantization to bring back knowledge that unlearning with small
learning rates only hid.

Backends: torchao on CPU (round-to-nearest weight-only quantization: int8 per output row, int4 in groups of
``group_size`` weights per scale, stored as int8 ``qdata`` holding values in [-8, 7]); bitsandbytes on a CUDA device
(LLM.int8 and NF4, as the attack's paper evaluated). The output head stays in full precision, as transformers leaves
it when it loads a model in 8 or 4 bits.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

BITS = (8, 4)
BACKENDS = ("auto", "torchao", "bitsandbytes")
PACKAGES = {"torchao": "torchao", "bitsandbytes": "bitsandbytes"}


class BackendMissing(RuntimeError):
    """The quantization library an attack needs is not installed here; the message names the package."""


@dataclass(frozen=True)
class QuantizeOptions:
    """``attacks.quantize`` in the eval config."""

    backend: str = "auto"  # auto: bitsandbytes on a CUDA device when it is installed, else torchao
    group_size: int = 128  # 4-bit torchao: weights sharing one scale (one scale per row where it does not divide)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"attacks.quantize.backend must be one of {BACKENDS}, got {self.backend!r}")
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 1:
            raise ValueError(f"attacks.quantize.group_size must be a positive whole number, got {self.group_size!r}")


def _installed(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """The backend that will quantize on ``device``: ``auto`` takes bitsandbytes on CUDA when installed."""
    on_cuda = torch.device(device).type == "cuda"
    if backend == "auto":
        return "bitsandbytes" if on_cuda and _installed("bitsandbytes") else "torchao"
    if backend == "bitsandbytes" and not on_cuda:
        raise BackendMissing("attacks.quantize.backend=bitsandbytes quantizes on a CUDA device only; this evaluation "
                             "runs on the CPU: use attacks.quantize.backend=torchao (or auto)")
    return backend


def backend_fingerprint(backend: str) -> dict[str, Any]:
    """The library and version whose rounding the numbers rest on (a missing one is named with how to install)."""
    version = _installed(PACKAGES[backend])
    if version is None:
        raise BackendMissing(f"quantization with {backend} needs the {PACKAGES[backend]} package, which is not "
                             f"installed: pip install {PACKAGES[backend]}")
    return {"backend": backend, "version": version}


def merged(model: nn.Module) -> nn.Module:
    """A peft model with its adapters merged into the weights (quantizing the base under a LoRA would keep the LoRA
    in full precision, which is not the attack); any other model as it is."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model


def quantizable(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Every plain linear layer but the output head."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [(name, module) for name, module in model.named_modules()
            if type(module) is nn.Linear and module is not head]


def quantize(model: nn.Module, bits: int, options: QuantizeOptions, device: torch.device | str) -> nn.Module:
    """``model`` (modified in place, adapters merged first) with its linear weights in ``bits`` bits."""
    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits}")
    backend = resolve_backend(options.backend, device)
    backend_fingerprint(backend)  # a missing library stops here, named
    model = merged(model)
    if backend == "torchao":
        _torchao(model, bits, options.group_size)
    else:
        _bitsandbytes(model, bits, device)
    return model.eval()


def _torchao(model: nn.Module, bits: int, group_size: int) -> None:
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup

    targets = {id(module): module for _, module in quantizable(model)}
    if bits == 8:
        quantize_(model, Int8WeightOnlyConfig(), filter_fn=lambda module, _: id(module) in targets)
        return
    grouped = {key for key, module in targets.items() if module.in_features % group_size == 0}
    if grouped:
        quantize_(model, IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size)),
                  filter_fn=lambda module, _: id(module) in grouped)
    if len(grouped) < len(targets):
        quantize_(model, IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerAxis(0)),
                  filter_fn=lambda module, _: id(module) in targets and id(module) not in grouped)


def _bitsandbytes(model: nn.Module, bits: int, device: torch.device | str) -> None:
    """Each linear layer replaced by bitsandbytes' (LLM.int8 without fp16 weights, or NF4), quantized as it moves to
    the GPU."""
    import bitsandbytes as bnb

    for name, linear in quantizable(model):
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        weight = linear.weight.data.to("cpu")
        compute = weight.dtype if weight.dtype != torch.float32 else torch.float16
        if bits == 8:
            new = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=linear.bias is not None,
                                      has_fp16_weights=False, threshold=6.0)
            new.weight = bnb.nn.Int8Params(weight.to(compute), requires_grad=False, has_fp16_weights=False)
        else:
            new = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                                    compute_dtype=compute, quant_type="nf4")
            new.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4")
        if linear.bias is not None:
            new.bias = nn.Parameter(linear.bias.data.to("cpu", compute), requires_grad=False)
        setattr(parent, name.rpartition(".")[2], new.to(device))
