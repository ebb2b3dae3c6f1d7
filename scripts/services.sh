#!/usr/bin/env bash
# Installs (from Debian's packages) and starts on loopback what the test suite
# needs: PostgreSQL and Redis, Debian's Chromium with its WebDriver for the
# browser tests (never a browser download of its own), and Debian's aiosmtpd,
# the SMTP server the mail tests start on loopback (scripts/smtp-sink.py),
# promtool for the Prometheus alert rules, and curl and jq for the book's
# examples. Idempotent: what is installed is not installed
# again, what runs is not started again. Used by .ci/run and by hand.
#
#   scripts/services.sh          install if missing, then start
#   scripts/services.sh --print  also print the URLs the tests use
set -euo pipefail

PG_USER=latchkey
PG_PASSWORD=latchkey
PG_DB=latchkey
PG_PORT=${PG_PORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}

log() { printf 'services: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=false
install_missing() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! $apt_updated; then
    log "apt-get update"
    as_root apt-get update -qq
    apt_updated=true
  fi
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

start_postgres() {
  install_missing postgresql
  local version cluster
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  cluster=main
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | grep -q "^$version $cluster$"; then
    log "creating PostgreSQL $version cluster"
    as_root pg_createcluster "$version" "$cluster" -p "$PG_PORT" >/dev/null
  fi
  if ! pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1==v && $2==c {print $4}' | grep -q online; then
    log "starting PostgreSQL $version on 127.0.0.1:$PG_PORT"
    as_root pg_ctlcluster "$version" "$cluster" start -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c max_connections=300"
  fi
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 1
  done
  # A role that may create databases, so tests can make one per test.
  as_root su postgres -c "psql -q -p $PG_PORT -tAc \"SELECT 1 FROM pg_roles WHERE rolname='$PG_USER'\"" | grep -q 1 ||
    as_root su postgres -c "psql -q -p $PG_PORT -c \"CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'\""
  as_root su postgres -c "psql -q -p $PG_PORT -tAc \"SELECT 1 FROM pg_database WHERE datname='$PG_DB'\"" | grep -q 1 ||
    as_root su postgres -c "psql -q -p $PG_PORT -c \"CREATE DATABASE $PG_DB OWNER $PG_USER\""
}

start_redis() {
  install_missing redis-server
  if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    log "starting Redis on 127.0.0.1:$REDIS_PORT"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --save '' --appendonly no >/dev/null
    for _ in $(seq 1 30); do
      redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
      sleep 0.5
    done
  fi
}

install_browser() {
  install_missing chromium chromium-driver
}

# promtool (Debian's prometheus package) checks the alert rules in
# contrib/prometheus (tests/monitoring.rs); the daemon itself is not started.
install_monitoring() {
  install_missing prometheus
}

# The mail tests start their own SMTP server (each its own port and
# mailbox, stopped and restarted for the outage test): Debian's aiosmtpd,
# for Debian's python3.
install_mail() {
  install_missing python3-aiosmtpd
}

# The book's getting-started examples run as a reader runs them
# (crates/latchkey/tests/book.rs): with curl and jq.
install_shell_tools() {
  install_missing curl jq
}

start_postgres
start_redis
install_shell_tools
install_browser
install_mail
install_monitoring
log "PostgreSQL and Redis are up; $(chromium --version 2>/dev/null || echo 'chromium missing'); aiosmtpd $(/usr/bin/python3 -c 'import aiosmtpd; print(aiosmtpd.__version__)' 2>/dev/null || echo missing)"

if [ "${1:-}" = "--print" ]; then
  echo "LATCHKEY_TEST_POSTGRES_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
  echo "LATCHKEY_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
fi
