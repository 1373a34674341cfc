#!/usr/bin/env bash
# deploy/sentinel.sh: a Redis Sentinel setup on loopback, to try (and test) failover.
#
# Two redis-server nodes, one primary and one replica, watched by three sentinels (quorum 2)
# under the master name $LOOM_SENTINEL_MASTER. Everything binds 127.0.0.1. Loom's Sentinel
# failover test uses it; `env` prints the settings that point Loom at it.
#
# Usage:
#   deploy/sentinel.sh up        start what is not running and wait until the sentinels agree
#                                on a primary and its replica is in sync (a node that was
#                                stopped comes back as a replica of the current primary)
#   deploy/sentinel.sh down      stop the sentinels and the nodes
#   deploy/sentinel.sh status    pids, ports, the current primary; exit 1 unless all run
#   deploy/sentinel.sh primary   the port of the current primary (as the sentinels see it)
#   deploy/sentinel.sh env       LOOM_REDIS_SENTINELS, LOOM_REDIS_SENTINEL_MASTER, ...
#
# Environment (all optional):
#   LOOM_SENTINEL_NODE_PORTS     the two redis-server ports (first starts as primary) (16390,16391)
#   LOOM_SENTINEL_PORTS          the three sentinel ports                  (26390,26391,26392)
#   LOOM_SENTINEL_MASTER         the master name                           (loom)
#   LOOM_SENTINEL_DOWN_AFTER_MS  how long a silent primary takes to count as down   (1000)
#   LOOM_DATA_DIR                data dir (as deploy/infra.sh); this uses $LOOM_DATA_DIR/sentinel
#   LOOM_INFRA_TIMEOUT, LOOM_STOP_TIMEOUT   as for deploy/infra.sh
set -euo pipefail

# shellcheck source=deploy/infra.sh
source "$(dirname "${BASH_SOURCE[0]}")/infra.sh"

IFS=, read -r -a NODE_PORTS <<<"${LOOM_SENTINEL_NODE_PORTS:-16390,16391}"
IFS=, read -r -a SENTINEL_PORTS <<<"${LOOM_SENTINEL_PORTS:-26390,26391,26392}"
readonly NODE_PORTS SENTINEL_PORTS
readonly MASTER="${LOOM_SENTINEL_MASTER:-loom}"
readonly DOWN_AFTER_MS="${LOOM_SENTINEL_DOWN_AFTER_MS:-1000}"
readonly SENTINEL_DIR="$DATA_DIR/sentinel"

log() { printf 'sentinel: %s\n' "$*" >&2; }
die() { printf 'sentinel: error: %s\n' "$*" >&2; exit 1; }

node_pid() { pid_alive "$SENTINEL_DIR/redis-$1.pid" "127.0.0.1:$1"; }
sentinel_pid() { pid_alive "$SENTINEL_DIR/sentinel-$1.pid" "127.0.0.1:$1"; }
cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }

# current_primary: the primary's port as the first answering sentinel reports it (or nothing).
current_primary() {
  local port reply
  for port in "${SENTINEL_PORTS[@]}"; do
    reply="$(cli "$port" SENTINEL get-master-addr-by-name "$MASTER" 2>/dev/null | tail -n 1)" \
      || continue
    if [[ "$reply" =~ ^[0-9]+$ ]]; then
      printf '%s' "$reply"
      return 0
    fi
  done
  return 1
}

start_node() {
  local port="$1" primary="$2" replicaof=()
  if node_pid "$port" >/dev/null; then return 0; fi
  if [[ "$port" != "$primary" ]]; then replicaof=(--replicaof 127.0.0.1 "$primary"); fi
  mkdir -p "$SENTINEL_DIR/data-$port"
  log "starting redis node on 127.0.0.1:$port${replicaof:+ (replica of $primary)}"
  redis-server --bind 127.0.0.1 --port "$port" --protected-mode yes --daemonize yes \
    --pidfile "$SENTINEL_DIR/redis-$port.pid" --logfile "$SENTINEL_DIR/redis-$port.log" \
    --dir "$SENTINEL_DIR/data-$port" --appendonly no --save "" --repl-diskless-sync-delay 0 \
    "${replicaof[@]}" \
    </dev/null >&2 8>&- 9>&- || die "redis node $port failed to start"
}

