#!/usr/bin/env bash
# Runs benches/proxy/run.sh N times (default 5) and prints the table of per-cell medians, as
# ../shared/BENCHMARKS.md asks (the machine is noisy; one run is not a figure).
#
# Usage: benches/proxy/median.sh [runs] [requests]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
requests=${2:-200000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq "$runs"); do
  benches/proxy/run.sh "$requests" > "$out/run$i.md"
done
python3 - "$out" "$runs" <<'PY'
import statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
tables = [open(f"{out}/run{i}.md").read().splitlines() for i in range(1, runs + 1)]
header, rule, rows = tables[0][0], tables[0][1], len(tables[0]) - 2
print(header)
print(rule)
for r in range(rows):
    cells = [t[r + 2].strip("|").split("|") for t in tables]
    first = [c.strip() for c in cells[0]]
    merged = first[:2]
    for col in range(2, len(first)):
        values = sorted(float(c[col]) for c in cells)
        median = statistics.median(values)
        merged.append(f"{median:.0f}" if median >= 1000 else f"{median:.3f}")
    print("| " + " | ".join(merged) + " |")
print(f"\n(medians of {runs} runs)")
PY
