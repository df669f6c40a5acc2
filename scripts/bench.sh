#!/usr/bin/env bash
# `make bench`: runs the benchmarks and merges their figures into bench/results/latest.json
# (a flat JSON object of numbers plus "meta"). Creates nothing outside var/ and bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results var
out=$(mktemp var/bench-vzd.XXXXXX.json)
trap 'rm -f "$out"' EXIT
.venv/bin/python bench/vzd_search.py "$@" | tee "$out"
.venv/bin/python - "$out" bench/results/latest.json <<'PY'
import json
import sys
from pathlib import Path

new = json.loads(Path(sys.argv[1]).read_text())
target = Path(sys.argv[2])
merged = json.loads(target.read_text()) if target.exists() else {}
meta = {**merged.get("meta", {}), **new.pop("meta", {})}
merged.update(new)
merged["meta"] = meta
target.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
print(f"merged into {target}")
PY
