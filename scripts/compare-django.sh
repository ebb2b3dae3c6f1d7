#!/usr/bin/env bash
# Side-by-side: Latchkey against the stack many teams would pick instead,
# Django REST framework with djangorestframework-simplejwt (refresh rotation
# and blacklist on), served by gunicorn, on the same machine in the same run,
# driven by the same load generator (`latchkey-load --api simplejwt`).
#
#   scripts/compare-django.sh
#
# Both servers use a fresh SQLite file in WAL mode. The Django stack is
# installed from PyPI into a virtualenv under target/compare-django (pinned
# versions below); nothing of it is kept in the repository but this script.
# CONCURRENCY (default 64) and SECONDS_PER_RUN (default 8) tune the runs.
set -euo pipefail
cd "$(dirname "$0")/.."

concurrency=${CONCURRENCY:-64}
seconds=${SECONDS_PER_RUN:-8}
django_port=18090
latchkey_port=18091
root=$PWD
venv=$root/target/compare-django/venv

cargo build --release -q -p latchkey -p latchkey-bench
bin=$root/target/release/latchkey
load=$root/target/release/latchkey-load

if [ ! -x "$venv/bin/gunicorn" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q \
    'Django==5.2.8' 'djangorestframework==3.16.1' 'djangorestframework-simplejwt==5.5.1' 'gunicorn==23.0.0'
fi

work=$(mktemp -d)
trap 'kill "${django:-0}" "${latchkey:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

# The Django project: the documented simplejwt set-up, rotation and blacklist
# on, plus one `/api/me/` view behind IsAuthenticated.
mkdir -p "$work/site"
cat >"$work/site/settings.py" <<EOF
SECRET_KEY = "compare-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "urls"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": "$work/django.db",
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}
from datetime import timedelta
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=10),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=14),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
}
EOF
cat >"$work/site/urls.py" <<'EOF'
from django.urls import path
from rest_framework.decorators import api_view
from rest_framework.response import Response
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView


@api_view(["GET"])
def me(request):
    return Response({"id": request.user.id, "username": request.user.username})


urlpatterns = [
    path("api/token/", TokenObtainPairView.as_view()),
    path("api/token/refresh/", TokenRefreshView.as_view()),
    path("api/me/", me),
]
EOF
cat >"$work/site/wsgi_app.py" <<'EOF'
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
from django.core.wsgi import get_wsgi_application
application = get_wsgi_application()
EOF
cat >"$work/site/manage.py" <<'EOF'
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
EOF
(
  cd "$work/site"
  "$venv/bin/python" manage.py migrate -v 0
  "$venv/bin/python" manage.py shell -c \
    "from django.contrib.auth.models import User; User.objects.create_user('load', password='load test password')"
)

# run NAME PID LOAD-ARGS...: one scenario; the server's CPU (the process and
# its children: gunicorn's workers) is counted over the measured window.
run() {
  local name=$1 pids
  pids=$(echo "$2" $(pgrep -P "$2") | tr ' ' ',')
  shift 2
  echo "$name $("$load" "$@" --concurrency "$concurrency" --seconds "$seconds" --server-pids "$pids")"
}

echo "cores=$(nproc) date=$(date -u +%F) concurrency=$concurrency seconds=$seconds"

# Django: gunicorn's default sync workers, the documented 2 x cores + 1.
(cd "$work/site" && exec "$venv/bin/gunicorn" --workers $((2 * $(nproc) + 1)) \
  --bind "127.0.0.1:$django_port" --log-level warning wsgi_app:application) &
django=$!
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://127.0.0.1:$django_port/api/me/" && break
  sleep 0.2
done
run django "$django" --target "http://127.0.0.1:$django_port" --api simplejwt --scenario refresh
run django "$django" --target "http://127.0.0.1:$django_port" --api simplejwt --scenario me
kill "$django"; wait "$django" 2>/dev/null || true

# Latchkey: the release binary on its SQLite default.
export LATCHKEY_DATABASE_URL="sqlite://$work/latchkey.db"
export LATCHKEY_LISTEN="127.0.0.1:$latchkey_port"
export LATCHKEY_MAX_SESSIONS_PER_USER=1000000
export LATCHKEY_THROTTLE_ACCOUNT=1000000/1m
# The load generator is one address standing in for many clients.
export LATCHKEY_MAX_CONNECTIONS_PER_ADDRESS=4096
export LATCHKEY_LOG=warn
echo 'load test password' | "$bin" user add load --password-stdin >/dev/null
"$bin" serve &
latchkey=$!
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$latchkey_port/healthz" >/dev/null && break
  sleep 0.2
done
run latchkey "$latchkey" --target "http://127.0.0.1:$latchkey_port" --scenario refresh
run latchkey "$latchkey" --target "http://127.0.0.1:$latchkey_port" --scenario me
