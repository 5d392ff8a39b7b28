"""CPU numerics pinned to one code path, so a seeded CPU run gives the same digits on any x86-64 CPU with AVX2.

PyTorch's CPU kernels choose their code path by the processor: ATen's vectorised kernels by its widest vector
unit (AVX-512 or AVX2), MKL's matrix products by vendor and instruction set, oneDNN's by instruction set. The
paths round differently, and a thousand training steps turn a last-bit difference into another table (the same
seeded demo gave Stage I a forget ROUGE-L of 97.5 on one machine and 100 on another). Pinning each library to one
path it can take on every such CPU makes the digits repeat:

- ``ATEN_CPU_CAPABILITY=avx2``: ATen's AVX2 kernels (AVX-512 machines would otherwise pick their own);
- ``MKL_CBWR=COMPATIBLE``: MKL's conditional numerical reproducibility branch that gives the same results on
  Intel and non-Intel CPUs (its ``AVX2`` branch does so on Intel CPUs only);
- ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN (convolutions) at most AVX2;
- ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS=2``: a fixed thread count (MKL's reproducibility requires one, and
  ATen splits reductions by thread).

The demo scripts and the test suite set these (``eval "$(python -m unlearning.runs.numerics)"`` pins a shell); a
value already in the environment is kept, so a user can still choose another, and ``UNLEARNING_CPU_NUMERICS=native``
pins nothing. Nothing here imports torch at
import time: the thread count must be in the environment before the OpenMP runtime loads. Costs and the checks
behind the claim are in docs/reproducibility.md.
"""

from __future__ import annotations

import os
import platform
from collections.abc import MutableMapping
from typing import Any

PINNED_CPU_NUMERICS: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
}


def pin_cpu_numerics(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set every pin the environment does not already set; returns the values in force. With
    ``UNLEARNING_CPU_NUMERICS=native`` nothing is pinned (each library picks its own path: faster, other digits)."""
    environ = os.environ if environ is None else environ
    if environ.get("UNLEARNING_CPU_NUMERICS") == "native":
        return {}
    for name, value in PINNED_CPU_NUMERICS.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in PINNED_CPU_NUMERICS}


def cpu_numerics() -> dict[str, Any]:
    """What decided the digits of this process, for a run's provenance: the processor, the kernels ATen uses, the
    library pins, the thread count (and the GPU, where one computes)."""
    import torch

    return {
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        **{name: os.environ.get(name) for name in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA")},
        "pinned": all(os.environ.get(name) == value for name, value in PINNED_CPU_NUMERICS.items()),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    """Print the pins as shell ``export`` lines (values already set in the environment are kept)."""
    for name, value in pin_cpu_numerics(dict(os.environ)).items():
        print(f"export {name}={value}")


if __name__ == "__main__":
    main()
