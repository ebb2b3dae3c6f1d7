#!/usr/bin/env bash
# Refresh as the database grows (SPEC §9 "growth" and "memory"): for each
# size in SIZES (default 10,000, 1,000,000 and 10,000,000 sessions; SIZES= for none, each
# with its audit event and an outbox event per ten: `latchkey-seed
# --history`), a fresh database, a release `latchkey serve`, refreshes at 16
# and 64 clients (SECONDS_PER_RUN each), the server's resident memory and
# the operator's console overview (counting, then within its 15-second
# cache). With GC=1 it then measures garbage collection under load: a
# million sessions past their end beside the clients' own, collected by the
# server's first collection while 16 clients refresh.
#
#   GROWTH_CSV=bench/growth.csv scripts/bench-growth.sh sqlite|postgres
#
# Rows appended to GROWTH_CSV:
# backend,sessions,scenario,concurrency,rps,p50_ms,p99_ms,server_cpu_us,server_rss_kib,extra
set -euo pipefail
cd "$(dirname "$0")/.."

backend=${1:-sqlite}
sizes=${SIZES-10000 1000000 10000000}
seconds=${SECONDS_PER_RUN:-10}
warmup=${WARMUP_SECONDS:-$seconds}
csv=${GROWTH_CSV:-bench/growth.csv}
port=${PORT:-18083}
clients=64

cargo build --release -q -p latchkey -p latchkey-bench
bin=target/release/latchkey
load=target/release/latchkey-load
seed=target/release/latchkey-seed
[ -s "$csv" ] || echo "backend,sessions,scenario,concurrency,rps,p50_ms,p99_ms,server_cpu_us,server_rss_kib,extra" >"$csv"

