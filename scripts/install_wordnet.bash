#!/usr/bin/env bash
# WordNet 3.0 for EFUF's original CHAIR reader (efuf/chair_original.py, compat switch chair_as_original): Debian's
# packages, installed by `make install` when missing and this runs as root with apt-get; otherwise one line says how.
# Never fails the install: without WordNet only that reader (and its tests, which skip) is unavailable.
set -u
if [ -n "${WORDNET_DIR:-}" ] || { [ -f /usr/share/wordnet/index.noun ] && [ -f /usr/share/wordnet/index.sense ]; }; then
  exit 0
fi
PACKAGES="wordnet-base wordnet-sense-index"
if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  if apt-get install -y -q --no-install-recommends $PACKAGES > /dev/null 2>&1 \
     || { apt-get update -q > /dev/null 2>&1 && apt-get install -y -q --no-install-recommends $PACKAGES > /dev/null 2>&1; }; then
    echo "installed WordNet 3.0 ($PACKAGES) for EFUF's original CHAIR reader"
    exit 0
  fi
fi
echo "WordNet 3.0 is not installed: EFUF's original CHAIR reader (compat) needs it: sudo apt-get install $PACKAGES" \
     "(or WORDNET_DIR=<a WordNet 3.0 dict folder>); its tests skip"
exit 0
