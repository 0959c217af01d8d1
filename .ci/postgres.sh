#!/usr/bin/env bash
# Start the machine's PostgreSQL 15 and make a login role for the tests. Prints the URL to use.
# Idempotent. Needs root (or the postgres user) on a Debian machine with postgresql-15 installed.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
pg_ctlcluster 15 main start 2>/dev/null || true
for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 && break; sleep 0.2; done
pg_isready -h 127.0.0.1 >/dev/null
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='cumulo'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE ROLE cumulo LOGIN SUPERUSER PASSWORD 'cumulo'\""
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='cumulo'\"" | grep -q 1 \
  || su postgres -c "createdb -O cumulo cumulo"
echo "postgresql+psycopg://cumulo:cumulo@127.0.0.1:5432/cumulo"