base=${LATCHKEY_TEST_POSTGRES_URL:-postgres://latchkey:latchkey@127.0.0.1:5432/latchkey}
work=$(mktemp -d)
schema=""
server=0
cleanup() {
  if [ "$server" != 0 ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=0
  fi
  [ -n "$schema" ] && psql "$base" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" 2>/dev/null
  rm -rf "$work"/*
}
trap 'cleanup; rm -rf "$work"' EXIT

export LATCHKEY_LISTEN="127.0.0.1:$port" LATCHKEY_ISSUER="http://127.0.0.1:$port" \
  LATCHKEY_THROTTLE_ACCOUNT=1000000/1m LATCHKEY_MAX_CONNECTIONS_PER_ADDRESS=4096 \
  LATCHKEY_MAX_SESSIONS_PER_USER=100000000 LATCHKEY_CONSOLE_ACR=pwd \
  LATCHKEY_LOG="warn,latchkey_app::maintenance=info"

fresh() {
  cleanup
  schema=""
  case "$backend" in
    sqlite) export LATCHKEY_DATABASE_URL="sqlite://$work/latchkey.db" ;;
    postgres)
      schema="growth_$(date +%s%N)"
      psql "$base" -qc "CREATE SCHEMA $schema"
      export LATCHKEY_DATABASE_URL="$base?options=-c%20search_path%3D$schema" ;;
    *) echo "usage: $0 sqlite|postgres" >&2; exit 2 ;;
  esac
  for i in $(seq 0 $((clients - 1))); do
    echo 'load test password' | "$bin" user add "load-$i" --password-stdin >/dev/null
  done
  echo 'seed password long' | "$bin" user add seed --password-stdin >/dev/null
  echo 'correct horse battery staple' | "$bin" user add root --admin --password-stdin >/dev/null
}

analyze() {
  case "$backend" in
    sqlite) ;; # the server never runs ANALYZE: plans without statistics, as deployed
    postgres) # this schema's tables only
      psql "$base" -tAc "SELECT format('VACUUM ANALYZE %I.%I;', schemaname, tablename) FROM pg_tables WHERE schemaname = '$schema'" |
        psql "$base" -q ;;
  esac
}

start() {
  "$bin" serve >"$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && return
    sleep 0.1
  done
  echo "the server did not start" >&2; cat "$work/server.log" >&2; exit 1
}

# Seeding ten million sessions writes gigabytes through the OS's page cache
# (the WAL, then the file), which evicts part of the file it wrote; a server
# that has been running has its file cached, as far as memory allows, so
# the file is read once before measuring. COLD=1 measures without.
warm() {
  [ "${COLD:-0}" = 1 ] && return
  case "$backend" in
    sqlite) cat "$work"/latchkey.db >/dev/null ;;
    postgres) ;; # its shared buffers and the OS cache fill as it runs; flat either way
  esac
}

stop() { kill "$server"; wait "$server" 2>/dev/null || true; server=0; }
rss() { ps -o rss= -p "$server" | tr -d ' '; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
row() { # sessions scenario line extra
  local l=" $3"
  echo "$backend,$1,$2,$(echo "$l" | field concurrency),$(echo "$l" | field rps),$(echo "$l" | field p50_ms),$(echo "$l" | field p99_ms),$(echo "$l" | field server_cpu_us_per_request),$(echo "$l" | field server_rss_kib),$4" >>"$csv"
}
refresh() {
  "$load" --target "http://127.0.0.1:$port" --scenario refresh --concurrency "$1" \
    --seconds "$2" --server-pids "$server" --username load --users "$clients"
}
db_bytes() {
  case "$backend" in
    sqlite) du -cb "$work"/latchkey.db* | tail -n 1 | cut -f1 ;;
    postgres) psql "$LATCHKEY_DATABASE_URL" -tAc "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '$schema' AND c.relkind = 'r'" ;;
  esac
}

echo "backend=$backend cores=$(nproc) date=$(date -u +%F) cpu=$(lscpu | sed -n 's/^Model name: *//p')"
for size in $sizes; do
  fresh
  t0=$(date +%s)
  "$seed" --database-url "$LATCHKEY_DATABASE_URL" --username seed --sessions "$size" --history
  analyze
  # The seed's gigabytes reach the disk before anything is measured.
  sync
  warm
  echo "sessions=$size seeded_s=$(( $(date +%s) - t0 )) database_bytes=$(db_bytes)"
  start
  idle=$(rss)
  # One unrecorded run first: what is measured is a server that has been
  # running (its caches filled, its statements prepared).
  [ "$warmup" = 0 ] || refresh 16 "$warmup" >/dev/null
  for c in 16 64; do
    line=$(refresh "$c" "$seconds")
    echo "sessions=$size $line"
    row "$size" refresh "$line" "rss_idle_kib=$idle"
  done
  token=$(curl -sf -X POST "http://127.0.0.1:$port/auth/login" --data-urlencode "username=root" \
    --data-urlencode "password=correct horse battery staple" --data-urlencode "scope=latchkey:admin" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
  ms() { curl -s -o /dev/null -w "%{time_total}" -H "Authorization: Bearer $token" "http://127.0.0.1:$port/admin/overview" | awk '{printf "%.1f", $1 * 1000}'; }
  counting=$(ms); cached=$(ms)
  echo "sessions=$size overview_counting_ms=$counting overview_cached_ms=$cached"
  echo "$backend,$size,overview,1,,$counting,$cached,,$(rss),counting_ms=$counting cached_ms=$cached" >>"$csv"
  stop
done

if [ "${GC:-0}" = 1 ]; then
  expired=${EXPIRED:-1000000}
  # Once alone, to time the collection; then again under load for as long.
  for pass in alone loaded; do
    fresh
    "$seed" --database-url "$LATCHKEY_DATABASE_URL" --username seed --sessions 10000 --history
    "$seed" --database-url "$LATCHKEY_DATABASE_URL" --username seed --sessions "$expired" --first 100000 --expired --history
    analyze
    sync
    warm
    began=$(date +%s.%N)
    start
    if [ "$pass" = alone ]; then
      until grep -q "sessions collected" "$work/server.log"; do sleep 0.2; done
      alone=$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$began" "$(date +%s.%N)")
      echo "gc of $expired expired sessions, alone: ${alone} s"
    else
      window=$(python3 -c "import sys; print(max(2, int(float(sys.argv[1]))))" "$alone")
      line=$(refresh 16 "$window")
      until grep -q "sessions collected" "$work/server.log"; do sleep 0.2; done
      took=$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$began" "$(date +%s.%N)")
      echo "gc of $expired expired sessions under load: about ${took} s; refresh during it: $line"
      row "$expired" refresh_during_gc "$line" "gc_alone_s=$alone gc_loaded_s<=$took"
    fi
    grep "sessions collected" "$work/server.log" | tail -n 1
    stop
  done
fi
