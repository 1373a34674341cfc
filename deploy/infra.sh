#!/usr/bin/env bash
# deploy/infra.sh: Loom's local infrastructure without Docker.
#
# A single-node Apache Kafka 3.9.1 (KRaft, broker + controller in one JVM) and a Redis server,
# both bound to 127.0.0.1 only. Kafka's jars come from Maven Central (deploy/kafka/pom.xml);
# redis-server comes from the Debian package (installed with apt-get when missing).
#
# Usage:
#   deploy/infra.sh up                      start both (idempotent) and wait until they answer
#   deploy/infra.sh down                    stop both: SIGTERM, then SIGKILL after a timeout
#   deploy/infra.sh status [--json]         running/stopped, pids, ports; exit 1 unless both up
#   deploy/infra.sh env                     the LOOM_* variables that connect Loom to them
#                                           (eval "$(deploy/infra.sh env)")
#   deploy/infra.sh certs                   secured mode's certificates and passwords only
#                                           (docker-compose's secured example mounts them)
#   deploy/infra.sh classpath               print the Kafka classpath (fetches jars if missing)
#   deploy/infra.sh kafka-tool CLASS ARGS   run a Java main class from that classpath, e.g.
#       deploy/infra.sh kafka-tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
#           --bootstrap-server 127.0.0.1:19092 --describe --group loom-profiles
#
# Environment (all optional):
#   LOOM_KAFKA_PORT             Kafka PLAINTEXT listener on 127.0.0.1           (19092)
#   LOOM_KAFKA_CONTROLLER_PORT  KRaft CONTROLLER listener on 127.0.0.1          (19093)
#   LOOM_REDIS_PORT             redis-server port on 127.0.0.1                  (16379)
#   LOOM_CACHE_DIR              where the Kafka jars are cached                 (<repo>/.cache)
#   LOOM_DATA_DIR               pid files, logs, Kafka log dirs, Redis data     ($LOOM_CACHE_DIR/run)
#   LOOM_KAFKA_HEAP             broker JVM heap flags                           (-Xms256m -Xmx512m)
#   LOOM_KAFKA_LIBS             use this directory of Kafka jars instead of fetching with Maven
#   LOOM_REDIS_APPENDONLY       yes = AOF persistence (fsync every second), no = none  (no)
#   LOOM_INFRA_TIMEOUT          seconds to wait for the servers to answer       (120)
#   LOOM_STOP_TIMEOUT           seconds between SIGTERM and SIGKILL on `down`   (30)
#   LOOM_PYTHON                 Python with confluent_kafka for the readiness probe
#                               (<repo>/.venv/bin/python; without it a Java probe is used)
#   LOOM_INFRA_SECURED          yes = the secured pair described below          (no)
#   LOOM_KAFKA_SASL_SSL_PORT    secured: Kafka SASL_SSL listener                (19094)
#   LOOM_KAFKA_SSL_PORT         secured: Kafka SSL listener, client certificate required (19095)
#
# Secured mode (LOOM_INFRA_SECURED=yes; for the secured test tier, and to try a production-like
# setup): certificates are generated with openssl on first `up` (or `certs`) into
# $LOOM_DATA_DIR/tls (a CA, a server certificate for 127.0.0.1, localhost, kafka and redis, a
# client certificate for mTLS) with random passwords beside them (files *-password, mode 600)
# and the Redis ACL file of the user `loom` (redis-users.acl, hashed password). Kafka gets a SASL_SSL listener (PLAIN,
# SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER with Kafka's unsecured-JWT validator, for
# tests only) with the user `loom` (SCRAM credentials added when the storage is formatted)
# and an SSL listener that requires a client certificate; its PLAINTEXT listener on
# LOOM_KAFKA_PORT stays for the broker's own traffic and the readiness probe. Redis listens
# with TLS only (on LOOM_REDIS_PORT, client certificates optional), its default user needs
# the admin password, and the ACL user `loom` may touch `loom:*` keys with the commands Loom
# needs (streams/redis_clients.py: acl_rules; needs LOOM_PYTHON). `env` prints the settings.
#
# Layout of $LOOM_DATA_DIR:
#   kafka/server.properties  kafka/kafka.pid  kafka/logs/server.log (broker log)
#   kafka/logs/stdout.log (JVM stdout/stderr)  kafka/data/ (KRaft metadata + partitions)
#   redis/redis.pid  redis/redis.log  redis/data/  (secured: redis/redis.conf)
#   tls/ (secured: ca.pem, server.pem/.key, server-keystore.pem, client.pem/.key, *-password,
#         redis-users.acl)
set -euo pipefail

