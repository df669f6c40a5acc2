#!/usr/bin/env bash
# The README's test command: installs and starts what the tests need, then runs ruff and pytest
# against PostgreSQL (it makes its own test database), the simulator, slapd and Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --system

# PostgreSQL and Redis: this machine kind starts them; start them if they are down.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi
if ! (command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1); then
  command -v redis-server >/dev/null && redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
fi

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/kimportal}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/15}"
export SECRET_KEY="${SECRET_KEY:-test-only-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')}"
export KIMPORTAL_CREDENTIALS_KEYS="${KIMPORTAL_CREDENTIALS_KEYS:-$(.venv/bin/python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')}"
export KIMPORTAL_DATA_DIR="${KIMPORTAL_DATA_DIR:-$(mktemp -d /tmp/kimportal-test.XXXXXX)}"

.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Types (pyproject.toml [tool.mypy]); the Django plugin loads the settings, hence after the exports above.
.venv/bin/mypy
# The check needs a reachable database (not the test one): create it once.
dbname="${DATABASE_URL##*/}"
psql "${DATABASE_URL%/*}/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname='${dbname}'" | grep -q 1 \
  || psql "${DATABASE_URL%/*}/postgres" -qc "CREATE DATABASE \"${dbname}\""
.venv/bin/python manage.py makemigrations --check --dry-run >/dev/null
.venv/bin/python -m pytest "$@"
