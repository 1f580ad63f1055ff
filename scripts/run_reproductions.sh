#!/usr/bin/env bash
# Run pre-registered reproductions at full scale on their claims files' fresh seeds (resuming finished seeds), copy
# each summary and its figures into docs/reproductions/, and regenerate docs/reproductions.md.
# Usage: scripts/run_reproductions.sh [NAME...]   (default: every pre-registered reproduction)
# curvlab reproduce refuses to run the fresh seeds while a claims file has uncommitted changes: commit it first.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  mapfile -t names < <($BIN/python -c "from curvlab.reproductions import REGISTRY; print('\n'.join(n for n, r in REGISTRY.items() if r.preregistered))")
fi
for name in "${names[@]}"; do
  if ! $BIN/python -c "import sys; from curvlab.reproductions import REGISTRY; sys.exit(not REGISTRY['$name'].preregistered)"; then
    echo "$name has no claims file: pre-register it (src/curvlab/reproductions/claims/$name.toml) and commit it first" >&2
    exit 2
  fi
  out="runs/reproduce/$name"
  $BIN/curvlab reproduce "$name" --out "$out" > /dev/null
  echo "$name: $(head -1 "$out/verdict.txt")"
  cp "$out/numbers.json" "docs/reproductions/$name.json"
  rm -f "docs/reproductions/${name}__"*.png
  for fig in "$out"/*.png; do cp "$fig" "docs/reproductions/${name}__$(basename "$fig")"; done
done
$BIN/python scripts/reproductions_doc.py
