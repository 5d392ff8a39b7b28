# Sourced by the demo scripts: strict mode, the repository root, offline hubs, where runs and tables go.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# One CPU code path for every kernel library, so the tables repeat on any x86-64 CPU with AVX2 (unlearning/runs/numerics.py);
# a value already in the environment is kept.
eval "$("${PYTHON:-python}" -m unlearning.runs.numerics)"
RUN_ROOT="${RUN_ROOT:-runs}"
OUT_DIR="${OUT_DIR:-results}"
start=$SECONDS
