# Sourced by the demo scripts: strict mode, the repository root, offline hubs, where runs and tables go.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RUN_ROOT="${RUN_ROOT:-runs}"
OUT_DIR="${OUT_DIR:-results}"
start=$SECONDS
