"""The shared unlearning engine."""

import logging

# torchao (the quantization attack's CPU backend) is imported by transformers whenever it is installed, and at
# import it warns about CUDA kernels a CPU build lacks and about torch's deprecated Enum registration: noise on every
# command, not problems. Silenced here, before any entry point imports transformers.
for _noisy in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)
