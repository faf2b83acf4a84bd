#!/usr/bin/env bash
# End-to-end throughput of two server builds, side by side (docs/benchmarks.md, "End to
# end"): each build serves `ledger-server demo` on its own data directory (seeded on
# first use, authentication on, RUST_LOG=warn, metrics off) and the same load runs
# against it; the builds alternate ROUNDS times so that both see the same machine.
#
#   cargo build --release -p ledger-server && cp target/release/ledger-server /tmp/after
#   git checkout OTHER && cargo build --release -p ledger-server && cp target/release/ledger-server /tmp/before
#   ledger-server/benches/e2e-side-by-side.sh /tmp/before /tmp/after 2
#
# Each line: build, workload, end time, load average, the server's CPU seconds over the
# run (from /proc/PID/stat), and the load generator's summary line.
set -euo pipefail
BEFORE=${1:?usage: e2e-side-by-side.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]}
AFTER=${2:?usage: e2e-side-by-side.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]}
ROUNDS=${3:-2}
ADDR=127.0.0.1:50091
KEY=tbk_DEMO-ONLY-admin-key-published-in-the-docs
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

one_build() {
  local bin=$1 label=$2 dir=$WORK/$2
  RUST_LOG=warn "$bin" demo --data-dir "$dir" --listen $ADDR --metrics-listen off >"$WORK/$label.log" 2>&1 &
  local server=$!
  # Seeding the default city takes seconds; wait for the banner (at most 2 minutes).
  for _ in $(seq 1 120); do grep -q "$ADDR" "$WORK/$label.log" && break; sleep 1; done
  sleep 5
  run() {
    local before after out
    before=$(cpu_ticks $server)
    out=$("$bin" load --target "http://$ADDR" --api-key $KEY "$@" 2>&1 | grep -E '^(deposit|credit-report) ' || true)
    after=$(cpu_ticks $server)
    echo "$label | $* | $(date +%H:%M:%S) load=$(cut -d' ' -f1 /proc/loadavg) server_cpu_s=$(( (after - before) / 100 )) | $out"
  }
  run --mix deposit=1 --concurrency 64 --duration 20s
  run --mix deposit=1 --concurrency 64 --duration 20s --batch 100
  run --mix credit-report=1 --concurrency 2 --duration 10s
  kill -INT $server
  wait $server 2>/dev/null || true
}

echo "operation columns: ok, per s, errors, p50 ms, p90 ms, p99 ms, p99.9 ms, max ms"
for _ in $(seq 1 "$ROUNDS"); do
  one_build "$BEFORE" before
  one_build "$AFTER" after
done
