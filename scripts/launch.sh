# Sourced by the launchers: run a recipe module from the repository root, under `accelerate launch` when a
# GPU is present or ACCELERATE_CONFIG names a config, else as one plain CPU process.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"

# --help / -h: the calling script's header and its config's main settings (unlearning/runs/usage.py)
declare -A CONFIG_OF=([unlearning.recipes.finetune]=finetune [unlearning.recipes.forget]=forget
                      [unlearning.recipes.evaluate]=eval [efuf.curation]=curate)

launch() {
  local module=$1
  shift
  cd "$ROOT"
  local arg
  for arg in "$@"; do
    if [[ "$arg" == "--help" || "$arg" == "-h" ]]; then
      "$PYTHON" -m unlearning.runs.usage "scripts/$(basename "${BASH_SOURCE[1]}")" "${CONFIG_OF[$module]}"
      return
    fi
  done
  local config="${ACCELERATE_CONFIG:-}"
  if [[ -z "$config" ]] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    config=config/accelerate/single_gpu.yaml
  fi
  if [[ -z "$config" ]]; then
    "$PYTHON" -m "$module" "$@"
    return
  fi
  # cpu_* configs run on CPU (DDP: ACCELERATE_USE_CPU; DeepSpeed: DS_ACCELERATOR=cpu); a DeepSpeed config that the
  # launch would silently run without DeepSpeed stops here, saying what to change (unlearning/runs/distributed.py)
  local exports line
  exports="$("$PYTHON" -m unlearning.runs.distributed "$config")" || return 1
  while IFS= read -r line; do
    [[ -n "$line" ]] && export "${line?}"
  done <<< "$exports"
  export ACCELERATE_CONFIG="$config"  # named by the recipe when the processes do not run what it asked for
  # through unlearning.runs.redacted: accelerate quotes the whole command line (a key pasted in it too) when the
  # recipe fails; the recipe itself redacts its own output (unlearning.runs.console)
  "$PYTHON" -m unlearning.runs.redacted accelerate.commands.launch --config_file "$config" -m "$module" "$@"
}
