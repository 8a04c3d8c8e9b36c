#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft) for tests, benchmarks and local runs.
# The broker is assembled from Maven Central with the machine's Java and cached
# outside the work tree, so only the first run downloads anything.
#
#   scripts/kafka.sh start    assemble if needed, format, start, wait until ready
#   scripts/kafka.sh stop     stop the broker started by this script
#   scripts/kafka.sh status   exit 0 when the broker answers
#
# Settings (environment): KAFKA_VERSION (3.9.1; kafkajs speaks protocol versions
# that Kafka 4 removed), KAFKA_CACHE (~/.cache/fraud-sql/kafka), KAFKA_PORT (9092),
# KAFKA_DATA (data dir; default under the cache; removed by `stop --clean`).
set -euo pipefail

KAFKA_VERSION=${KAFKA_VERSION:-3.9.1}
KAFKA_CACHE=${KAFKA_CACHE:-$HOME/.cache/fraud-sql/kafka}
KAFKA_PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
DIST="$KAFKA_CACHE/$KAFKA_VERSION"
RUN="$KAFKA_CACHE/run-$KAFKA_PORT"
KAFKA_DATA=${KAFKA_DATA:-$RUN/data}
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
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
POM
  (cd "$DIST" && mvn -B -q dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=libs) >&2
  cat >"$DIST/log4j.properties" <<'L4J'
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
L4J
  touch "$DIST/.complete"
}

JAVA_ARGS=(-Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true
  -Dlog4j.configuration="file:$DIST/log4j.properties" -cp "$DIST/libs/*")

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
  *) echo "usage: $0 start|stop [--clean]|status|assemble" >&2; exit 2 ;;
esac