readonly KAFKA_VERSION=3.9.1
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly KAFKA_PORT="${LOOM_KAFKA_PORT:-19092}"
readonly CONTROLLER_PORT="${LOOM_KAFKA_CONTROLLER_PORT:-19093}"
readonly REDIS_PORT="${LOOM_REDIS_PORT:-16379}"
CACHE_DIR="$(realpath -m "${LOOM_CACHE_DIR:-$REPO_ROOT/.cache}")"
readonly CACHE_DIR
DATA_DIR="$(realpath -m "${LOOM_DATA_DIR:-$CACHE_DIR/run}")"
readonly DATA_DIR
readonly KAFKA_HEAP="${LOOM_KAFKA_HEAP:--Xms256m -Xmx512m}"
readonly REDIS_APPENDONLY="${LOOM_REDIS_APPENDONLY:-no}"
readonly START_TIMEOUT="${LOOM_INFRA_TIMEOUT:-120}"
readonly STOP_TIMEOUT="${LOOM_STOP_TIMEOUT:-30}"
readonly PYTHON="${LOOM_PYTHON:-$REPO_ROOT/.venv/bin/python}"
readonly SECURED="${LOOM_INFRA_SECURED:-no}"
readonly SASL_SSL_PORT="${LOOM_KAFKA_SASL_SSL_PORT:-19094}"
readonly SSL_PORT="${LOOM_KAFKA_SSL_PORT:-19095}"
readonly TLS_DIR="$DATA_DIR/tls"
readonly KAFKA_USER=loom
readonly REDIS_USER=loom

readonly LIBS_DIR="${LOOM_KAFKA_LIBS:-$CACHE_DIR/kafka-$KAFKA_VERSION/libs}"
readonly LIBS_MARKER="$LIBS_DIR/.complete"
readonly KAFKA_DIR="$DATA_DIR/kafka"
readonly KAFKA_CONFIG="$KAFKA_DIR/server.properties"
readonly KAFKA_PID_FILE="$KAFKA_DIR/kafka.pid"
readonly KAFKA_LOG="$KAFKA_DIR/logs/server.log"
readonly KAFKA_STDOUT="$KAFKA_DIR/logs/stdout.log"
readonly REDIS_DIR="$DATA_DIR/redis"
readonly REDIS_PID_FILE="$REDIS_DIR/redis.pid"
readonly REDIS_LOG="$REDIS_DIR/redis.log"
readonly REDIS_CONF="$REDIS_DIR/redis.conf"
KAFKA_LAUNCHED=""  # set by start_kafka / start_redis when they launch a server, for the
REDIS_LAUNCHED=""  # start-time report

# --- small helpers ------------------------------------------------------------------------

log() { printf 'infra: %s\n' "$*" >&2; }
die() { printf 'infra: error: %s\n' "$*" >&2; exit 1; }

now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
elapsed_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive PIDFILE PATTERN: prints the pid when the pid file names a live process whose
# command line contains PATTERN (guards against stale files and recycled pids).
pid_alive() {
  local pid_file="$1" pattern="$2" pid
  [[ -s "$pid_file" ]] || return 1
  pid="$(tr -dc '0-9' <"$pid_file")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern" || return 1
  printf '%s' "$pid"
}

kafka_pid() { pid_alive "$KAFKA_PID_FILE" "$KAFKA_CONFIG"; }
redis_pid() { pid_alive "$REDIS_PID_FILE" "127.0.0.1:$REDIS_PORT"; }

