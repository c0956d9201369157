#!/usr/bin/env bash
# A Redis Cluster on loopback ports for tests and local runs: three primaries, each with one
# replica (six `redis-server --cluster-enabled yes` daemons, no persistence), their configuration,
# logs and pid files in a state directory.  Idempotent: nodes already running are left alone, a
# cluster already formed is not formed again; it waits until `cluster info` says cluster_state:ok
# and prints the store URL to use, e.g.
#
#   redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002
#
#   scripts/start_redis_cluster.sh [STATE_DIR] [BASE_PORT]
#   export ECARD_TEST_REDIS_CLUSTER_URL="$(scripts/start_redis_cluster.sh)"
#
# STATE_DIR defaults to /tmp/ecard-redis-cluster, BASE_PORT to 7000 (nodes on BASE_PORT ..
# BASE_PORT+5).  Environment: ECARD_CLUSTER_REPLICAS (1; 0 starts three primaries only),
# ECARD_CLUSTER_NODE_TIMEOUT (milliseconds before a silent primary is failed over, 3000).
# Stop it with: scripts/start_redis_cluster.sh --stop [STATE_DIR]
set -euo pipefail

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  --stop)
    state="${2:-/tmp/ecard-redis-cluster}"
    for pidfile in "$state"/*/redis.pid; do
      [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    exit 0
    ;;
esac

state="${1:-/tmp/ecard-redis-cluster}"
base="${2:-7000}"
replicas="${ECARD_CLUSTER_REPLICAS:-1}"
node_timeout="${ECARD_CLUSTER_NODE_TIMEOUT:-3000}"
primaries=3
count=$((primaries * (1 + replicas)))
ports=()
for ((n = 0; n < count; n++)); do ports+=($((base + n))); done
url="redis+cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"

for binary in redis-server redis-cli; do
  command -v "$binary" >/dev/null || {
    echo "$binary is not installed: sudo apt-get install redis-server redis-tools" >&2
    exit 1
  }
done

cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
answers() { [ "$(cli "$1" ping 2>/dev/null)" = PONG ]; }
cluster_ok() { cli "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }

if cluster_ok "${ports[0]}" && [ "$(cli "${ports[0]}" cluster info | tr -d '\r' |
  sed -n 's/^cluster_known_nodes://p')" = "$count" ]; then
  echo "$url"
  exit 0
fi

mkdir -p "$state"
none_running=true
for port in "${ports[@]}"; do answers "$port" && none_running=false; done
for port in "${ports[@]}"; do
  node="$state/$port"
  if answers "$port"; then
    cli "$port" info server | grep -q '^redis_mode:cluster' || {
      echo "port $port is taken by a Redis that is not a cluster node (choose another BASE_PORT)" >&2
      exit 1
    }
    continue
  fi
  # with nothing running, configuration left by an earlier run describes a cluster that is gone
  if $none_running; then rm -rf "$node"; fi
  mkdir -p "$node"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$node" \
    --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout "$node_timeout" \
    --save "" --appendonly no --maxmemory-policy noeviction \
    --daemonize yes --pidfile "$node/redis.pid" --logfile "$node/redis.log"
done
for port in "${ports[@]}"; do
  for _ in $(seq 100); do answers "$port" && break; sleep 0.05; done
  answers "$port" || { echo "redis-server on port $port did not start: see $state/$port/redis.log" >&2; exit 1; }
done

known="$(cli "${ports[0]}" cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')"
if [ "$known" = 1 ]; then
  nodes=()
  for port in "${ports[@]}"; do nodes+=("127.0.0.1:$port"); done
  echo "forming the cluster: ${nodes[*]}" >&2
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas "$replicas" --cluster-yes >&2
fi

for _ in $(seq 300); do
  if cluster_ok "${ports[0]}"; then
    # every node agrees, and each replica has synchronised with its primary
    settled=true
    for port in "${ports[@]}"; do
      cluster_ok "$port" || settled=false
      if cli "$port" role 2>/dev/null | head -1 | grep -q slave; then
        cli "$port" info replication | grep -q '^master_link_status:up' || settled=false
      fi
    done
    if $settled; then
      echo "$url"
      exit 0
    fi
  fi
  sleep 0.1
done
echo "the cluster on ports ${ports[*]} did not reach cluster_state:ok in 30 s (logs in $state)" >&2
exit 1
