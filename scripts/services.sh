#!/usr/bin/env bash
# Real servers on loopback for Spate's connector tests: PostgreSQL (logical replication), NATS with
# JetStream, Mosquitto (MQTT) and Apache Kafka (KRaft, one node). See scripts/services.md.
#
#   scripts/services.sh up [SERVICE…]      install what is missing, start what is not running,
#                                          wait until ready (all services when none is named)
#   scripts/services.sh down [SERVICE…]    stop what this script started
#   scripts/services.sh status [SERVICE…]  one line per service; non-zero if one is down
#   SERVICE is one of: postgres nats mosquitto kafka
#   scripts/services.sh env      print `export SPATE_…_URL=…` lines for the tests (eval "$(… env)")
#   scripts/services.sh reset    down, then delete the services' data (keeps installed artifacts)
#   scripts/services.sh kafka-run CLASS [ARGS…]   run a Kafka CLI class on the broker's classpath,
#       e.g. kafka-run org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
#
# Everything (installed jars, data, configs, logs, pid files) lives under SPATE_SERVICES_DIR
# (default /var/tmp/spate-services). Debian packages are installed with apt-get (as root);
# `apt-get update` runs only when a package is missing. `up` is idempotent: when everything runs
# with the same configuration it only checks, in about a second.
set -euo pipefail

DIR=${SPATE_SERVICES_DIR:-/var/tmp/spate-services}
PG_PORT=${SPATE_PG_PORT:-5432}
NATS_PORT=${SPATE_NATS_PORT:-4222}
NATS_HTTP_PORT=${SPATE_NATS_HTTP_PORT:-8222}
MQTT_PORT=${SPATE_MQTT_PORT:-1883}
KAFKA_PORT=${SPATE_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${SPATE_KAFKA_CONTROLLER_PORT:-9093}
KAFKA_VERSION=${SPATE_KAFKA_VERSION:-4.1.1}
KAFKA_HEAP=${SPATE_KAFKA_HEAP:-512m}
# Fixed KRaft cluster id: base64url of the 16 bytes "spate-test-kafka".
KAFKA_CLUSTER_ID=c3BhdGUtdGVzdC1rYWZrYQ
# log4j2 bindings matching Kafka's own distribution (slf4j 1.7 → log4j-slf4j-impl).
LOG4J_VERSION=2.24.3
START_TIMEOUT=${SPATE_SERVICES_TIMEOUT:-90}
HOST=127.0.0.1

SERVICES=(postgres nats mosquitto kafka)

# ---------------------------------------------------------------------------------------------
# helpers

log() { printf '[services] %s\n' "$*" >&2; }

# port_open PORT: does something accept TCP connections on 127.0.0.1:PORT?
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# pid_alive PIDFILE PATTERN: the pid in PIDFILE runs and its command line contains PATTERN
# (guards against a stale pid file whose pid was reused).
pid_alive() {
  local pidfile=$1 pattern=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$pattern"
}

# pid_running PID: the process exists and is not a zombie waiting to be reaped.
pid_running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) } # the state follows "(comm) "
  [[ ${stat%% *} != Z ]]
}

# proc_exists PIDFILE: the recorded pid still exists. Used while waiting for a process we just
# spawned: right after fork its command line is still ours, so pid_alive's pattern can't be used.
proc_exists() {
  [[ -s $1 ]] && pid_running "$(<"$1")"
}

# write_if_changed FILE: replace FILE with stdin when the content differs; succeeds if it changed.
write_if_changed() {
  local file=$1 tmp
  tmp=$(mktemp "$file.XXXXXX")
  cat >"$tmp"
  if [[ -f $file ]] && cmp -s "$tmp" "$file"; then
    rm -f "$tmp"
    return 1
  fi
  mv -f "$tmp" "$file"
  chmod 644 "$file"
  return 0
}

# fail_with_log NAME LOGFILE MESSAGE: print the message and the tail of the log, then fail.
fail_with_log() {
  local name=$1 logfile=$2 msg=$3
  log "$name: $msg"
  if [[ -f $logfile ]]; then
    log "$name: last lines of $logfile:"
    tail -n 40 "$logfile" | sed "s/^/    /" >&2
  fi
  return 1
}

