#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432, user postgres, trust) and Redis (127.0.0.1:6379) answer.
# Starts them if they are installed but stopped; installs them from Debian's packages on CI
# (or with OFFERHUB_INSTALL_SERVICES=1); exits non-zero if either cannot be had.
set -uo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 -U postgres 2>/dev/null; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3 | grep -q PONG) 2>/dev/null; }

wait_for() {  # name, check function
  for _ in $(seq 1 30); do "$2" && return 0; sleep 1; done
  echo "services: $1 did not come up" >&2
  return 1
}

may_install() { [ "${CI:-}" = "true" ] || [ "${OFFERHUB_INSTALL_SERVICES:-}" = "1" ]; }

apt_install() {
  command -v apt-get >/dev/null || return 1
  [ "$(id -u)" = "0" ] || return 1
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

start_postgres() {
  if ! command -v pg_ctlcluster >/dev/null && may_install; then
    apt_install postgresql || return 1
  fi
  command -v pg_ctlcluster >/dev/null || return 1
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  local conf="/etc/postgresql/$version/main"
  # Trust auth for local TCP connections, as the test settings expect (a throwaway CI cluster).
  if [ -w "$conf/pg_hba.conf" ] && ! grep -q '^host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$conf/pg_hba.conf"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null ||
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
}

start_redis() {
  if ! command -v redis-server >/dev/null && may_install; then
    apt_install redis-server || return 1
  fi
  command -v redis-server >/dev/null || return 1
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
}

status=0
if ! pg_up; then
  echo "services: starting PostgreSQL"
  start_postgres
  wait_for PostgreSQL pg_up || status=1
fi
if ! redis_up; then
  echo "services: starting Redis"
  start_redis
  wait_for Redis redis_up || status=1
fi
if [ "$status" -ne 0 ]; then
  echo "services: PostgreSQL and Redis are required for the test suite" >&2
  exit 1
fi
echo "services: PostgreSQL and Redis are up"