start_sentinel() {
  local port="$1" primary="$2" conf="$SENTINEL_DIR/sentinel-$1.conf"
  if sentinel_pid "$port" >/dev/null; then return 0; fi
  # A sentinel rewrites its file (known replicas, epochs); write it once, keep it after.
  if [[ ! -f "$conf" ]]; then
    cat >"$conf" <<CONF
port $port
bind 127.0.0.1
dir $SENTINEL_DIR
sentinel monitor $MASTER 127.0.0.1 $primary 2
sentinel down-after-milliseconds $MASTER $DOWN_AFTER_MS
sentinel failover-timeout $MASTER 10000
sentinel parallel-syncs $MASTER 1
CONF
  fi
  log "starting sentinel on 127.0.0.1:$port"
  redis-server "$conf" --sentinel --daemonize yes --pidfile "$SENTINEL_DIR/sentinel-$port.pid" \
    --logfile "$SENTINEL_DIR/sentinel-$port.log" </dev/null >&2 8>&- 9>&- \
    || die "sentinel $port failed to start"
}

wait_until() {
  local what="$1" deadline
  shift
  deadline=$(($(date +%s) + START_TIMEOUT))
  until "$@"; do
    (($(date +%s) < deadline)) || die "$what not reached within ${START_TIMEOUT}s; see $SENTINEL_DIR"
    sleep 0.2
  done
}

# in_sync: every node answers, the reported primary is a primary, every other node is its
# replica with the link up.
in_sync() {
  local primary port
  primary="$(current_primary)" || return 1
  cli "$primary" ROLE 2>/dev/null | head -n 1 | grep -qx master || return 1
  for port in "${NODE_PORTS[@]}"; do
    [[ "$port" == "$primary" ]] && continue
    cli "$port" INFO replication 2>/dev/null | grep -q "^master_port:$primary" || return 1
    cli "$port" INFO replication 2>/dev/null | grep -q '^master_link_status:up' || return 1
  done
}

up_locked() {
  local started port primary
  started="$(now)"
  ensure_redis_installed
  mkdir -p "$SENTINEL_DIR"
  # The primary: what the sentinels say if any runs, else the first node (a fresh setup).
  primary="$(current_primary)" || primary="${NODE_PORTS[0]}"
  start_node "$primary" "$primary"
  for port in "${NODE_PORTS[@]}"; do
    [[ "$port" == "$primary" ]] || start_node "$port" "$primary"
  done
  for port in "${SENTINEL_PORTS[@]}"; do start_sentinel "$port" "$primary"; done
  wait_until "a primary with its replica in sync" in_sync
  log "sentinel setup up in $(elapsed_since "$started")s: primary 127.0.0.1:$(current_primary)," \
    "sentinels ${SENTINEL_PORTS[*]}, master name $MASTER"
}

down_locked() {
  local port pid
  for port in "${SENTINEL_PORTS[@]}"; do
    if pid="$(sentinel_pid "$port")"; then stop_pid "sentinel $port" "$pid"; fi
  done
  for port in "${NODE_PORTS[@]}"; do
    if pid="$(node_pid "$port")"; then stop_pid "redis node $port" "$pid"; fi
  done
}

sentinel_status() {
  local port pid ok=0
  for port in "${NODE_PORTS[@]}"; do
    if pid="$(node_pid "$port")"; then printf 'node     %s pid=%s\n' "$port" "$pid"
    else printf 'node     %s stopped\n' "$port"; ok=1; fi
  done
  for port in "${SENTINEL_PORTS[@]}"; do
    if pid="$(sentinel_pid "$port")"; then printf 'sentinel %s pid=%s\n' "$port" "$pid"
    else printf 'sentinel %s stopped\n' "$port"; ok=1; fi
  done
  printf 'primary  %s\n' "$(current_primary || echo unknown)"
  return "$ok"
}

sentinel_env() {
  local addresses
  addresses="$(printf '127.0.0.1:%s,' "${SENTINEL_PORTS[@]}")"
  cat <<ENV
export LOOM_REDIS_URL=redis://127.0.0.1:${NODE_PORTS[0]}/0
export LOOM_REDIS_SENTINELS=${addresses%,}
export LOOM_REDIS_SENTINEL_MASTER=$MASTER
export LOOM_REDIS_WAIT_REPLICAS=1
ENV
}

case "${1:-}" in
  up) with_lock 9 "$SENTINEL_DIR/.lock" up_locked ;;
  down) with_lock 9 "$SENTINEL_DIR/.lock" down_locked ;;
  status) sentinel_status ;;
  primary) current_primary && echo ;;
  env) sentinel_env ;;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
