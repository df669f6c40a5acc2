#!/usr/bin/env bash
# `make bench`: runs the benchmarks and merges their figures into bench/results/latest.json
# (a flat JSON object of numbers plus "meta"). Creates nothing outside var/ and bench/results/.
# Uses PostgreSQL and Redis like the tests (its own database, kimportal_bench) and a private slapd.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --demo
mkdir -p bench/results var
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/13}"

merge() {  # merge a bench's JSON output into latest.json
  .venv/bin/python - "$1" bench/results/latest.json <<'PY'
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
}

for bench in bench/vzd_search.py bench/collaboration.py bench/parsing.py bench/ingest.py bench/ingest_large.py bench/load.py bench/signing.py; do
  out=$(mktemp var/bench.XXXXXX.json)
  echo "== $bench"
  .venv/bin/python "$bench" | tee "$out"
  merge "$out"
  rm -f "$out"
done