# port_free_or_fail NAME PORT: fail with a clear message if someone else listens on PORT.
port_free_or_fail() {
  local name=$1 port=$2
  if port_open "$port"; then
    log "$name: port $HOST:$port is already in use by another process:"
    if command -v ss >/dev/null; then ss -ltnp "sport = :$port" | sed 's/^/    /' >&2 || true; fi
    return 1
  fi
}

# stop_debian_service SERVICE PORT: Debian's nats-server and mosquitto packages ship a system
# service; where the init system starts it on install (this machine's image does not), it holds
# our port. Stop it then: the tests use the instance this script configures.
stop_debian_service() {
  local service=$1 port=$2 i
  command -v ss >/dev/null || return 0
  ss -ltnpH "sport = :$port" 2>/dev/null | grep -qF "((\"$service\"" || return 0
  log "$service: stopping the system's $service service, which holds port $port"
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    systemctl stop "$service" || true
  elif [[ -x /etc/init.d/$service ]]; then
    "/etc/init.d/$service" stop || true
  fi
  for ((i = 0; i < 50; i++)); do
    port_open "$port" || return 0
    sleep 0.1
  done
}

# wait_until NAME LOGFILE PIDCHECK READYCHECK: poll until the command READYCHECK succeeds; fail
# early when the command PIDCHECK says the process died; fail after START_TIMEOUT seconds.
wait_until() {
  local name=$1 logfile=$2 pidcheck=$3 readycheck=$4 deadline=$((SECONDS + START_TIMEOUT))
  while ! eval "$readycheck"; do
    if ! eval "$pidcheck"; then
      fail_with_log "$name" "$logfile" "the process exited during start-up"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      fail_with_log "$name" "$logfile" "not ready after ${START_TIMEOUT}s"
      return 1
    fi
    sleep 0.2
  done
}

# rotate_log FILE: keep the previous run's log as FILE.1 so each start begins a fresh file.
rotate_log() {
  [[ -f $1 ]] && mv -f "$1" "$1.1"
  : >"$1"
}

# spawn PIDFILE LOGFILE CMD…: run CMD detached (own session, output appended to LOGFILE) and record
# its pid. fd 9 (the `up` lock) is closed so the daemon does not hold the lock after we exit.
spawn() {
  local pidfile=$1 logfile=$2
  shift 2
  nohup setsid "$@" >>"$logfile" 2>&1 </dev/null 9>&- &
  echo $! >"$pidfile"
}

# stop_pid NAME PIDFILE PATTERN [GRACE]: SIGTERM, wait up to GRACE seconds, then SIGKILL.
stop_pid() {
  local name=$1 pidfile=$2 pattern=$3 grace=${4:-20} pid i
  if ! pid_alive "$pidfile" "$pattern"; then
    rm -f "$pidfile"
    return 0
  fi
  pid=$(<"$pidfile")
  log "$name: stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    pid_running "$pid" || break
    sleep 0.1
  done
  if pid_running "$pid"; then
    log "$name: still running after ${grace}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$pidfile"
}

# ---------------------------------------------------------------------------------------------
# installation

# Debian packages each service needs, checked by a file they install.
declare -A PKG_FILE=(
  [postgresql]=/usr/share/postgresql-common/pg_wrapper
  [nats-server]=/usr/sbin/nats-server
  [mosquitto]=/usr/sbin/mosquitto
  [mosquitto-clients]=/usr/bin/mosquitto_pub
)

