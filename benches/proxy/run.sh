#!/usr/bin/env bash
# Side-by-side proxy benchmark: redis-benchmark against redis directly, through db-proxy, and
# through twemproxy (nutcracker), each in front of the same two redis-servers.
# Proxy and redis-servers run on core 0, the load on core 1 (../shared/BENCHMARKS.md).
# Prints a Markdown table of ops/s and p50/p99 (ms) for SET and GET at -P 1 and -P 16.
#
# Usage: benches/proxy/run.sh [requests]   (needs redis-server, redis-benchmark, nutcracker)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-200000}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --example db-proxy >/dev/null 2>&1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "port $1 never answered" >&2; exit 1; }

r1=$(free_port); r2=$(free_port)
for p in $r1 $r2; do
  taskset -c 0 redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >/dev/null 2>&1 &
  pids+=($!); wait_port "$p"
done

px=$(free_port)
taskset -c 0 target/release/examples/db-proxy --listen 127.0.0.1:$px --cores 1 \
  --upstream 127.0.0.1:$r1 --upstream 127.0.0.1:$r2 >/dev/null 2>"$work/proxy.log" &
pids+=($!); wait_port "$px"

tw=$(free_port)
cat > "$work/nutcracker.yml" <<YML
pool:
  listen: 127.0.0.1:$tw
  hash: fnv1a_64
  distribution: ketama
  redis: true
  server_connections: 1
  servers:
   - 127.0.0.1:$r1:1
   - 127.0.0.1:$r2:1
YML
taskset -c 0 nutcracker -c "$work/nutcracker.yml" -o "$work/nutcracker.log" &
pids+=($!); wait_port "$tw"

bench() { # port pipeline -> "SET ops p50 p99|GET ops p50 p99"
  taskset -c 1 redis-benchmark -h 127.0.0.1 -p "$1" -t set,get -c 50 -r 100000 -P "$2" -n "$N" --csv 2>/dev/null \
    | tr -d '"' | awk -F, 'NR>1 { printf "%s %s %s %s\n", $1, $2, $5, $7 }'
}

echo "| target | pipeline | SET ops/s | SET p50 ms | SET p99 ms | GET ops/s | GET p50 ms | GET p99 ms |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for P in 1 16; do
  for target in "redis direct:$r1" "db-proxy (corio):$px" "twemproxy:$tw"; do
    name=${target%%:*}; port=${target##*:}
    line=$(bench "$port" "$P" | awk '{ printf "%.0f | %s | %s | ", $2, $3, $4 }')
    echo "| $name | $P | ${line% | } |"
  done
done
