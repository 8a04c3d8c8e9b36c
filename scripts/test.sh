#!/usr/bin/env bash
# `npm test`: tap, with its arguments, against a real Kafka broker. When none
# answers at the first of TEST_KAFKA_BROKERS (127.0.0.1:9092), a local one is
# started with scripts/kafka.sh (assembled from Maven Central on first use) and
# stopped when the tests end, however they end; a broker that was already there
# is left as it was.
set -uo pipefail
cd "$(dirname "$0")/.."

log() { echo "[test] $*" >&2; }

brokers=${TEST_KAFKA_BROKERS:-127.0.0.1:9092}
first=${brokers%%,*}
host=${first%:*}
port=${first##*:}

answers() {
  # A bounded probe: a host that drops packets would otherwise hang for minutes.
  timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
}

if ! answers; then
  case "$host" in
    127.0.0.1 | localhost) ;;
    *)
      log "no Kafka broker answers at $first; start one there, or unset TEST_KAFKA_BROKERS to have a local one started"
      exit 1
      ;;
  esac
  log "no Kafka broker on $first: starting one for the tests (scripts/kafka.sh)"
  if ! KAFKA_PORT=$port scripts/kafka.sh start; then
    log "could not start a Kafka broker on $first; run \`KAFKA_PORT=$port scripts/kafka.sh start\` to see why (it needs Java 17 and Maven)"
    # A broker that started but never became ready is not left behind either.
    KAFKA_PORT=$port scripts/kafka.sh stop
    exit 1
  fi
  trap 'KAFKA_PORT=$port scripts/kafka.sh stop' EXIT
  # Without these, an interrupted run would skip the EXIT trap in some shells' hands.
  trap 'exit 130' INT
  trap 'exit 143' TERM
fi

# Not `exec`: the trap above must run after tap.
node_modules/.bin/tap "$@"
