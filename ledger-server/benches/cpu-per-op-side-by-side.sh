#!/usr/bin/env bash
# Server CPU per operation of two server builds, side by side (docs/benchmarks.md,
# "Fourth session"). On a shared VM, steal time moves requests/s by ±25 % between
# runs; the server's own CPU time per operation moves less, but still by ±15 % (this
# VM's kernel charges stolen time to the running process: "Fifth session"). For a
# count that does not move, see instructions-per-op.sh. Both builds serve
# `ledger-server demo` at once, each on its own data directory, and the same load
# alternates between them ROUNDS times.
#
#   ledger-server/benches/cpu-per-op-side-by-side.sh /tmp/before /tmp/after 3
#   MIX=credit-report=1 CONCURRENCY=2 ledger-server/benches/cpu-per-op-side-by-side.sh ...
#   EXTRA="--batch 100" ledger-server/benches/cpu-per-op-side-by-side.sh ...
#   AFTER_DEMO_FLAGS="--payload-encoding binary" \
#     ledger-server/benches/cpu-per-op-side-by-side.sh B B    # one build, two flags
#
# Each line: build, the machine's steal ticks over the run (/proc/stat, 1/100 s), the
# server's CPU µs per operation (utime + stime from /proc/PID/stat over the run,
# divided by the operations), and the load generator's summary line.
set -euo pipefail
BEFORE=${1:?usage: cpu-per-op-side-by-side.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]}
AFTER=${2:?usage: cpu-per-op-side-by-side.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]}
ROUNDS=${3:-3}
MIX=${MIX:-deposit=1}
CONCURRENCY=${CONCURRENCY:-64}
DURATION=${DURATION:-12s}
EXTRA=${EXTRA:-}
BEFORE_DEMO_FLAGS=${BEFORE_DEMO_FLAGS:-}  # extra `demo` flags of each server
AFTER_DEMO_FLAGS=${AFTER_DEMO_FLAGS:-}
KEY=tbk_DEMO-ONLY-admin-key-published-in-the-docs
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

start() { # binary label port demo-flags
  # shellcheck disable=SC2086 # $4 is a list of flags
  RUST_LOG=warn "$1" demo --data-dir "$WORK/$2" --listen "127.0.0.1:$3" --metrics-listen off $4 \
    >"$WORK/$2.log" 2>&1 &
  PIDS+=($!)
}
start "$BEFORE" before 50097 "$BEFORE_DEMO_FLAGS"
start "$AFTER" after 50098 "$AFTER_DEMO_FLAGS"
# Seeding the default city takes seconds; wait for both banners (at most 2 minutes).
for _ in $(seq 1 120); do
  grep -q 50097 "$WORK/before.log" && grep -q 50098 "$WORK/after.log" && break
  sleep 1
done
sleep 3

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
steal_ticks() { awk '/^cpu /{print $9}' /proc/stat; }

echo "operation columns: ok, per s, errors, p50 ms, p90 ms, p99 ms, p99.9 ms, max ms"
for _ in $(seq 1 "$ROUNDS"); do
  for i in 0 1; do
    label=$([ $i = 0 ] && echo before || echo after)
    bin=$([ $i = 0 ] && echo "$BEFORE" || echo "$AFTER")
    port=$([ $i = 0 ] && echo 50097 || echo 50098)
    pid=${PIDS[$i]}
    c0=$(cpu_ticks "$pid"); s0=$(steal_ticks)
    # shellcheck disable=SC2086 # EXTRA is a list of flags
    out=$("$bin" load --target "http://127.0.0.1:$port" --api-key $KEY --mix "$MIX" \
      --concurrency "$CONCURRENCY" --duration "$DURATION" $EXTRA 2>&1 \
      | grep -E '^(deposit|spend|exchange|redemption|account|credit-report) ' | head -1 || true)
    c1=$(cpu_ticks "$pid"); s1=$(steal_ticks)
    ops=$(echo "$out" | awk '{print $2}')
    if [ -z "$ops" ] || [ "$ops" = 0 ]; then
      echo "$label | no operations; server log: $WORK/$label.log"; tail -3 "$WORK/$label.log"; continue
    fi
    # ticks are 1/100 s: µs per op = ticks * 10,000 / ops
    echo "$label | steal=$((s1 - s0)) server_cpu_us_per_op=$(( (c1 - c0) * 10000 / ops )) | $out"
  done
done
