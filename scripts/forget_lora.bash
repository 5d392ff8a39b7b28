#!/usr/bin/env bash
# Stage II: forget a split with LoRA and a registered method.
# Takes Hydra overrides, e.g.: bash scripts/forget_lora.bash model=llava_phi3_mini data_dir=dataset/FIUBench forget_split=forget5
# Set ACCELERATE_CONFIG=config/accelerate/<name>.yaml to choose the launch (GPU, multi-GPU, DeepSpeed, cpu_ddp,
# cpu_zero2/cpu_zero3: DeepSpeed on 2 CPU processes); docs/distributed.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch.sh"
launch unlearning.recipes.forget "$@"