# stop_pid NAME PID: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL.
stop_pid() {
  local name="$1" pid="$2" waited=0
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited >= STOP_TIMEOUT * 10)); then
      log "$name did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  log "$name stopped after $(awk -v w="$waited" 'BEGIN { printf "%.1f", w / 10 }')s"
}

# with_lock FD FILE CMD...: run CMD while holding an exclusive lock on FILE (through file
# descriptor FD), so that two concurrent `up`s, or an `up` and a `down`, never race on the same
# pid files, and two fetches never race on the jar cache. Servers are started with fds 8 and 9
# closed so that they do not inherit (and keep holding) the locks.
with_lock() {
  local fd="$1" lock_file="$2"
  shift 2
  mkdir -p "$(dirname "$lock_file")"
  eval "exec $fd>\"\$lock_file\""
  flock "$fd"
  "$@"
  eval "exec $fd>&-"
}

# --- Kafka jars ---------------------------------------------------------------------------

fetch_jars_locked() {
  [[ -f "$LIBS_MARKER" ]] && return 0
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the Kafka jars"
  command -v java >/dev/null || die "Java 17 is needed to run Kafka"
  local tmp="$LIBS_DIR.tmp.$$" started
  started="$(now)"
  log "fetching Kafka $KAFKA_VERSION jars with Maven into $LIBS_DIR (once)"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # Maven's output goes to stderr (stdout of `classpath` must stay clean), minus colour codes.
  if ! mvn -q -B -ntp -Dstyle.color=never -f "$REPO_ROOT/deploy/kafka/pom.xml" \
      dependency:copy-dependencies -DoutputDirectory="$tmp" -DincludeScope=runtime 2>&1 \
      | sed -e 's/\x1b\[[0-9;]*m//g' -e '/^[[:space:]]*$/d' >&2; then
    rm -rf "$tmp"
    die "mvn failed to fetch the Kafka jars (see the output above)"
  fi
  ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null || die "kafka_2.13 jar missing in $tmp"
  rm -rf "$LIBS_DIR"
  mv "$tmp" "$LIBS_DIR"
  date -u +%FT%TZ >"$LIBS_MARKER"
  log "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars in $(elapsed_since "$started")s"
}

ensure_jars() {
  if [[ -n "${LOOM_KAFKA_LIBS:-}" ]]; then
    compgen -G "$LIBS_DIR/kafka_2.13-*.jar" >/dev/null \
      || die "LOOM_KAFKA_LIBS=$LIBS_DIR holds no kafka_2.13 jar"
    return 0
  fi
  [[ -f "$LIBS_MARKER" ]] || with_lock 8 "$CACHE_DIR/.fetch.lock" fetch_jars_locked
}

classpath() { printf '%s/*' "$LIBS_DIR"; }

# --- secured mode: certificates and passwords ---------------------------------------------

secured() { [[ "$SECURED" == yes ]]; }

# secret NAME: the content of $TLS_DIR/NAME-password (created by ensure_tls).
secret() { cat "$TLS_DIR/$1-password"; }

# issue_cert NAME CN: a key and a certificate signed by the CA, for 127.0.0.1 and localhost.
issue_cert() {
  local name="$1" cn="$2"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$cn" \
    -keyout "$TLS_DIR/$name.key" -out "$TLS_DIR/$name.csr" 2>/dev/null
  # localhost for the loopback servers; kafka and redis for docker-compose's secured example
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kafka,DNS:redis\n%s\n' \
    'extendedKeyUsage=serverAuth,clientAuth' \
    >"$TLS_DIR/$name.ext"
  openssl x509 -req -days 30 -in "$TLS_DIR/$name.csr" -CA "$TLS_DIR/ca.pem" \
    -CAkey "$TLS_DIR/ca.key" -CAcreateserial -extfile "$TLS_DIR/$name.ext" \
    -out "$TLS_DIR/$name.pem" 2>/dev/null
  rm -f "$TLS_DIR/$name.csr" "$TLS_DIR/$name.ext"
}