pg_bindir() {
  # shellcheck disable=SC2012 # version-sorted directory names
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

install_packages() {
  local missing=() pkg
  for pkg in postgresql nats-server mosquitto mosquitto-clients; do
    [[ -e ${PKG_FILE[$pkg]} ]] || missing+=("$pkg")
  done
  [[ -n $(pg_bindir) ]] || missing+=(postgresql)
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  ((${#missing[@]} == 0)) && return 0
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: a dedicated cluster under $DIR/pg, run as the postgres user, with logical replication.

PG_DIR=$DIR/pg
PG_DATA=$PG_DIR/data
PG_SOCK=$PG_DIR/run
PG_LOG=$PG_DIR/postgres.log

pg_as() { runuser -u postgres -- "$@"; }
pg_running() { [[ -f $PG_DATA/PG_VERSION ]] && pg_as "$(pg_bindir)/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; }
pg_ready() { pg_as "$(pg_bindir)/pg_isready" -q -h "$HOST" -p "$PG_PORT" -t 1; }
pg_psql() { pg_as "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres "$@"; }

# Prints a bit mask: 1 = server settings changed (restart), 2 = pg_hba.conf changed (reload).
pg_write_config() {
  local changed=0
  write_if_changed "$PG_DATA/spate.conf" <<EOF && changed=1
# Written by scripts/services.sh; edits are overwritten.
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
max_connections = 200
password_encryption = 'scram-sha-256'
# Test server: no fsync (safe against process kills, not against an OS crash).
fsync = off
full_page_writes = off
logging_collector = off
log_min_messages = warning
EOF
  write_if_changed "$PG_DATA/pg_hba.conf" <<EOF && changed=$((changed | 2))
# Written by scripts/services.sh; edits are overwritten.
# TYPE  DATABASE     USER  ADDRESS       METHOD
local   all          all                 peer
host    all          all   127.0.0.1/32  scram-sha-256
host    replication  all   127.0.0.1/32  scram-sha-256
EOF
  echo "$changed"
}

pg_up() {
  local bin changed
  bin=$(pg_bindir)
  [[ -n $bin ]] || { log "postgres: no PostgreSQL binaries under /usr/lib/postgresql"; return 1; }
  mkdir -p "$PG_DIR" "$PG_SOCK"
  chown postgres:postgres "$PG_DIR" "$PG_SOCK"
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    log "postgres: initdb $PG_DATA"
    rm -rf "$PG_DATA"
    pg_as "$bin/initdb" -D "$PG_DATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 ||
      fail_with_log postgres "$PG_DIR/initdb.log" "initdb failed" || return 1
    echo "include_if_exists = 'spate.conf'" >>"$PG_DATA/postgresql.conf"
  fi
  changed=$(pg_write_config)
  chown postgres:postgres "$PG_DATA/spate.conf" "$PG_DATA/pg_hba.conf"

  if pg_running; then
    if ((changed & 1)); then
      log "postgres: configuration changed, restarting"
      pg_as "$bin/pg_ctl" restart -D "$PG_DATA" -m fast -w -t "$START_TIMEOUT" -l "$PG_LOG" >/dev/null 9>&- ||
        fail_with_log postgres "$PG_LOG" "restart failed" || return 1
    elif ((changed & 2)); then
      pg_as "$bin/pg_ctl" reload -D "$PG_DATA" >/dev/null
    fi
  else
    pg_stop_debian_cluster_on_port
    port_free_or_fail postgres "$PG_PORT" || return 1
    # A server killed without shutdown leaves postmaster.pid behind; if its pid now belongs to
    # another process, postgres would refuse to start.
    if [[ -f $PG_DATA/postmaster.pid ]]; then
      local stale
      stale=$(head -n 1 "$PG_DATA/postmaster.pid")
      if ! tr '\0' ' ' 2>/dev/null <"/proc/$stale/cmdline" | grep -q postgres; then
        rm -f "$PG_DATA/postmaster.pid"
      fi
    fi
    log "postgres: starting on $HOST:$PG_PORT"
    rotate_log "$PG_LOG"
    chown postgres:postgres "$PG_LOG"
    pg_as "$bin/pg_ctl" start -D "$PG_DATA" -w -t "$START_TIMEOUT" -l "$PG_LOG" >/dev/null 9>&- ||
      fail_with_log postgres "$PG_LOG" "pg_ctl start failed" || return 1
  fi
  wait_until postgres "$PG_LOG" pg_running pg_ready || return 1

  # Role and database: created once, password and attributes re-asserted on every `up`.
  pg_psql -d postgres <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'spate') THEN
    CREATE ROLE spate LOGIN REPLICATION CREATEDB PASSWORD 'spate';
  ELSE
    ALTER ROLE spate LOGIN REPLICATION CREATEDB PASSWORD 'spate';
  END IF;
END
$$;
SQL
  if [[ -z $(pg_psql -d postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = 'spate'") ]]; then
    pg_psql -d postgres -c "CREATE DATABASE spate OWNER spate"
  fi
}

# Debian's postgresql package creates a default cluster ("main", port 5432) and may start it.
# If such a cluster is online on our port, stop it: this machine runs our own cluster there.
pg_stop_debian_cluster_on_port() {
  command -v pg_lsclusters >/dev/null || return 0
  local ver name port status
  while read -r ver name port status _; do
    if [[ $port == "$PG_PORT" && $status == online* ]]; then
      log "postgres: stopping Debian's cluster $ver/$name, which holds port $PG_PORT"
      pg_ctlcluster "$ver" "$name" stop || true
    fi
  done < <(pg_lsclusters --no-header 2>/dev/null)
}

pg_down() {
  if pg_running; then
    log "postgres: stopping"
    pg_as "$(pg_bindir)/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null
  fi
}

pg_status() {
  if pg_running && pg_ready; then
    echo "postgres   up    pid $(head -n 1 "$PG_DATA/postmaster.pid")  postgres://spate:spate@$HOST:$PG_PORT/spate"
  else
    echo "postgres   down  $HOST:$PG_PORT"
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# NATS server with JetStream

NATS_DIR=$DIR/nats
NATS_CONF=$NATS_DIR/nats.conf
NATS_PID=$NATS_DIR/nats.pid
NATS_LOG=$NATS_DIR/nats.log

nats_running() { pid_alive "$NATS_PID" nats-server; }
# Ready when the server's INFO line (sent on connect) says JetStream is enabled.
nats_proc() { proc_exists "$NATS_PID"; }
nats_ready() {
  local info
  # shellcheck disable=SC2016 # $0 $1 $line expand in the inner bash
  info=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && IFS= read -r -t 2 line <&3 && printf "%s" "$line"' \
    "$HOST" "$NATS_PORT" 2>/dev/null) || return 1
  [[ $info == *'"jetstream":true'* ]]
}

nats_up() {
  local changed=0
  [[ -x /usr/sbin/nats-server ]] || { log "nats: nats-server is not installed"; return 1; }
  mkdir -p "$NATS_DIR"
  write_if_changed "$NATS_CONF" <<EOF && changed=1
# Written by scripts/services.sh; edits are overwritten.
listen: "$HOST:$NATS_PORT"
http: "$HOST:$NATS_HTTP_PORT"
logtime: true
jetstream {
  # nats-server keeps its files in <store_dir>/jetstream
  store_dir: "$NATS_DIR"
  max_memory_store: 1GB
  max_file_store: 8GB
}
EOF
  if nats_running && ((changed)); then
    log "nats: configuration changed, restarting"
    nats_down
  fi
  if ! nats_running; then
    stop_debian_service nats-server "$NATS_PORT"
    port_free_or_fail nats "$NATS_PORT" || return 1
    log "nats: starting on $HOST:$NATS_PORT (JetStream in $NATS_DIR/jetstream)"
    rotate_log "$NATS_LOG"
    spawn "$NATS_PID" "$NATS_LOG" /usr/sbin/nats-server -c "$NATS_CONF"
  fi
  wait_until nats "$NATS_LOG" nats_proc nats_ready
}

nats_down() { stop_pid nats "$NATS_PID" nats-server; }

nats_status() {
  if nats_running && nats_ready; then
    echo "nats       up    pid $(<"$NATS_PID")  nats://$HOST:$NATS_PORT (JetStream; monitoring http://$HOST:$NATS_HTTP_PORT)"
  else
    echo "nats       down  $HOST:$NATS_PORT"
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# Mosquitto (MQTT 3.1.1 / 5), anonymous on loopback

MQTT_DIR=$DIR/mosquitto
MQTT_CONF=$MQTT_DIR/mosquitto.conf
MQTT_PID=$MQTT_DIR/mosquitto.pid
MQTT_LOG=$MQTT_DIR/mosquitto.log

mqtt_running() { pid_alive "$MQTT_PID" mosquitto; }
mqtt_proc() { proc_exists "$MQTT_PID"; }
mqtt_ready() { port_open "$MQTT_PORT"; }

mqtt_up() {
  local changed=0
  [[ -x /usr/sbin/mosquitto ]] || { log "mosquitto: not installed"; return 1; }
  mkdir -p "$MQTT_DIR/data"
  # Started as root, mosquitto drops to its own user: that user must own the persistence dir.
  if id mosquitto >/dev/null 2>&1; then chown mosquitto: "$MQTT_DIR/data"; fi
  write_if_changed "$MQTT_CONF" <<EOF && changed=1
# Written by scripts/services.sh; edits are overwritten.
listener $MQTT_PORT $HOST
allow_anonymous true
persistence true
persistence_location $MQTT_DIR/data/
autosave_interval 30
# A persistent session's queue while its subscriber is down (killed in the crash tests); the
# default, 1000, drops messages past it.
max_queued_messages 1000000
log_dest stdout
log_type error
log_type warning
log_type notice
log_timestamp true
EOF
  if mqtt_running && ((changed)); then
    log "mosquitto: configuration changed, restarting"
    mqtt_down
  fi
  if ! mqtt_running; then
    stop_debian_service mosquitto "$MQTT_PORT"
    port_free_or_fail mosquitto "$MQTT_PORT" || return 1
    log "mosquitto: starting on $HOST:$MQTT_PORT"
    rotate_log "$MQTT_LOG"
    spawn "$MQTT_PID" "$MQTT_LOG" /usr/sbin/mosquitto -c "$MQTT_CONF"
  fi
  wait_until mosquitto "$MQTT_LOG" mqtt_proc mqtt_ready
}

mqtt_down() { stop_pid mosquitto "$MQTT_PID" mosquitto; }

mqtt_status() {
  if mqtt_running && mqtt_ready; then
    echo "mosquitto  up    pid $(<"$MQTT_PID")  mqtt://$HOST:$MQTT_PORT"
  else
    echo "mosquitto  down  $HOST:$MQTT_PORT"
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# Apache Kafka, KRaft mode, one combined broker+controller, jars from Maven Central

KAFKA_DIR=$DIR/kafka
KAFKA_LIB=$KAFKA_DIR/$KAFKA_VERSION/lib
KAFKA_CONF=$KAFKA_DIR/server.properties
KAFKA_LOG4J=$KAFKA_DIR/log4j2.properties
KAFKA_TOOLS_LOG4J=$KAFKA_DIR/tools-log4j2.properties
KAFKA_DATA=$KAFKA_DIR/data
KAFKA_PID=$KAFKA_DIR/kafka.pid
KAFKA_LOG=$KAFKA_DIR/kafka.log

kafka_running() { pid_alive "$KAFKA_PID" kafka.Kafka; }
kafka_proc() { proc_exists "$KAFKA_PID"; }
kafka_ready() { port_open "$KAFKA_PORT" && grep -q 'Kafka Server started' "$KAFKA_LOG"; }
kafka_java() { java -cp "$KAFKA_LIB/*" "$@"; }

KAFKA_BUILD=$KAFKA_DIR/$KAFKA_VERSION/build

# kafka_pom_changed: write the pom that lists the Kafka runtime; succeeds when the jars in
# $KAFKA_LIB are missing or were resolved from a different pom.
kafka_pom_changed() {
  local changed=1
  mkdir -p "$KAFKA_BUILD"
  # kafka_2.13 is the broker; kafka-tools brings the CLI classes (TopicCommand, console
  # producer/consumer, perf tools) minus connect-runtime (Connect's REST server: jetty, jersey…),
  # which only its Connect plugin tool needs; log4j-slf4j-impl is the binding Kafka ships with.
  write_if_changed "$KAFKA_BUILD/pom.xml" <<EOF || changed=0
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.spate.services</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version>
      <exclusions><exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion></exclusions>
    </dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  ((changed)) || [[ ! -f $KAFKA_LIB/.complete ]]
}

# Resolve the pom's dependencies with Maven into $KAFKA_LIB (Maven's local repository stays
# under $KAFKA_DIR/m2).
kafka_install() {
  command -v mvn >/dev/null || { log "kafka: mvn is not installed"; return 1; }
  log "kafka: fetching kafka_2.13 $KAFKA_VERSION and its dependencies from Maven Central"
  rm -rf "$KAFKA_LIB"
  if ! mvn -B -q -f "$KAFKA_BUILD/pom.xml" -Dmaven.repo.local="$KAFKA_DIR/m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIB" \
    >"$KAFKA_BUILD/mvn.log" 2>&1; then
    fail_with_log kafka "$KAFKA_BUILD/mvn.log" "Maven could not resolve Kafka $KAFKA_VERSION"
    return 1
  fi
  touch "$KAFKA_LIB/.complete"
}

kafka_write_config() {
  local changed=1
  write_if_changed "$KAFKA_CONF" <<EOF || changed=0
# Written by scripts/services.sh; edits are overwritten.
# JVM heap (SPATE_KAFKA_HEAP, not a broker setting; here so that a change restarts the broker): $KAFKA_HEAP
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$KAFKA_DATA
# One node, built for tests: replication 1 everywhere, small internal topics, no rebalance delay.
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Consumer groups of the KIP-848 protocol (cluster jobs' membership): a member that stops
# heartbeating loses its partitions after 6 s (default 45 s), the bound on failover after a kill.
group.consumer.session.timeout.ms=6000
group.consumer.min.session.timeout.ms=2000
group.consumer.heartbeat.interval.ms=1000
group.consumer.min.heartbeat.interval.ms=500
# Retention is checked every 5 s (default 5 min) so tests of deleted offsets need not wait.
log.retention.check.interval.ms=5000
EOF
  write_if_changed "$KAFKA_LOG4J" <<'EOF' || true
# Written by scripts/services.sh; edits are overwritten.
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
  write_if_changed "$KAFKA_TOOLS_LOG4J" <<'EOF' || true
# Written by scripts/services.sh; edits are overwritten.
status = warn
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
EOF
  echo "$changed"
}

kafka_up() {
  local changed
  command -v java >/dev/null || { log "kafka: java is not installed"; return 1; }
  mkdir -p "$KAFKA_DIR"
  if kafka_pom_changed; then
    # Never swap the jars under a running broker.
    if kafka_running; then kafka_down; fi
    kafka_install || return 1
  fi
  changed=$(kafka_write_config)
  if kafka_running && ((changed)); then
    log "kafka: configuration changed, restarting"
    kafka_down
  fi
  if ! kafka_running; then
    port_free_or_fail kafka "$KAFKA_PORT" || return 1
    port_free_or_fail kafka "$KAFKA_CONTROLLER_PORT" || return 1
    if [[ ! -f $KAFKA_DATA/meta.properties ]]; then
      log "kafka: formatting storage in $KAFKA_DATA (cluster id $KAFKA_CLUSTER_ID)"
      mkdir -p "$KAFKA_DATA"
      kafka_java -Dlog4j2.configurationFile="$KAFKA_TOOLS_LOG4J" kafka.tools.StorageTool format \
        --cluster-id "$KAFKA_CLUSTER_ID" --config "$KAFKA_CONF" --ignore-formatted \
        >"$KAFKA_DIR/format.log" 2>&1 ||
        fail_with_log kafka "$KAFKA_DIR/format.log" "formatting the storage failed" || return 1
    fi
    log "kafka: starting $KAFKA_VERSION on $HOST:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT, heap $KAFKA_HEAP)"
    rotate_log "$KAFKA_LOG"
    spawn "$KAFKA_PID" "$KAFKA_LOG" java -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dkafka.logs.dir="$KAFKA_DIR" \
      -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_CONF"
  fi
  wait_until kafka "$KAFKA_LOG" kafka_proc kafka_ready
}

kafka_down() { stop_pid kafka "$KAFKA_PID" kafka.Kafka 60; }

kafka_status() {
  if kafka_running && kafka_ready; then
    echo "kafka      up    pid $(<"$KAFKA_PID")  $HOST:$KAFKA_PORT (Kafka $KAFKA_VERSION, KRaft)"
  else
    echo "kafka      down  $HOST:$KAFKA_PORT"
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# commands

fn_prefix() {
  case $1 in
    postgres) echo pg ;;
    mosquitto) echo mqtt ;;
    *) echo "$1" ;;
  esac
}

# select_services [NAME…]: the named services (all when none), checked, in start order.
select_services() {
  local svc known
  SELECTED=()
  if (($# == 0)); then
    SELECTED=("${SERVICES[@]}")
    return 0
  fi
  for svc in "$@"; do
    known=0
    [[ " ${SERVICES[*]} " == *" $svc "* ]] && known=1
    ((known)) || { log "unknown service '$svc' (known: ${SERVICES[*]})"; exit 2; }
  done
  for svc in "${SERVICES[@]}"; do
    [[ " $* " == *" $svc "* ]] && SELECTED+=("$svc")
  done
  return 0
}

cmd_up() {
  local failed=() svc rc started=$SECONDS t
  select_services "$@"
  install_packages || log "installing packages failed; trying to start what is there"
  for svc in "${SELECTED[@]}"; do
    t=$SECONDS
    # A subshell with its own `set -e`, run as a plain command, so one failing service does not
    # stop the others from being tried.
    set +e
    (
      set -e
      "$(fn_prefix "$svc")_up"
    )
    rc=$?
    set -e
    if ((rc == 0)); then
      ((SECONDS - t < 2)) || log "$svc: ready after $((SECONDS - t))s"
    else
      failed+=("$svc")
    fi
  done
  if ((${#failed[@]})); then
    log "FAILED: ${failed[*]} (see the messages above; logs under $DIR)"
    cmd_status "${SELECTED[@]}" || true
    return 1
  fi
  log "up in $((SECONDS - started))s: ${SELECTED[*]}"
  cmd_status "${SELECTED[@]}"
}

cmd_down() {
  local svc i
  select_services "$@"
  # Stop in reverse start order (clients of others first, postgres last).
  for ((i = ${#SELECTED[@]} - 1; i >= 0; i--)); do
    svc=${SELECTED[i]}
    "$(fn_prefix "$svc")_down" || log "$svc: stop failed"
  done
}

cmd_status() {
  local svc rc=0
  select_services "$@"
  for svc in "${SELECTED[@]}"; do
    "$(fn_prefix "$svc")_status" || rc=1
  done
  return "$rc"
}

cmd_env() {
  cat <<EOF
export SPATE_PG_URL=postgres://spate:spate@$HOST:$PG_PORT/spate
export SPATE_NATS_URL=nats://$HOST:$NATS_PORT
export SPATE_MQTT_URL=mqtt://$HOST:$MQTT_PORT
export SPATE_KAFKA_BROKERS=$HOST:$KAFKA_PORT
EOF
}

cmd_reset() {
  cmd_down
  log "deleting service data under $DIR (installed jars are kept)"
  rm -rf "$PG_DATA" "$NATS_DIR/jetstream" "$MQTT_DIR/data" "$KAFKA_DATA"
}

cmd_kafka_run() {
  [[ -f $KAFKA_LIB/.complete ]] || { log "kafka is not installed: run '$0 up' first"; return 1; }
  [[ -f $KAFKA_TOOLS_LOG4J ]] || kafka_write_config >/dev/null
  exec java -Xmx256m -Dlog4j2.configurationFile="$KAFKA_TOOLS_LOG4J" -cp "$KAFKA_LIB/*" "$@"
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
    up | down | reset | kafka-run)
      if [[ $cmd != kafka-run ]]; then
        [[ $EUID -eq 0 ]] || { log "run as root (installs packages, runs postgres as its user)"; exit 1; }
        mkdir -p "$DIR"
        # One `up`/`down` at a time (test runners may call `up` concurrently).
        exec 9>"$DIR/.lock"
        flock 9
      fi
      case $cmd in
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        reset) cmd_reset ;;
        kafka-run) cmd_kafka_run "$@" ;;
      esac
      ;;
    status) cmd_status "$@" ;;
    env) cmd_env ;;
    *)
      echo "usage: $0 up|down|status [SERVICE...] | env | reset | kafka-run CLASS [ARGS...]" >&2
      echo "services: ${SERVICES[*]}" >&2
      exit 2
      ;;
  esac
}

main "$@"
