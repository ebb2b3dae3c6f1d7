#!/usr/bin/env bash
# Memory with a large database: seeds SESSIONS live sessions (default
# 1,000,000), starts a release `latchkey serve` on it, and reports its
# resident memory idle and after /api/me and refresh load, and the database
# size per session.
#
#   scripts/bench-memory.sh sqlite|postgres
set -euo pipefail
cd "$(dirname "$0")/.."

backend=${1:-sqlite}
sessions=${SESSIONS:-1000000}
port=${PORT:-18081}

cargo build --release -q -p latchkey -p latchkey-bench
bin=target/release/latchkey
load=target/release/latchkey-load
seed=target/release/latchkey-seed

work=$(mktemp -d)
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
case "$backend" in
  sqlite) export LATCHKEY_DATABASE_URL="sqlite://$work/latchkey.db" ;;
  postgres)
    base=${LATCHKEY_TEST_POSTGRES_URL:-postgres://latchkey:latchkey@127.0.0.1:5432/latchkey}
    schema="mem_$(date +%s)"
    psql "$base" -qc "CREATE SCHEMA $schema"
    export LATCHKEY_DATABASE_URL="$base?options=-c%20search_path%3D$schema" ;;
  *) echo "usage: $0 sqlite|postgres" >&2; exit 2 ;;
esac
export LATCHKEY_LISTEN="127.0.0.1:$port" LATCHKEY_MAX_SESSIONS_PER_USER=1000000 LATCHKEY_LOG=warn

echo 'seed password long' | "$bin" user add seed --password-stdin >/dev/null
echo 'load test password' | "$bin" user add load --password-stdin >/dev/null
"$seed" --database-url "$LATCHKEY_DATABASE_URL" --username seed --sessions "$sessions"

"$bin" serve &
server=$!
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.2
done
rss() { ps -o rss= -p "$server" | tr -d ' '; }
echo "backend=$backend sessions=$sessions date=$(date -u +%F)"
echo "rss_idle_kib=$(rss)"
"$load" --target "http://127.0.0.1:$port" --scenario me --concurrency 64 --seconds 8
echo "rss_after_me_kib=$(rss)"
"$load" --target "http://127.0.0.1:$port" --scenario refresh --concurrency 64 --seconds 8
echo "rss_after_refresh_kib=$(rss)"
case "$backend" in
  sqlite)
    bytes=$(du -cb "$work"/latchkey.db* | tail -n 1 | cut -f1) ;;
  postgres)
    bytes=$(psql "$LATCHKEY_DATABASE_URL" -tAc "SELECT pg_total_relation_size('sessions') + pg_total_relation_size('refresh_tokens')") ;;
esac
echo "database_bytes=$bytes bytes_per_session=$((bytes / sessions))"
