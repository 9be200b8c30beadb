#!/usr/bin/env bash
# Fails (with a diff) when crds/ or docs/crds.md differ from what the pydantic models in ajan.models
# generate. Fix with: .venv/bin/python -m ajan.models.crd --write
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
cd "$root"
exec "$python" -m ajan.models.crd --check --root "$root"
