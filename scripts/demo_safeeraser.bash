#!/usr/bin/env bash
# The built-in SafeEraser end to end, offline, on CPU: writes the synthetic release (harmless stand-ins for harmful
# content, in the release's layout) and a tiny LLaVA, trains the vanilla model on every answer, forgets all_train
# with GA, GD, KL, PO and each with Prompt Decouple, evaluates efficacy, generality, RR, SARR, ROUGE-L (offline
# judge; JUDGE=auto uses OPENAI_API_KEY/OPENAI_BASE_URL) and prints the table (results/safeeraser.{csv,md},
# results/safeeraser_tradeoff.png: ASR against SARR).
#   bash scripts/demo_safeeraser.bash
#   RUN_ROOT=runs/demo2 bash scripts/demo_safeeraser.bash seed=1        # extra Hydra overrides go to every stage
source "$(dirname "${BASH_SOURCE[0]}")/demo_env.sh"
bash scripts/finetune.bash benchmark=safeeraser run_root="$RUN_ROOT" "$@"
for method in ga gd kl po ga_pd gd_pd kl_pd po_pd; do
  bash scripts/forget_lora.bash benchmark=safeeraser method="$method" run_root="$RUN_ROOT" "$@"
done
bash scripts/eval_everything.bash benchmark=safeeraser run_root="$RUN_ROOT" eval.judge.enabled="${JUDGE:-false}" "$@"
bash scripts/aggregate.bash run_root="$RUN_ROOT" out_dir="$OUT_DIR" check_shape=true
echo "demo finished in $((SECONDS - start)) s"
