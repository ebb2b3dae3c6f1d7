#!/usr/bin/env bash
# The console's queries on a large database: seeds USERS users (default
# 1,000,000), three times as many sessions (a third live), as many audit
# events, and a full day of activity counts (every series, every minute);
# starts a release `latchkey serve` on it and times `GET /admin/overview`
# (counting, then within the count's 15 seconds) and `GET /admin/users?q=`
# for narrow and broad prefixes.
#
#   scripts/bench-console.sh sqlite|postgres
set -euo pipefail
cd "$(dirname "$0")/.."

backend=${1:-sqlite}
users=${USERS:-1000000}
port=${PORT:-18082}
cargo build --release -q -p latchkey
bin=target/release/latchkey

work=$(mktemp -d)
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
case "$backend" in
  sqlite) export LATCHKEY_DATABASE_URL="sqlite://$work/latchkey.db" ;;
  postgres)
    base=${LATCHKEY_TEST_POSTGRES_URL:-postgres://latchkey:latchkey@127.0.0.1:5432/latchkey}
    schema="console_$(date +%s)"
    psql "$base" -qc "CREATE SCHEMA $schema"
    trap 'kill "${server:-0}" 2>/dev/null || true; psql "$base" -qc "DROP SCHEMA $schema CASCADE" 2>/dev/null; rm -rf "$work"' EXIT
    export LATCHKEY_DATABASE_URL="$base?options=-c%20search_path%3D$schema" ;;
  *) echo "usage: $0 sqlite|postgres" >&2; exit 2 ;;
esac
export LATCHKEY_LISTEN="127.0.0.1:$port" LATCHKEY_ISSUER="http://127.0.0.1:$port" \
  LATCHKEY_COOKIE_SECURE=false LATCHKEY_CONSOLE_ACR=pwd
password='correct horse battery staple'
echo "$password" | "$bin" user add root --admin --password-stdin >/dev/null 2>&1

minute=$(( $(date +%s) / 60 ))
series="logins_succeeded logins_failed refreshes reuse_detected throttled sessions_started"
for r in logout logout_everywhere revoked revoked_by_admin reuse_detected idle_expired absolute_expired \
  password_changed password_reset user_disabled user_deleted session_cap ip_changed code_replayed not_me backchannel; do
  series="$series ended:$r"
done
started=$(date +%s)
case "$backend" in
  sqlite)
    python3 - "$work/latchkey.db" "$users" "$minute" "$series" <<'PY'
import sqlite3, sys
db, users, minute, series = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split()
c = sqlite3.connect(db)
c.executescript(f"""
BEGIN;
CREATE TEMP TABLE g(n INTEGER PRIMARY KEY);
WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM s WHERE n < {3 * users}) INSERT INTO g SELECT n FROM s;
INSERT INTO users (id, username, password_hash, disabled, created_at, email, email_key)
  SELECT 'usr_'||n, 'user'||n, 'x', 0, 1700000000, 'user'||n||'@example.com', 'user'||n||'@example.com' FROM g WHERE n <= {users};
INSERT INTO sessions (id, user_id, scope, created_at, expires_at, last_used_at, revoked_at, revoked_reason, ip, user_agent)
  SELECT 'ses_'||n, 'usr_'||(n % {users} + 1), 'profile', 1700000000,
    CASE WHEN n % 3 = 0 THEN 1700000000 ELSE 4000000000 END, 1700000000,
    CASE WHEN n % 2 = 0 THEN 1700000000 END, CASE WHEN n % 2 = 0 THEN 'logout' END, '10.0.0.1', 'bench' FROM g;
INSERT INTO audit_events (at, kind, user_id, ip, detail)
  SELECT 1700000000 + n, 'login', 'usr_'||(n % {users} + 1), '10.0.0.1', '' FROM g;
COMMIT;
""")
c.executemany("INSERT INTO activity (minute, series, n) VALUES (?, ?, ?)",
              [(m, s, m % 17 + 1) for m in range(minute - 2880, minute) for s in series])
c.commit()
c.execute("ANALYZE")
PY
    ;;
  postgres)
    arr=$(printf "'%s'," $series); arr="ARRAY[${arr%,}]"
    psql "$LATCHKEY_DATABASE_URL" -q <<SQL
INSERT INTO users (id, username, password_hash, disabled, created_at, email, email_key)
  SELECT 'usr_' || g, 'user' || g, 'x', false, 1700000000, 'user' || g || '@example.com', 'user' || g || '@example.com'
  FROM generate_series(1, $users) g;
INSERT INTO sessions (id, user_id, scope, created_at, expires_at, last_used_at, revoked_at, revoked_reason, ip, user_agent)
  SELECT 'ses_' || g, 'usr_' || (g % $users + 1), 'profile', 1700000000,
    CASE WHEN g % 3 = 0 THEN 1700000000 ELSE 4000000000 END, 1700000000,
    CASE WHEN g % 2 = 0 THEN 1700000000 END, CASE WHEN g % 2 = 0 THEN 'logout' END, '10.0.0.1', 'bench'
  FROM generate_series(1, 3 * $users) g;
INSERT INTO audit_events (at, kind, user_id, ip, detail)
  SELECT 1700000000 + g, 'login', 'usr_' || (g % $users + 1), '10.0.0.1', '' FROM generate_series(1, 3 * $users) g;
INSERT INTO activity (minute, series, n)
  SELECT m, s, m % 17 + 1 FROM generate_series($minute - 2880, $minute - 1) m, unnest($arr) s;
VACUUM ANALYZE users;
VACUUM ANALYZE sessions;
SQL
    ;;
esac
echo "seeded $users users, $((3 * users)) sessions, $((3 * users)) audit events in $(( $(date +%s) - started )) s"

"$bin" serve >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
token=$(curl -sf -X POST "http://127.0.0.1:$port/auth/login" --data-urlencode "username=root" \
  --data-urlencode "password=$password" --data-urlencode "scope=latchkey:admin" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
time_of() { curl -s -o /dev/null -w "%{time_total}" -H "Authorization: Bearer $token" "http://127.0.0.1:$port$1"; }
echo "overview, counting: $(time_of /admin/overview) s"
for i in 1 2 3; do echo "overview, counted: $(time_of /admin/overview) s"; done
for q in user4242 user1 u user9999%40; do
  for i in 1 2 3; do echo "search $q: $(time_of "/admin/users?q=$q&limit=25") s"; done
done
