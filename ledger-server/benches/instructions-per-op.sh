#!/usr/bin/env bash
# Server instructions per operation of two server builds, side by side, counted by
# valgrind's cachegrind (docs/benchmarks.md, "Fifth session"). On the shared VM,
# steal time moves requests/s by ±25 % and even a process's own CPU time by ±15 %
# between runs of the same build (stolen time is charged to whatever was running);
# an instruction count does not depend on the neighbours. It is not a time: a cache
# miss or an fsync costs no more instructions than a hit, so confirm a change's
# effect on time with cpu-per-op-side-by-side.sh. Needs valgrind (Debian: apt-get
# install valgrind).
#
#   ledger-server/benches/instructions-per-op.sh /tmp/before /tmp/after
#   EXTRA="" ledger-server/benches/instructions-per-op.sh ...    # unary deposits
#   AFTER_SERVE_FLAGS="--payload-encoding binary" \
#     ledger-server/benches/instructions-per-op.sh B B             # one build, two flags
#
# Each build serves on a fresh data directory without the demo city (seeding under
# valgrind would take an hour; the load generator registers its own accounts), runs
# under cachegrind while the native load generator drives it for DURATION, then
# stops. The count includes start-up, the load generator's registrations and
# shutdown, a few percent at this duration.
set -euo pipefail
BEFORE=${1:?usage: instructions-per-op.sh BEFORE_BINARY AFTER_BINARY}
AFTER=${2:?usage: instructions-per-op.sh BEFORE_BINARY AFTER_BINARY}
MIX=${MIX:-deposit=1}
CONCURRENCY=${CONCURRENCY:-16}
DURATION=${DURATION:-40s}
EXTRA=${EXTRA-"--batch 100"}  # set and empty: unary calls
BEFORE_SERVE_FLAGS=${BEFORE_SERVE_FLAGS-}  # extra `serve` flags of each run
AFTER_SERVE_FLAGS=${AFTER_SERVE_FLAGS-}
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
WORK=$(mktemp -d)
PID=""
KEEP=""  # set when a run failed: its server log stays for reading
cleanup() {
  if [ -n "$PID" ]; then kill -INT "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  if [ -z "$KEEP" ]; then rm -rf "$WORK"; else echo "kept $WORK for its logs"; fi
}
trap cleanup EXIT

run() { # binary label port serve-flags
  # shellcheck disable=SC2086 # $4 is a list of flags
  RUST_LOG=warn valgrind --tool=cachegrind --cache-sim=no \
    --cachegrind-out-file="$WORK/$2.cg" "$1" serve --insecure-no-auth \
    --data-dir "$WORK/$2" --listen "127.0.0.1:$3" --metrics-listen off $4 \
    >"$WORK/$2.log" 2>&1 &
  PID=$!
  # Start-up under valgrind takes seconds; wait until the port takes connections (at
  # most 2 minutes). Not the banner: it is an INFO line, off at RUST_LOG=warn, and
  # valgrind's own first lines already name the port.
  for _ in $(seq 1 120); do (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null && break; sleep 1; done
  # shellcheck disable=SC2086 # EXTRA is a list of flags
  out=$("$1" load --target "http://127.0.0.1:$3" --mix "$MIX" --concurrency "$CONCURRENCY" \
    --duration "$DURATION" $EXTRA 2>&1 \
    | grep -E '^(deposit|spend|exchange|redemption|account|credit-report) ' | head -1 || true)
  kill -INT "$PID"; wait "$PID" || true; PID=""
  ir=$(grep -E 'I[[:space:]]+refs:' "$WORK/$2.log" | awk '{gsub(",", "", $NF); print $NF}' || true)
  ops=$(echo "$out" | awk '{print $2}')
  if [ -z "$ops" ] || [ "$ops" = 0 ] || [ -z "$ir" ]; then
    KEEP=1; echo "$2 | no count; server log: $WORK/$2.log"; tail -3 "$WORK/$2.log"; return
  fi
  echo "$2 | instructions=$ir ops=$ops instructions_per_op=$((ir / ops)) | $out"
}

echo "operation columns: ok, per s (under valgrind), errors, p50 ms, p90 ms, p99 ms, p99.9 ms, max ms"
run "$BEFORE" before 50197 "$BEFORE_SERVE_FLAGS"
run "$AFTER" after 50198 "$AFTER_SERVE_FLAGS"
