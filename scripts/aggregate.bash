#!/usr/bin/env bash
# Gather every evaluated run into one table (CSV + Markdown) and the forget-quality vs model-utility plot.
#   bash scripts/aggregate.bash                      # runs/ -> results/
#   bash scripts/aggregate.bash run_root=runs out_dir=results
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ " $* " == *" --help "* || " $* " == *" -h "* ]]; then
  exec "${PYTHON:-python}" -m unlearning.runs.usage scripts/aggregate.bash aggregate
fi
"${PYTHON:-python}" results_collect.py "$@"