ensure_tls() {
  [[ -f "$TLS_DIR/.complete" ]] && return 0
  command -v openssl >/dev/null || die "openssl is needed for the secured mode"
  log "generating a test CA, certificates and passwords in $TLS_DIR"
  rm -rf "$TLS_DIR"
  mkdir -p "$TLS_DIR"
  chmod 700 "$TLS_DIR"
  local name
  for name in kafka redis redis-admin suppression-salt; do
    (umask 077; openssl rand -hex 16 >"$TLS_DIR/$name-password")
  done
  (umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
      -subj "/CN=Loom test CA" -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem" 2>/dev/null
    issue_cert server localhost
    issue_cert client "$KAFKA_USER"
    cat "$TLS_DIR/server.key" "$TLS_DIR/server.pem" "$TLS_DIR/ca.pem" \
      >"$TLS_DIR/server-keystore.pem")
  chmod 644 "$TLS_DIR/ca.pem"
  touch "$TLS_DIR/.complete"
}

# --- Kafka --------------------------------------------------------------------------------

render_kafka_config() {
  mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
  local listeners="PLAINTEXT://127.0.0.1:$KAFKA_PORT"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if secured; then
    listeners+=",SASL_SSL://127.0.0.1:$SASL_SSL_PORT,SSL://127.0.0.1:$SSL_PORT"
    protocols+=",SASL_SSL:SASL_SSL,SSL:SSL"
  fi
  (umask 077
    sed -e "s|@LISTENERS@|$listeners|g" \
        -e "s|@ADVERTISED_LISTENERS@|$listeners|g" \
        -e "s|@PROTOCOL_MAP@|$protocols|g" \
        -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
        -e "s|@LOG_DIRS@|$KAFKA_DIR/data|g" \
        "$REPO_ROOT/deploy/kafka/server.properties.tmpl" >"$KAFKA_CONFIG"
    if secured; then
      sed -e "s|@TLS_DIR@|$TLS_DIR|g" \
          -e "s|@USER@|$KAFKA_USER|g" \
          -e "s|@PASSWORD@|$(secret kafka)|g" \
          "$REPO_ROOT/deploy/kafka/secured.properties.tmpl" >>"$KAFKA_CONFIG"
    fi)
}

format_kafka_storage() {
  [[ -f "$KAFKA_DIR/data/meta.properties" ]] && return 0
  local cluster_id scram=()
  cluster_id="$(run_java_tool kafka.tools.StorageTool random-uuid | tail -n 1)"
  [[ -n "$cluster_id" ]] || die "could not generate a KRaft cluster id"
  if secured; then
    local mechanism
    for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
      scram+=(--add-scram "$mechanism=[name=$KAFKA_USER,password=$(secret kafka)]")
    done
  fi
  log "formatting KRaft storage in $KAFKA_DIR/data (cluster id $cluster_id)"
  run_java_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_CONFIG" \
    "${scram[@]}" >&2 || die "kafka storage format failed"
}

start_kafka() {
  local pid
  if pid="$(kafka_pid)"; then
    log "kafka already running (pid $pid) on 127.0.0.1:$KAFKA_PORT"
    return 0
  fi
  rm -f "$KAFKA_PID_FILE"
  ensure_jars
  if secured; then ensure_tls; fi
  render_kafka_config
  format_kafka_storage
  log "starting kafka on 127.0.0.1:$KAFKA_PORT (controller :$CONTROLLER_PORT, heap $KAFKA_HEAP)"
  # shellcheck disable=SC2086  # KAFKA_HEAP holds several JVM flags on purpose
  nohup java $KAFKA_HEAP -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$REPO_ROOT/deploy/kafka/log4j.properties" \
    -Dkafka.logs.dir="$KAFKA_DIR/logs" \
    -cp "$(classpath)" kafka.Kafka "$KAFKA_CONFIG" \
    </dev/null >>"$KAFKA_STDOUT" 2>&1 8>&- 9>&- &
  echo $! >"$KAFKA_PID_FILE"
  KAFKA_LAUNCHED="$(now)"
}

