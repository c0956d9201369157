#!/usr/bin/env bash
# PgBouncer in transaction pooling mode in front of the local PostgreSQL (127.0.0.1:5432, trust
# authentication), as a daemon of its own with its configuration, log and pid file in a state
# directory (not Debian's system service).  Idempotent: installs Debian's `pgbouncer` when it is
# missing, starts one when none of ours is running, and prints the database URL to use, e.g.
#
#   postgresql://postgres@127.0.0.1:6432/test?pool_mode=transaction
#
# Every database of the server is reachable through it (the `*` entry): the tests' per-test
# databases too.  Environment: ECARD_PGBOUNCER_PORT (6432), ECARD_PGBOUNCER_DIR
# (/tmp/ecard-pgbouncer), ECARD_PGBOUNCER_UPSTREAM_PORT (5432), ECARD_PGBOUNCER_DB (test: the
# database named in the printed URL).  Stop it with: kill "$(cat /tmp/ecard-pgbouncer/pgbouncer.pid)"
set -euo pipefail

port="${ECARD_PGBOUNCER_PORT:-6432}"
state="${ECARD_PGBOUNCER_DIR:-/tmp/ecard-pgbouncer}"
upstream_port="${ECARD_PGBOUNCER_UPSTREAM_PORT:-5432}"
database="${ECARD_PGBOUNCER_DB:-test}"
url="postgresql://postgres@127.0.0.1:${port}/${database}?pool_mode=transaction"

find_pgbouncer() {
  command -v pgbouncer 2>/dev/null || { [ -x /usr/sbin/pgbouncer ] && echo /usr/sbin/pgbouncer; } || true
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

binary="$(find_pgbouncer)"
if [ -z "$binary" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "pgbouncer is not installed: sudo apt-get install pgbouncer" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # the package's own service is not wanted here (this script runs its own daemon)
  apt_options=(-y -qq -o DPkg::Lock::Timeout=600)
  if ! apt-get install "${apt_options[@]}" pgbouncer >/dev/null 2>&1; then
    apt-get update -qq -o DPkg::Lock::Timeout=600 >/dev/null
    apt-get install "${apt_options[@]}" pgbouncer >/dev/null
  fi
  binary="$(find_pgbouncer)"
  [ -n "$binary" ] || { echo "pgbouncer: installed, but no binary found" >&2; exit 1; }
fi

pidfile="$state/pgbouncer.pid"
if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && port_open "$port"; then
  echo "$url"
  exit 0
fi
if port_open "$port"; then
  echo "port $port is taken by a process that is not this script's PgBouncer" \
    "(set ECARD_PGBOUNCER_PORT)" >&2
  exit 1
fi

# PgBouncer refuses to run as root: as root it runs as the `postgres` user
run_as=()
owner="$(id -un)"
if [ "$(id -u)" = 0 ]; then
  owner=postgres
  run_as=(-u postgres)
fi

mkdir -p "$state"
cat >"$state/userlist.txt" <<'EOF'
"postgres" ""
EOF
cat >"$state/pgbouncer.ini" <<EOF
; written by scripts/start_pgbouncer.sh
[databases]
* = host=127.0.0.1 port=${upstream_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = trust
auth_file = ${state}/userlist.txt
admin_users = postgres
pool_mode = transaction
max_client_conn = 2000
default_pool_size = 20
max_db_connections = 60
; per-test databases come and go: forget their pools soon
autodb_idle_timeout = 60
server_lifetime = 3600
logfile = ${state}/pgbouncer.log
pidfile = ${pidfile}
EOF
chown -R "$owner" "$state"
chmod 700 "$state"
rm -f "$pidfile"
"$binary" -d "${run_as[@]}" "$state/pgbouncer.ini" >/dev/null

for _ in $(seq 1 50); do
  if port_open "$port"; then
    echo "$url"
    exit 0
  fi
  sleep 0.1
done
echo "pgbouncer did not start listening on 127.0.0.1:$port; see $state/pgbouncer.log" >&2
tail -n 20 "$state/pgbouncer.log" >&2 || true
exit 1
