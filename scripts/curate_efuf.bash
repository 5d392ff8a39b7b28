#!/usr/bin/env bash
# EFUF's data curation: the model under study captions COCO-layout images, objects are found in the captions and
# scored (CLIP or the COCO annotations), and pos_neg.json + sentences.json are written into the data folder.
# Takes Hydra overrides, e.g.: bash scripts/curate_efuf.bash model=llava_1_5_7b data_dir=dataset/efuf
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/launch.sh"
launch efuf.curation "$@"
