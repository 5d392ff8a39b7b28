#!/usr/bin/env bash
# Score a captions file with EFUF's metrics (CHAIR_s, CHAIR_i, BLEU-1/2/4, length), as the evaluation does:
#   bash scripts/score_captions.bash captions=<file> data_dir=<COCO-layout folder> [compat=official] \
#        [synonyms=<path>] [out=<json>]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PYTHON:-python}" -m efuf.score_captions "$@"
