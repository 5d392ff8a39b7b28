#!/usr/bin/env bash
# A learning-rate sweep on a built-in benchmark: Stage I (or the vanilla model) once, then every method in METHODS
# at every rate in LRS, each run evaluated, one table (results/sweep/<benchmark>.{csv,md}); how the tiny recipes'
# per-method rates were chosen (docs/methods.md, "Learning rates of the tiny recipes").
#   bash scripts/sweep_lr.bash                                           # FIUBench, the default methods and rates
#   METHODS="simnpo wga" LRS="1e-4 1e-3" bash scripts/sweep_lr.bash benchmark=mllmu
RUN_ROOT="${RUN_ROOT:-runs/sweep}"  # before demo_env.sh, which defaults them to the demo's folders
OUT_DIR="${OUT_DIR:-results/sweep}"
source "$(dirname "${BASH_SOURCE[0]}")/demo_env.sh"
METHODS="${METHODS:-ga gd kl po npo simnpo idkdpo undial wga rmu mmunlearner}"
LRS="${LRS:-1e-4 2e-4 5e-4 1e-3}"
SHOTS=""
if [[ " $* " == *" benchmark=mllmu "* ]]; then  # as scripts/demo_mllmu.bash: 40 vanilla epochs, zero-shot evaluation
  bash scripts/finetune.bash epochs="${EPOCHS:-40}" run_root="$RUN_ROOT" "$@"
  SHOTS="benchmark.recipe.eval.shots.classification=0 benchmark.recipe.eval.shots.cloze=0"
else
  bash scripts/finetune.bash split=full run_root="$RUN_ROOT" "$@"
  bash scripts/finetune.bash split=retain run_root="$RUN_ROOT" "$@"
fi
for method in $METHODS; do
  for lr in $LRS; do
    bash scripts/forget_lora.bash method="$method" lr="$lr" run_root="$RUN_ROOT" "$@"
  done
done
# shellcheck disable=SC2086  # SHOTS holds several overrides
bash scripts/eval_everything.bash run_root="$RUN_ROOT" eval.judge.enabled=false $SHOTS "$@"
bash scripts/aggregate.bash run_root="$RUN_ROOT" out_dir="$OUT_DIR"
echo "sweep finished in $((SECONDS - start)) s"
