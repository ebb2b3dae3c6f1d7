#!/usr/bin/env bash
# HTTP benchmarks on this machine: a release `latchkey serve` and the
# `latchkey-load` generator, both on loopback.
#
#   scripts/bench-http.sh sqlite            # a fresh SQLite file
#   scripts/bench-http.sh postgres          # a fresh schema on the local PostgreSQL (scripts/services.sh)
#
# CONCURRENCY (default 64) and SECONDS (default 10) tune the runs. With
# CURVE_CSV=FILE it runs instead `healthz`, `me` and `refresh` at 1, 4, 16
# and 64 clients (CURVE_CONCURRENCY) and appends one CSV row per run to FILE
# (backend,scenario,concurrency,rps,p50_ms,p99_ms,server_cpu_us,server_rss_kib),
# which scripts/plot-benchmarks.sh draws.
set -euo pipefail
cd "$(dirname "$0")/.."

backend=${1:-sqlite}
concurrency=${CONCURRENCY:-64}
seconds=${SECONDS_PER_RUN:-10}
port=${PORT:-18080}

cargo build --release -q -p latchkey -p latchkey-bench
bin=target/release/latchkey
load=target/release/latchkey-load

work=$(mktemp -d)
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

case "$backend" in
  sqlite) export LATCHKEY_DATABASE_URL="sqlite://$work/latchkey.db" ;;
  postgres)
    base=${LATCHKEY_TEST_POSTGRES_URL:-postgres://latchkey:latchkey@127.0.0.1:5432/latchkey}
    schema="bench_$(date +%s)"
    psql "$base" -qc "CREATE SCHEMA $schema"
    export LATCHKEY_DATABASE_URL="$base?options=-c%20search_path%3D$schema" ;;
  *) echo "usage: $0 sqlite|postgres" >&2; exit 2 ;;
esac
export LATCHKEY_LISTEN="127.0.0.1:$port"
export LATCHKEY_THROTTLE_ACCOUNT=1000000/1m
# The load generator is one address standing in for many clients.
export LATCHKEY_MAX_CONNECTIONS_PER_ADDRESS=4096
export LATCHKEY_LOG=warn

# The clients log in as many users, each within the default session cap
# (10), as a server's logins come from many accounts: with one user and an
# unbounded cap, every login would walk that user's thousands of sessions
# (BENCHMARKS.md, "What bounds logins"). Chains and API clients are load-0 …
# load-63, one session each; the login flood's clients are flood-0 … flood-15,
# so their logins never evict a chain's session.
users=$concurrency
for i in $(seq 0 $((users - 1))); do
  echo 'load test password' | "$bin" user add "load-$i" --password-stdin >/dev/null
done
for i in $(seq 0 15); do
  echo 'load test password' | "$bin" user add "flood-$i" --password-stdin >/dev/null
done
"$bin" serve &
server=$!
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.2
done

run() {
  "$load" --target "http://127.0.0.1:$port" --scenario "$1" --concurrency "$2" \
    --seconds "$seconds" --server-pids "$server" --username load --users "$users"
}

# The kernel's autogroups change how the server and PostgreSQL share the
# cores (BENCHMARKS.md, "What bounds refresh"), so the run says which applied.
autogroup=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo unknown)
echo "backend=$backend cores=$(nproc) date=$(date -u +%F) sched_autogroup_enabled=$autogroup"
if [ -n "${CURVE_CSV:-}" ]; then
  [ -s "$CURVE_CSV" ] || echo "backend,scenario,concurrency,rps,p50_ms,p99_ms,server_cpu_us,server_rss_kib" >"$CURVE_CSV"
  field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
  for clients in ${CURVE_CONCURRENCY:-1 4 16 64}; do
    for scenario in healthz me refresh; do
      line=$(run "$scenario" "$clients")
      echo "$line"
      echo "$backend,$scenario,$clients,$(echo " $line" | field rps),$(echo " $line" | field p50_ms),$(echo " $line" | field p99_ms),$(echo " $line" | field server_cpu_us_per_request),$(echo " $line" | field server_rss_kib)" >>"$CURVE_CSV"
    done
  done
  exit 0
fi
run me "$concurrency"
run refresh "$concurrency"
run login 8
echo "server_rss_kib=$(ps -o rss= -p "$server" | tr -d ' ')"
# A login flood (16 clients) beside refresh chains: SPEC §9 wants refresh p99
# to stay under 20 ms. The same refresh run alone first, for comparison.
chains=${FLOOD_REFRESH_CONCURRENCY:-16}
echo "refresh alone: $(run refresh "$chains")"
"$load" --target "http://127.0.0.1:$port" --scenario login --concurrency 16 \
  --seconds "$((seconds + 8))" --username flood --users 16 | sed 's/^/flood: /' &
flood=$!
sleep 2
echo "refresh during the flood: $(run refresh "$chains")"
wait "$flood"
echo "server_rss_kib_after_flood=$(ps -o rss= -p "$server" | tr -d ' ')"
