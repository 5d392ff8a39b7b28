#!/usr/bin/env bash
# The built-in UMU-Bench end to end, offline, on CPU: writes the synthetic release (parquet, the release's layout)
# and a tiny LLaVA, finetunes the vanilla model on full_data (MM_QA with images + UM_QA as text), forgets forget_15
# (2 of the 10 built-in profiles) with every method (each step on image+text and text-only forget QAs, as the authors train), evaluates the forget,
# retain and real-person sets with each question asked multimodally and unimodally, and prints the table
# (results/umu.{csv,md}, results/umu_tradeoff.png).
#   bash scripts/demo_umu.bash
#   METHODS="ga npo" RUN_ROOT=runs/demo2 bash scripts/demo_umu.bash seed=1   # extra Hydra overrides go to every stage
source "$(dirname "${BASH_SOURCE[0]}")/demo_env.sh"
SPLIT="${SPLIT:-forget_15}"
bash scripts/finetune.bash benchmark=umu epochs="${EPOCHS:-12}" run_root="$RUN_ROOT" "$@"
for method in ${METHODS:-ga gd kl po npo simnpo idkdpo undial wga rmu mmunlearner manu}; do
  bash scripts/forget_lora.bash benchmark=umu method="$method" forget_split="$SPLIT" run_root="$RUN_ROOT" "$@"
done
bash scripts/eval_everything.bash benchmark=umu forget_split="$SPLIT" run_root="$RUN_ROOT" "$@"
bash scripts/aggregate.bash run_root="$RUN_ROOT" out_dir="$OUT_DIR" check_shape=true
echo "demo finished in $((SECONDS - start)) s"