# kafka_answers: a metadata request succeeds and lists at least one broker.
kafka_answers() {
  port_open "$KAFKA_PORT" || return 1
  if "$PYTHON" -c 'import confluent_kafka' 2>/dev/null; then
    "$PYTHON" - "$KAFKA_PORT" <<'PY' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{sys.argv[1]}", "log_level": 0})
sys.exit(0 if admin.list_topics(timeout=5).brokers else 1)
PY
  else
    run_java_tool kafka.admin.BrokerApiVersionsCommand \
      --bootstrap-server "127.0.0.1:$KAFKA_PORT" >/dev/null 2>&1
  fi
}

wait_for_kafka() {
  local pid deadline
  deadline=$(($(date +%s) + START_TIMEOUT))
  until kafka_answers; do
    pid="$(kafka_pid)" || die "kafka exited during startup; see $KAFKA_LOG and $KAFKA_STDOUT"
    (($(date +%s) < deadline)) \
      || die "kafka (pid $pid) did not answer within ${START_TIMEOUT}s; see $KAFKA_LOG"
    sleep 0.5
  done
  if secured; then
    log "kafka SASL_SSL on 127.0.0.1:$SASL_SSL_PORT, SSL (client certificate) on" \
      "127.0.0.1:$SSL_PORT"
  fi
  if [[ -n "$KAFKA_LAUNCHED" ]]; then
    log "kafka ready on 127.0.0.1:$KAFKA_PORT; broker started in" \
      "$(elapsed_since "$KAFKA_LAUNCHED")s (log $KAFKA_LOG)"
  else
    log "kafka ready on 127.0.0.1:$KAFKA_PORT (log $KAFKA_LOG)"
  fi
}

# --- Redis --------------------------------------------------------------------------------

ensure_redis_installed() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  log "redis-server is missing; installing the Debian package"
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >&2
  command -v redis-server >/dev/null || die "redis-server still missing after apt-get install"
}

# redis_cli ARGS...: redis-cli on our server as its admin (TLS and password when secured;
# the password goes through the environment, never the command line).
redis_cli() {
  if secured; then
    REDISCLI_AUTH="$(secret redis-admin)" redis-cli --tls --cacert "$TLS_DIR/ca.pem" \
      -h 127.0.0.1 -p "$REDIS_PORT" "$@"
  else
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"
  fi
}

# write_redis_conf: the secured server's TLS and admin settings, in a file only we can read.
write_redis_conf() {
  (umask 077
    cat >"$REDIS_CONF" <<CONF
port 0
tls-port $REDIS_PORT
tls-cert-file $TLS_DIR/server.pem
tls-key-file $TLS_DIR/server.key
tls-ca-cert-file $TLS_DIR/ca.pem
tls-auth-clients optional
aclfile $TLS_DIR/redis-users.acl
CONF
  )
}

start_redis() {
  local pid
  if pid="$(redis_pid)"; then
    log "redis already running (pid $pid) on 127.0.0.1:$REDIS_PORT"
    return 0
  fi
  rm -f "$REDIS_PID_FILE"
  ensure_redis_installed
  mkdir -p "$REDIS_DIR/data"
  local persistence=(--appendonly no --save "") config=() listen=(--port "$REDIS_PORT")
  case "$REDIS_APPENDONLY" in
    yes) persistence=(--appendonly yes --appendfsync everysec) ;;
    no) ;;
    *) die "LOOM_REDIS_APPENDONLY must be yes or no, not '$REDIS_APPENDONLY'" ;;
  esac
  if secured; then
    ensure_tls
    write_redis_acl
    write_redis_conf
    config=("$REDIS_CONF")
    listen=()
  fi
  log "starting redis on 127.0.0.1:$REDIS_PORT (appendonly $REDIS_APPENDONLY$(secured && echo ', TLS'))"
  REDIS_LAUNCHED="$(now)"
  redis-server "${config[@]}" --bind 127.0.0.1 "${listen[@]}" --protected-mode yes \
    --daemonize yes --pidfile "$REDIS_PID_FILE" --logfile "$REDIS_LOG" \
    --dir "$REDIS_DIR/data" "${persistence[@]}" </dev/null >&2 8>&- 9>&- \
    || die "redis-server failed to start; see $REDIS_LOG"
}

