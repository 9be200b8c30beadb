#!/usr/bin/env bash
# README's first command: set up a fresh machine, then run ajan's analysis on the bundled canary sample.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/hack/setup.sh"
"$root/.venv/bin/ajan" detect "$root/samples/canary.csv" --train "$root/samples/canary-baseline.csv" \
  --output "${TMPDIR:-/tmp}/ajan-canary-scores.csv"
echo "per-row scores written to ${TMPDIR:-/tmp}/ajan-canary-scores.csv"
echo
exec "$root/.venv/bin/python" "$root/hack/demo.py"
