#!/usr/bin/env bash
# The soak run: a release server on a fresh SQLite file (or on PostgreSQL
# with SOAK_DATABASE_URL) under `latchkey-load --scenario mixed` (logins,
# API calls, refreshes, revocations and their checks) for SOAK_SECONDS
# (default 1800), printing the totals and the server's resident memory
# every minute. Figures go to BENCHMARKS.md ("Soak").
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${SOAK_SECONDS:-1800}
clients=${SOAK_CLIENTS:-32}
port=${SOAK_PORT:-18282}
cargo build --release -p latchkey -p latchkey-bench
work=$(mktemp -d)
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
export LATCHKEY_DATABASE_URL=${SOAK_DATABASE_URL:-sqlite://$work/latchkey.db}
export LATCHKEY_LISTEN=127.0.0.1:$port LATCHKEY_ISSUER=http://127.0.0.1:$port LATCHKEY_LOG=warn
for i in $(seq 0 $((clients - 1))); do
    echo 'load test password' | target/release/latchkey user add "soak-$i" --password-stdin >/dev/null
done
target/release/latchkey serve &
server=$!
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
target/release/latchkey-load --target "http://127.0.0.1:$port" --scenario mixed \
    --concurrency "$clients" --seconds "$seconds" --report-every 60 \
    --server-pids "$server" --username soak --users "$clients"
echo "database: $(du -sh "$work" | cut -f1) (SQLite) ; server still up: $(curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && echo yes || echo no)"
