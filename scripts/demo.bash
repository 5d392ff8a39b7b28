#!/usr/bin/env bash
# The built-in benchmark end to end, offline, on CPU: creates the synthetic FIUBench data and a tiny LLaVA,
# finetunes a "full" and a "retain" model, forgets forget10 with GA, GD, KL, PO and NPO, evaluates every
# run and prints the results table (results/fiubench.{csv,md}, results/fiubench_tradeoff.png).
#   bash scripts/demo.bash
#   RUN_ROOT=runs/demo2 bash scripts/demo.bash seed=1        # extra Hydra overrides go to every stage
source "$(dirname "${BASH_SOURCE[0]}")/demo_env.sh"
bash scripts/finetune.bash split=full run_root="$RUN_ROOT" "$@"
bash scripts/finetune.bash split=retain run_root="$RUN_ROOT" "$@"
# METHODS="ga npo simnpo" bash scripts/demo.bash: other methods (make demo-methods: every registered one)
for method in ${METHODS:-ga gd kl po npo}; do
  bash scripts/forget_lora.bash method="$method" run_root="$RUN_ROOT" "$@"
done
# The LLM judge is off so the demo stays offline; JUDGE=auto bash scripts/demo.bash uses OPENAI_API_KEY/OPENAI_BASE_URL.
bash scripts/eval_everything.bash run_root="$RUN_ROOT" eval.judge.enabled="${JUDGE:-false}" "$@"
bash scripts/aggregate.bash run_root="$RUN_ROOT" out_dir="$OUT_DIR" check_shape=true
echo "demo finished in $((SECONDS - start)) s"
