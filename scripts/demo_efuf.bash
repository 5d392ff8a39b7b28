#!/usr/bin/env bash
# The built-in EFUF end to end, offline, on CPU: writes drawn scenes in COCO layout and a tiny LLaVA, trains the
# vanilla captioner (it learnt to name absent objects), curates its captions of unseen scenes (objects from the
# synonym list, scored by a tiny CLIP trained on other scenes) into pos_neg.json + sentences.json, forgets the
# hallucinated clauses with EFUF (the code's default terms, and with the paper's sentence loss on) and with plain GA
# on the same clauses, evaluates
# CHAIR_s, CHAIR_i, BLEU and caption length on held-out scenes and prints the table (results/efuf.{csv,md},
# results/efuf_tradeoff.png: CHAIR_i against BLEU-4).
#   bash scripts/demo_efuf.bash
#   RUN_ROOT=runs/demo2 bash scripts/demo_efuf.bash seed=1        # extra Hydra overrides go to every stage
source "$(dirname "${BASH_SOURCE[0]}")/demo_env.sh"
bash scripts/finetune.bash benchmark=efuf run_root="$RUN_ROOT" "$@"
bash scripts/curate_efuf.bash run_root="$RUN_ROOT" "$@"
for method in efuf efuf_sentence ga; do
  bash scripts/forget_lora.bash benchmark=efuf method="$method" run_root="$RUN_ROOT" "$@"
done
bash scripts/eval_everything.bash benchmark=efuf run_root="$RUN_ROOT" "$@"
bash scripts/aggregate.bash run_root="$RUN_ROOT" out_dir="$OUT_DIR" check_shape=true
echo "demo finished in $((SECONDS - start)) s"
