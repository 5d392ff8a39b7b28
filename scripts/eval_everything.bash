#!/usr/bin/env bash
# Evaluate every finished run (or run_dirs=[...]) on the forget and retain splits.
# Takes Hydra overrides, e.g.: bash scripts/eval_everything.bash model=llava_phi3_mini data_dir=dataset/FIUBench forget_split=forget5
# Set ACCELERATE_CONFIG=config/accelerate/<name>.yaml to choose the launch (GPU, multi-GPU, DeepSpeed, cpu_ddp).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch.sh"
launch unlearning.recipes.evaluate "$@"
