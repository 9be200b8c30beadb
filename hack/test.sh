#!/usr/bin/env bash
# README's test command: set up a fresh machine, then run the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/hack/setup.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