wait_for_redis() {
  local deadline
  deadline=$(($(date +%s) + START_TIMEOUT))
  until [[ "$(redis_cli ping 2>/dev/null)" == PONG ]]; do
    (($(date +%s) < deadline)) \
      || die "redis did not answer PING within ${START_TIMEOUT}s; see $REDIS_LOG"
    sleep 0.1
  done
  if [[ -n "$REDIS_LAUNCHED" ]]; then
    log "redis ready on 127.0.0.1:$REDIS_PORT; started in $(elapsed_since "$REDIS_LAUNCHED")s" \
      "(log $REDIS_LOG)"
  else
    log "redis ready on 127.0.0.1:$REDIS_PORT (log $REDIS_LOG)"
  fi
}

# write_redis_acl: the ACL file of the user Loom connects as (its password only as a SHA-256),
# limited to loom:* keys and Loom's commands (streams/redis_clients.py: acl_rules).
write_redis_acl() {
  local rules hash
  rules="$("$PYTHON" -c 'import sys; from streams.redis_clients import acl_rules
print(acl_rules(sys.argv[1]))' "${LOOM_REDIS_PREFIX:-loom}")" \
    || die "cannot compute the ACL rules: $PYTHON needs Loom installed (make venv)"
  hash="$(printf '%s' "$(secret redis)" | sha256sum | cut -d' ' -f1)"
  (umask 077
    printf 'user default on #%s ~* &* +@all\nuser %s on #%s %s\n' \
      "$(printf '%s' "$(secret redis-admin)" | sha256sum | cut -d' ' -f1)" \
      "$REDIS_USER" "$hash" "$rules" >"$TLS_DIR/redis-users.acl")
}

# --- commands -----------------------------------------------------------------------------

run_java_tool() {
  local main_class="$1"; shift
  java -Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$REPO_ROOT/deploy/kafka/tools-log4j.properties" \
    -cp "$(classpath)" "$main_class" "$@"
}

# check_ports_free: before starting anything, fail if a port we need is held by a process
# that is not ours (e.g. another broker), so that `up` never leaves a half-started pair.
check_ports_free() {
  local port
  if ! kafka_pid >/dev/null; then
    for port in "$KAFKA_PORT" "$CONTROLLER_PORT"; do
      if port_open "$port"; then
        die "port 127.0.0.1:$port is taken by another process; set LOOM_KAFKA_PORT," \
          "LOOM_KAFKA_CONTROLLER_PORT and LOOM_DATA_DIR to run a second broker"
      fi
    done
  fi
  if ! redis_pid >/dev/null && port_open "$REDIS_PORT"; then
    die "port 127.0.0.1:$REDIS_PORT is taken by another process; set LOOM_REDIS_PORT and" \
      "LOOM_DATA_DIR to run a second redis"
  fi
}

up_locked() {
  local started
  started="$(now)"
  check_ports_free
  ensure_jars
  start_redis
  start_kafka
  wait_for_redis
  wait_for_kafka
  local scheme=redis
  if secured; then scheme=rediss; fi
  log "up in $(elapsed_since "$started")s: kafka 127.0.0.1:$KAFKA_PORT," \
    "redis $scheme://127.0.0.1:$REDIS_PORT/0, data $DATA_DIR"
}

down_locked() {
  local pid
  if pid="$(kafka_pid)"; then stop_pid kafka "$pid"; else log "kafka not running"; fi
  if pid="$(redis_pid)"; then stop_pid redis "$pid"; else log "redis not running"; fi
  rm -f "$KAFKA_PID_FILE" "$REDIS_PID_FILE"
}

