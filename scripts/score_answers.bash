#!/usr/bin/env bash
# Score a SafeEraser answers file made elsewhere (the original's inference output) as the evaluation does:
#   bash scripts/score_answers.bash benchmark=safeeraser predictions=<file> [split=val] [compat=official] [out=<json>]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PYTHON:-python}" -m safeeraser.score_answers "$@"
