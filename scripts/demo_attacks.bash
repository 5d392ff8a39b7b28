#!/usr/bin/env bash
# The attacks on a built-in demo's runs (README "Attacks"): relearning on half of the forget set, 8- and 4-bit
# weights, rephrased images and the questions without their images, each run and its reference, then the robustness
# and relearning tables (results/<benchmark>_robustness.{json,csv,md}, results/<benchmark>_relearn.{json,csv,md}).
# Runs the demo first when its runs are missing (a finished demo is reused as it is).
#   bash scripts/demo_attacks.bash                                           # FIUBench: runs/ (make demo)
#   RUN_ROOT=runs/methods OUT_DIR=results/methods bash scripts/demo_attacks.bash   # every method (make demo-methods)
#   bash scripts/demo_attacks.bash benchmark=mllmu                           # MLLMU-Bench (make demo-mllmu)
#   bash scripts/demo_attacks.bash benchmark=efuf                            # EFUF (make demo-efuf), no text_only
#   ATTACKS=[relearn] bash scripts/demo_attacks.bash attacks.relearn.steps=[0,10]
source "$(dirname "${BASH_SOURCE[0]}")/demo_env.sh"
ATTACKS="${ATTACKS:-[relearn,quantize_8bit,quantize_4bit,image_rephrase,text_only]}"
SHOTS=""
if [[ " $* " == *" benchmark=mllmu "* ]]; then  # as scripts/demo_mllmu.bash: zero-shot evaluation
  [[ -d "$RUN_ROOT/mllmu" ]] || bash scripts/demo_mllmu.bash "$@"
  SHOTS="benchmark.recipe.eval.shots.classification=0 benchmark.recipe.eval.shots.cloze=0"
elif [[ " $* " == *" benchmark=efuf "* ]]; then  # captions have no question to ask without the image
  [[ -d "$RUN_ROOT/efuf" ]] || bash scripts/demo_efuf.bash "$@"
  ATTACKS="${ATTACKS_EFUF:-[relearn,quantize_8bit,quantize_4bit,image_rephrase]}"
else
  [[ -d "$RUN_ROOT/fiubench" ]] || bash scripts/demo.bash "$@"
fi
# shellcheck disable=SC2086  # SHOTS holds several overrides
bash scripts/eval_everything.bash run_root="$RUN_ROOT" eval.judge.enabled="${JUDGE:-false}" attack="$ATTACKS" \
  attacks.table_dir="$OUT_DIR" $SHOTS "$@"
echo "attacks finished in $((SECONDS - start)) s"
