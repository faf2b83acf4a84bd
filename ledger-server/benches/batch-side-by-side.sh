#!/usr/bin/env bash
# SubmitBatch throughput of two builds, side by side (docs/benchmarks.md, "Seventeenth
# session"): the issue's target, 100,000 deposits/s through the batch RPC with client
# and server on one 2-core machine. Each round starts each build's server on a fresh
# empty data directory (binary payloads, RUST_LOG=warn, metrics off, open mode) and
# drives it with that build's own load generator: batches of 100 deposits from 64
# callers for DURATION. The builds alternate ROUNDS times so that both see the same
# machine (this VM's speed moves by ±20 % over minutes).
#
#   cargo build --release -p ledger-server && cp target/release/ledger-server /tmp/after
#   git checkout OTHER && cargo build --release -p ledger-server && cp target/release/ledger-server /tmp/before
#   ledger-server/benches/batch-side-by-side.sh /tmp/before /tmp/after 6
#   DURATION=20s ledger-server/benches/batch-side-by-side.sh /tmp/after /tmp/after 4   # one build
#
# Each line: build, deposits/s, p99 ms, the server's CPU µs per deposit (utime + stime
# from /proc/PID/stat over the run), the load generator's CPU µs per deposit.
set -euo pipefail
BEFORE=${1:?usage: batch-side-by-side.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]}
AFTER=${2:?usage: batch-side-by-side.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]}
ROUNDS=${3:-3}
DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-64}
BATCH=${BATCH:-100}
ADDR=127.0.0.1:50093
WORK=$(mktemp -d)
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill -INT "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks_per_s=$(getconf CLK_TCK)

one_build() {
  local bin=$1 label=$2 dir=$WORK/$2
  rm -rf "$dir"
  RUST_LOG=warn "$bin" serve --insecure-no-auth --metrics-listen off --data-dir "$dir" \
    --listen $ADDR --payload-encoding binary >"$WORK/$label.log" 2>&1 &
  PID=$!
  # Listening once a connection is accepted (at warn the server logs no start line).
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/${ADDR##*:}) 2>/dev/null && break; sleep 0.1; done
  local before after summary load_cpu deposits
  before=$(cpu_ticks $PID)
  summary=$( { /usr/bin/time -f "load-cpu %U %S" "$bin" load --target "http://$ADDR" --api-key bench \
    --mix deposit=1 --concurrency "$CONCURRENCY" --duration "$DURATION" --batch "$BATCH"; } 2>&1)
  after=$(cpu_ticks $PID)
  kill -INT $PID; wait $PID 2>/dev/null || true; PID=""
  deposits=$(echo "$summary" | awk '$1 == "deposit" {print $2}')
  load_cpu=$(echo "$summary" | awk '$1 == "load-cpu" {print $2 + $3}')
  echo "$summary" | awk -v l="$label" -v s=$((after - before)) -v t="$ticks_per_s" -v c="$load_cpu" -v n="$deposits" \
    '$1 == "deposit" {printf "%-8s %8s deposits/s  p99 %7s ms  server %5.1f us/deposit  load generator %4.1f us/deposit\n", l, $3, $7, s / t * 1e6 / n, c * 1e6 / n}'
}

for r in $(seq 1 "$ROUNDS"); do
  one_build "$BEFORE" before
  one_build "$AFTER" after
done
