#!/usr/bin/env bash
# Server CPU of a password reset request (`POST /auth/password/forgot`,
# SPEC §13) beside a password login: a release `latchkey serve` on a fresh
# SQLite file, USERS users with addresses (default 200), the throttles
# raised so that none refuses; REQUESTS requests (default 4,000) over one
# keep-alive connection, each for the next user's address, then a pause for
# the work each request leaves behind (the link, the outbox row, the mail
# sent to a real SMTP server on loopback, scripts/smtp-sink.py) before the
# server's CPU time is read again from /proc.
#
#   scripts/bench-reset.sh
set -euo pipefail
cd "$(dirname "$0")/.."

users=${USERS:-200}
requests=${REQUESTS:-4000}
port=${PORT:-18084}
cargo build --release -q -p latchkey
bin=target/release/latchkey
work=$(mktemp -d)
trap 'kill "${server:-0}" "${sink:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/mail"
scripts/smtp-sink.py 18025 "$work/mail" >"$work/sink.log" 2>&1 &
sink=$!
for _ in $(seq 1 50); do grep -q ready "$work/sink.log" && break; sleep 0.1; done
export LATCHKEY_DATABASE_URL="sqlite://$work/latchkey.db" LATCHKEY_LISTEN="127.0.0.1:$port" \
  LATCHKEY_ISSUER="http://127.0.0.1:$port" LATCHKEY_LOG=warn \
  LATCHKEY_THROTTLE_IP=1000000000/1m LATCHKEY_THROTTLE_RESET=1000000000/1m \
  LATCHKEY_THROTTLE_ACCOUNT=1000000000/1m LATCHKEY_SMTP_URL="smtp://127.0.0.1:18025"
for i in $(seq 1 "$users"); do
  echo 'reset bench password' | "$bin" user add "reset-$i" --email "reset-$i@example.com" --password-stdin >/dev/null 2>&1
done
# As if each had followed their verification link: resets go to verified addresses only.
python3 -c "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('UPDATE users SET email_verified = 1'); c.commit()" "$work/latchkey.db"
"$bin" serve >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
python3 - "$port" "$server" "$users" "$requests" "$work/mail" <<'PY'
import http.client, os, sys, time, urllib.parse
port, pid, users, requests = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
hz = os.sysconf("SC_CLK_TCK")
def cpu():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / hz
conn = http.client.HTTPConnection("127.0.0.1", port)
headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
# The verification mails of `user add` leave first; they are not measured.
deadline = time.time() + 30
while len(os.listdir(sys.argv[5])) < users and time.time() < deadline:
    time.sleep(0.1)
earlier = len(os.listdir(sys.argv[5]))
before, started = cpu(), time.time()
for n in range(requests):
    body = urllib.parse.urlencode({"email": f"reset-{n % users + 1}@example.com"})
    conn.request("POST", "/auth/password/forgot", body, headers)
    r = conn.getresponse(); r.read()
    if r.status >= 300:
        sys.exit(f"request {n}: {r.status}")
elapsed = time.time() - started
time.sleep(5)
used = cpu() - before
mails = len(os.listdir(sys.argv[5])) - earlier
print(f"reset_requests={requests} seconds={elapsed:.1f} mails_sent={mails} server_cpu_us_per_request={used / requests * 1e6:.0f}")
PY
