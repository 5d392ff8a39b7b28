#!/usr/bin/env bash
# A headless browser for the HTML report's browser tests (tests/unlearning/reporting: a table cell read back from
# the rendered page, a column sorted by a click, screenshots): Debian's chromium, installed by `make install` when
# no chromium binary is on PATH and this runs as root with apt-get; otherwise one line says the tests will skip.
# Never fails the install: without a browser only those tests skip (the report itself needs none).
set -u
for binary in chromium chromium-browser google-chrome; do
  if command -v "$binary" > /dev/null; then
    exit 0
  fi
done
if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  if apt-get update -qq > /dev/null 2>&1 && apt-get install -y -qq chromium > /dev/null 2>&1; then
    echo "installed chromium (Debian's) for the HTML report's browser tests"
    exit 0
  fi
fi
echo "no chromium: the HTML report's browser tests will skip (sudo apt-get install chromium to run them)"
exit 0
