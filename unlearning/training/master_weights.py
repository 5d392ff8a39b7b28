"""AdamW with fp32 master weights for parameters held in bf16 or fp16.

torch's AdamW on bf16 parameters rounds every update to bf16: a weight of magnitude 0.031 or more does not move at
all under a 1e-4 step (bf16 keeps 8 significant bits), and at 2e-5 most of a fresh N(0, 0.02) matrix never changes.
The originals did not train that way: FIUBench and SafeEraser ran DeepSpeed's bf16 mode, which keeps fp32 master
weights, and MLLMU-Bench trained in fp32. Here each low-precision trainable parameter gets an fp32 copy that AdamW
updates (its gradient cast up), and the parameter is set to the copy rounded, after every step: the same
arithmetic as DeepSpeed's, on any launch. DeepSpeed launches keep DeepSpeed's own (``needs_master_weights``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

LOW_PRECISION = (torch.bfloat16, torch.float16)


def needs_master_weights(parameters: Iterable[torch.nn.Parameter], deepspeed: bool) -> bool:
    """Whether some trainable parameter is held in bf16/fp16 (and DeepSpeed does not already keep fp32 masters)."""
    return not deepspeed and any(p.requires_grad and p.dtype in LOW_PRECISION for p in parameters)


class MasterWeightAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` over fp32 copies of the given parameters (fp32 ones are used as they are); the
    learning-rate schedule, weight decay and state act on the copies, which ``step`` writes back rounded."""

    def __init__(self, groups: Iterable[Mapping[str, Any]], lr: float, eps: float = 1e-8) -> None:
        pairs, master_groups = [], []
        for group in groups:
            masters = []
            for parameter in group["params"]:
                if parameter.dtype in LOW_PRECISION:
                    master = parameter.detach().to(torch.float32).clone()
                    pairs.append((parameter, master))
                else:
                    master = parameter
                masters.append(master)
            master_groups.append({**group, "params": masters})
        super().__init__(master_groups, lr=lr, eps=eps)
        self._pairs = pairs

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        for parameter, master in self._pairs:
            master.grad = None if parameter.grad is None else parameter.grad.to(torch.float32)
        loss = super().step(closure)
        for parameter, master in self._pairs:
            parameter.copy_(master)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for parameter, master in self._pairs:
            master.grad = None
            if set_to_none:
                parameter.grad = None
            elif parameter.grad is not None:
                parameter.grad.zero_()

    def master_state(self) -> list[torch.Tensor]:
        """The fp32 master copies (a resumed run needs them: the parameters hold them rounded)."""
        return [master.detach().cpu().clone() for _, master in self._pairs]

    def load_master_state(self, masters: list[torch.Tensor]) -> None:
        if len(masters) != len(self._pairs):
            raise ValueError(f"the saved state holds {len(masters)} master weights, this optimiser {len(self._pairs)}")
        with torch.no_grad():
            for (parameter, master), saved in zip(self._pairs, masters, strict=True):
                master.copy_(saved.to(master.device))
                parameter.copy_(master)
