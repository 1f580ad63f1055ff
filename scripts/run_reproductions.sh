#!/usr/bin/env bash
# Run every reproduction at full scale on every seed (resuming finished seeds), copy each summary and its
# figures into docs/reproductions/, and regenerate docs/reproductions.md. Usage: scripts/run_reproductions.sh [NAME...]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  mapfile -t names < <($BIN/python -c "from curvlab.reproductions import REGISTRY; print('\n'.join(REGISTRY))")
fi
for name in "${names[@]}"; do
  out="runs/reproduce/$name"
  $BIN/curvlab reproduce "$name" --out "$out" > /dev/null
  echo "$name: $(head -1 "$out/verdict.txt")"
  cp "$out/numbers.json" "docs/reproductions/$name.json"
  rm -f "docs/reproductions/${name}__"*.png
  for fig in "$out"/*.png; do cp "$fig" "docs/reproductions/${name}__$(basename "$fig")"; done
done
$BIN/python scripts/reproductions_doc.py
