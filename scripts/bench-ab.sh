#!/usr/bin/env bash
# Two builds side by side over HTTP: alternating runs of `latchkey-load`
# against a fresh release server of each, on SQLite, so that a change on a
# hot path is measured against the build before it on the same machine.
#
#   git worktree add /tmp/base <commit> && (cd /tmp/base && cargo build --release -p latchkey -p latchkey-bench)
#   cargo build --release -p latchkey -p latchkey-bench
#   scripts/bench-ab.sh /tmp/base/target/release target/release
#
# PAIRS (default 6), SCENARIOS (default "me refresh"), CONCURRENCY (64) and
# SECONDS_PER_RUN (8) tune it. Each line is one run: the build, then what
# latchkey-load printed (server_cpu_us_per_request among it).
set -euo pipefail
cd "$(dirname "$0")/.."

base=${1:?usage: $0 BASE_RELEASE_DIR NEW_RELEASE_DIR}
new=${2:?usage: $0 BASE_RELEASE_DIR NEW_RELEASE_DIR}
pairs=${PAIRS:-6}
scenarios=${SCENARIOS:-me refresh}
concurrency=${CONCURRENCY:-64}
seconds=${SECONDS_PER_RUN:-8}
port=${PORT:-18181}

one() {
  local label=$1 dir=$2 scenario=$3
  local work
  work=$(mktemp -d)
  export LATCHKEY_DATABASE_URL="sqlite://$work/latchkey.db"
  export LATCHKEY_LISTEN="127.0.0.1:$port"
  export LATCHKEY_THROTTLE_ACCOUNT=1000000/1m
  export LATCHKEY_MAX_CONNECTIONS_PER_ADDRESS=4096
  export LATCHKEY_LOG=warn
  for i in $(seq 0 $((concurrency - 1))); do
    echo 'load test password' | "$dir/latchkey" user add "load-$i" --password-stdin >/dev/null
  done
  "$dir/latchkey" serve &
  local server=$!
  for _ in $(seq 1 50); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.2
  done
  echo "$label $("$new/latchkey-load" --target "http://127.0.0.1:$port" --scenario "$scenario" \
    --concurrency "$concurrency" --seconds "$seconds" --server-pids "$server" \
    --username load --users "$concurrency")"
  kill "$server"
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
}

echo "cores=$(nproc) date=$(date -u +%F) cpu=$(lscpu | sed -n 's/^Model name: *//p')"
for _ in $(seq 1 "$pairs"); do
  for scenario in $scenarios; do
    one base "$base" "$scenario"
    one new "$new" "$scenario"
  done
done
