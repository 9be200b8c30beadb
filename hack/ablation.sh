#!/usr/bin/env bash
# Reproduces the ablation table of docs/accuracy.md: each design choice of the detector switched
# off (or changed) alone, measured on NAB (standard profile) and SMD (pooled, 7 machines).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$root/.venv/bin/python"
export OMP_NUM_THREADS=1  # the evaluations already run two worker processes
echo "| variant | NAB standard | SMD precision | SMD recall | SMD F1 | SMD normal flagged | SMD HitRate@150% |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for variant in "" "calibrate=false" "chi_square=false" "use_trend=false" "trend_weight=1.0" \
               "seasonal=false" "use_level=true" "persistence=2" "z_half=6" "z_half=10"; do
  sets=()
  [[ -n "$variant" ]] && sets=(--set "$variant")
  nab=$("$py" -m ajan.evaluation.nab --detector ajan "${sets[@]}" | awk -F'|' '$2 ~ /standard/ {gsub(/ /,"",$3); print $3; exit}')
  smd=$("$py" -m ajan.evaluation.smd "${sets[@]}" | awk -F'|' '$2 ~ /pooled/ {gsub(/ /,"",$0); print}')
  IFS='|' read -r -a f <<< "$smd"
  # pooled row fields: machine, segments, detected, false alarms, P, R, F1, normal flagged, best, point, interp, h100, h150
  echo "| ${variant:-default} | $nab | ${f[5]} | ${f[6]} | ${f[7]} | ${f[8]} | ${f[13]} |"
done
