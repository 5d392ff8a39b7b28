#!/usr/bin/env bash
# The built-in CLEAR end to end, offline, on CPU: writes the synthetic release (parquet, one folder per HF config)
# and a tiny LLaVA, finetunes Stage I on full+tofu and the retain model on retain90+tofu, forgets forget10 (captions
# and text QAs) with GA, GD, KL, NPO, SimNPO, IdkDPO, UNDIAL, WGA, RMU, MMUnlearner and MANU, evaluates the six
# tasks (forget, retain, their name recognition, real faces, real world) and prints the table
# (results/clear.{csv,md}, results/clear_tradeoff.png: MU against forget quality).
#   bash scripts/demo_clear.bash
#   METHODS="ga gd" bash scripts/demo_clear.bash seed=1        # extra Hydra overrides go to every stage
RUN_ROOT="${RUN_ROOT:-runs/demo_clear}"   # its own run root: the table holds this demo's runs only
source "$(dirname "${BASH_SOURCE[0]}")/demo_env.sh"
bash scripts/finetune.bash benchmark=clear run_root="$RUN_ROOT" "$@"
bash scripts/finetune.bash benchmark=clear split=retain90+tofu run_root="$RUN_ROOT" "$@"
for method in ${METHODS:-ga gd kl npo simnpo idkdpo undial wga rmu mmunlearner manu}; do
  bash scripts/forget_lora.bash benchmark=clear method="$method" run_root="$RUN_ROOT" "$@"
done
bash scripts/eval_everything.bash benchmark=clear run_root="$RUN_ROOT" eval.judge.enabled=false "$@"
bash scripts/aggregate.bash run_root="$RUN_ROOT" out_dir="$OUT_DIR" check_shape=true
echo "demo finished in $((SECONDS - start)) s"