status() {
  local json="${1:-}" kpid rpid kstate=stopped rstate=stopped
  if kpid="$(kafka_pid)"; then
    if port_open "$KAFKA_PORT"; then kstate=running; else kstate=starting; fi
  else kpid=""; fi
  if rpid="$(redis_pid)"; then
    if port_open "$REDIS_PORT"; then rstate=running; else rstate=starting; fi
  else rpid=""; fi
  if [[ "$json" == --json ]]; then
    printf '{"kafka": {"state": "%s", "pid": %s, "bootstrap": "127.0.0.1:%s",' \
      "$kstate" "${kpid:-null}" "$KAFKA_PORT"
    printf ' "controller_port": %s, "log": "%s"},' "$CONTROLLER_PORT" "$KAFKA_LOG"
    printf ' "redis": {"state": "%s", "pid": %s, "url": "redis://127.0.0.1:%s/0", "log": "%s"},' \
      "$rstate" "${rpid:-null}" "$REDIS_PORT" "$REDIS_LOG"
    printf ' "data_dir": "%s"}\n' "$DATA_DIR"
  else
    printf 'kafka: %-8s pid=%-8s bootstrap=127.0.0.1:%s controller=127.0.0.1:%s log=%s\n' \
      "$kstate" "${kpid:--}" "$KAFKA_PORT" "$CONTROLLER_PORT" "$KAFKA_LOG"
    printf 'redis: %-8s pid=%-8s url=redis://127.0.0.1:%s/0 log=%s\n' \
      "$rstate" "${rpid:--}" "$REDIS_PORT" "$REDIS_LOG"
  fi
  [[ "$kstate" == running && "$rstate" == running ]]
}

# env: the settings that connect Loom to these servers, as export lines (for eval).
print_env() {
  if ! secured; then
    printf 'export LOOM_KAFKA_BOOTSTRAP=127.0.0.1:%s\nexport LOOM_REDIS_URL=redis://127.0.0.1:%s/0\n' \
      "$KAFKA_PORT" "$REDIS_PORT"
    printf 'export LOOM_DEVELOPMENT=true\n'  # one local broker, the development salt
    return 0
  fi
  [[ -f "$TLS_DIR/.complete" ]] || die "no certificates in $TLS_DIR yet: run up first"
  cat <<ENV
export LOOM_DEVELOPMENT=true
export LOOM_KAFKA_BOOTSTRAP=127.0.0.1:$SASL_SSL_PORT
export LOOM_KAFKA_SECURITY_PROTOCOL=SASL_SSL
export LOOM_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
export LOOM_KAFKA_SASL_USERNAME=$KAFKA_USER
export LOOM_KAFKA_SASL_PASSWORD_FILE=$TLS_DIR/kafka-password
export LOOM_KAFKA_SSL_CA_FILE=$TLS_DIR/ca.pem
export LOOM_REDIS_URL=rediss://127.0.0.1:$REDIS_PORT/0
export LOOM_REDIS_USERNAME=$REDIS_USER
export LOOM_REDIS_PASSWORD_FILE=$TLS_DIR/redis-password
export LOOM_REDIS_SSL_CA_FILE=$TLS_DIR/ca.pem
ENV
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

main() {
  local command="${1:-}"
  (($#)) && shift
  case "$command" in
    up) with_lock 9 "$DATA_DIR/.lock" up_locked ;;
    down) with_lock 9 "$DATA_DIR/.lock" down_locked ;;
    status) status "$@" ;;
    env) print_env ;;
    certs) ensure_tls; write_redis_acl; printf '%s\n' "$TLS_DIR" ;;
    classpath) ensure_jars; classpath; echo ;;
    kafka-tool)
      (($#)) || die "usage: $0 kafka-tool MAIN_CLASS [ARGS...]"
      ensure_jars
      run_java_tool "$@"
      ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

# Run when executed; sourced (deploy/sentinel.sh), only the functions are defined.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
