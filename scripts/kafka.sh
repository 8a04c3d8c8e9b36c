#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft) for tests, benchmarks and local runs.
# The broker is assembled from Maven Central with the machine's Java and cached
# outside the work tree, so only the first run downloads anything.
#
#   scripts/kafka.sh start    assemble if needed, format, start, wait until ready
#   scripts/kafka.sh stop     stop the broker started by this script
#   scripts/kafka.sh status   exit 0 when the broker answers
#   scripts/kafka.sh tool CLASS ARGS...   run one of Kafka's own tools with the
#                             broker's classpath (e.g. org.apache.kafka.tools.ConsoleProducer)
#
# Settings (environment): KAFKA_VERSION (4.1.2; a Kafka 4 release, logging through
# log4j2), KAFKA_CACHE (~/.cache/fraud-sql/kafka; one directory per version, so
# several versions can sit side by side), KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT
# (KAFKA_PORT + 1), KAFKA_DATA (data dir; default under the cache, one per version;
# removed by `stop --clean`).
set -euo pipefail

KAFKA_VERSION=${KAFKA_VERSION:-4.1.2}
KAFKA_CACHE=${KAFKA_CACHE:-$HOME/.cache/fraud-sql/kafka}
KAFKA_PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
DIST="$KAFKA_CACHE/$KAFKA_VERSION"
RUN="$KAFKA_CACHE/run-$KAFKA_PORT"
# Per version: a data dir formatted by another release is never reused.
KAFKA_DATA=${KAFKA_DATA:-$RUN/data-$KAFKA_VERSION}
PIDFILE="$RUN/kafka.pid"

log() { echo "[kafka] $*" >&2; }

assemble() {
  [ -f "$DIST/.complete" ] && return 0
  command -v mvn >/dev/null || { log "Maven (mvn) is required to assemble the broker"; exit 1; }
  command -v java >/dev/null || { log "Java 17 is required to run the broker"; exit 1; }
  log "assembling Kafka $KAFKA_VERSION from Maven Central into $DIST (first run only)"
  rm -rf "$DIST" && mkdir -p "$DIST"
  cat >"$DIST/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.fraudsql</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- Kafka 4 logs through slf4j 1.7 to log4j2, as its own distribution does. -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
POM
  # Without -q: Maven names each artifact it fetches, so a first run shows progress.
  (cd "$DIST" && mvn -B -ntp -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=libs | { grep -E '^\[(INFO\] Copying|ERROR)' || true; } | sed 's/^/[kafka] /') >&2 \
    || { log "could not assemble Kafka $KAFKA_VERSION (see the Maven output above)"; exit 1; }
  # WARN and up, plus the broker's state transitions that start() waits for.
  cat >"$DIST/log4j2.properties" <<'L4J'
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
logger.broker.name=kafka.server.BrokerServer
logger.broker.level=INFO
L4J
  touch "$DIST/.complete"
}

JAVA_ARGS=(-Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$DIST/log4j2.properties" -cp "$DIST/libs/*")

write_config() {
  mkdir -p "$RUN"
  cat >"$RUN/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=2097152
log.retention.hours=24
PROPS
}

is_up() {
  # A broker that accepts a TCP connection on its listener is what every client needs.
  (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null
}

start() {
  if is_up; then log "a broker already listens on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  assemble
  write_config
  if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
    mkdir -p "$KAFKA_DATA"
    java "${JAVA_ARGS[@]}" kafka.tools.StorageTool format -t "$(java "${JAVA_ARGS[@]}" kafka.tools.StorageTool random-uuid)" \
      -c "$RUN/server.properties" >/dev/null
  fi
  log "starting on 127.0.0.1:$KAFKA_PORT (log: $RUN/kafka.log)"
  # The last run's log is kept: a broker that exited on its own says why there.
  if [ -f "$RUN/kafka.log" ]; then mv -f "$RUN/kafka.log" "$RUN/kafka.log.1"; fi
  java "${JAVA_ARGS[@]}" kafka.Kafka "$RUN/server.properties" >"$RUN/kafka.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 120); do
    if grep -q "BrokerServer id=1\] Transition from STARTING to STARTED" "$RUN/kafka.log" 2>/dev/null && is_up; then
      log "ready"; return 0
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then log "broker exited; last lines:"; tail -20 "$RUN/kafka.log" >&2; exit 1; fi
    sleep 0.5
  done
  log "broker did not become ready in 60 s; last lines:"; tail -20 "$RUN/kafka.log" >&2; exit 1
}

stop() {
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    local pid; pid=$(cat "$PIDFILE")
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped"
  fi
  rm -f "$PIDFILE"
  if [ "${1:-}" = "--clean" ]; then rm -rf "$KAFKA_DATA"; fi
}

case "${1:-}" in
  start) start ;;
  stop) shift; stop "${1:-}" ;;
  status) is_up ;;
  assemble) assemble ;;
  tool) shift; assemble; exec java "${JAVA_ARGS[@]}" "$@" ;;
  *) echo "usage: $0 start|stop [--clean]|status|assemble|tool CLASS ARGS..." >&2; exit 2 ;;
esac
