#!/usr/bin/env bash
# Regenerate requirements.lock: the exact versions `make` installs (demo, test, CI), resolved from the loose ranges
# of requirements.txt + setup.py's dev extra for CPython 3.11 on x86-64 Linux, with the CPU build of torch (so no
# CUDA package enters the lock). torch itself is left out of the lock: make installs TORCH_SPEC first (a CUDA build
# on a GPU node), and the lock's header records the torch it was resolved with.
#   make lock                       # = bash scripts/lock.bash: keeps every pin it can, adds what is new
#   UPGRADE=1 make lock             # every package at its newest allowed version
#   TORCH_VERSION=2.14.1 make lock  # resolve against another torch (change TORCH_SPEC in the Makefile with it)
# After a lock change, follow docs/reproducibility.md ("Upgrading the lock"): reinstall, run the tests, and re-pin
# the golden numbers and the README's tables only deliberately, when the new versions move them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
UV="${UV:-uv}"
command -v "$UV" >/dev/null || UV=.venv/bin/uv
constraint=$(mktemp)
trap 'rm -f "$constraint"' EXIT
echo "torch==${TORCH_VERSION}+cpu" > "$constraint"
# Where the CPU torch wheel comes from: a local wheel folder when pip is configured with one, else PyTorch's CPU index.
if [[ -n "${PIP_FIND_LINKS:-}" ]]; then
  source=(--find-links "$PIP_FIND_LINKS")
else
  source=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi
upgrade=()
[[ "${UPGRADE:-0}" == 1 ]] && upgrade=(--upgrade)
rm -rf ./*.egg-info  # metadata of an earlier editable install would stand in for setup.py's requirements
# uv caches setup.py's metadata by setup.py's own timestamp: a requirement added to requirements.txt alone would be
# missed without refreshing it
# The existing lock is the preference: its pins stay unless a requirement changed (or UPGRADE=1).
"$UV" pip compile setup.py --extra dev --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  "${source[@]}" --constraint "$constraint" --no-emit-package torch --no-emit-find-links --no-emit-index-url \
  --custom-compile-command "make lock" --refresh-package vlm-unlearning --quiet "${upgrade[@]}" \
  --output-file requirements.lock
header="# torch==${TORCH_VERSION}+cpu (resolved with; installed before this file from TORCH_SPEC)"
{ echo "$header"; grep -v '^# torch==' requirements.lock; } > requirements.lock.new
mv requirements.lock.new requirements.lock
echo "wrote requirements.lock ($(grep -c '^[A-Za-z0-9].*==' requirements.lock) packages + torch ${TORCH_VERSION})"
