#!/usr/bin/env bash
# Configuration errors of the settings added for retention, retry delays and backpressure: a
# program refuses a bad value at start-up with a clear message and exit status 2, and a malformed
# ORDERPIPE_RETRY_DELAYS is reported and replaced by the defaults (the queues must still be
# declared with one consistent set of TTLs).
source "$(dirname "$0")/lib.sh"
refuses() { # DESCRIPTION MESSAGE-PATTERN ENV=VALUE... -- PROGRAM
  local what=$1 pattern=$2; shift 2
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" timeout 10 "$@" > "$TEST_TMP/out" 2>&1
  local rc=$?
  check_eq "$what: exit status 2" 2 "$rc"
  check "$what: says why" grep -q "$pattern" "$TEST_TMP/out"
}
refuses "a malformed INBOX_RETENTION" "INBOX_RETENTION" INBOX_RETENTION=soon -- orderpipe-reservation
refuses "an OUTBOX_RETENTION under a second" "OUTBOX_RETENTION" OUTBOX_RETENTION=500ms -- orderpipe-payment
refuses "an unknown RETENTION_PRUNE" "RETENTION_PRUNE must be partition or delete" RETENTION_PRUNE=truncate -- orderpipe-notification
refuses "a TRANSITION_RETENTION under a second" "TRANSITION_RETENTION" TRANSITION_RETENTION=10ms -- orderpipe-compensation
refuses "a RETENTION_INTERVAL of 0" "RETENTION_INTERVAL" RETENTION_INTERVAL=0 -- orderpipe-reservation
refuses "a negative INTAKE_MAX_QUEUE_DEPTH" "INTAKE_MAX_QUEUE_DEPTH" INTAKE_MAX_QUEUE_DEPTH=-1 -- orderpipe-intake
refuses "a malformed INTAKE_MAX_OUTBOX_ROWS" "INTAKE_MAX_OUTBOX_ROWS" INTAKE_MAX_OUTBOX_ROWS=lots -- orderpipe-intake
refuses "redrive without DATABASE_URL" "needs DATABASE_URL" DATABASE_URL= -- orderpipe-replay redrive 00000000-0000-4000-8000-000000000000

# The probe's publish-rate: a window of 8 is used and reported; bad windows and options refused.
orderpipe-amqp-probe publish-rate 40 --window 8 --size 100 > "$TEST_TMP/rate.json" 2>&1
check_eq "publish-rate --window 8 runs" 0 "$?"
check_eq "and reports its window and size" "8 100 40" "$(jq -r '"\(.window) \(.size) \(.published)"' "$TEST_TMP/rate.json")"
for bad in "--window 0" "--window" "--window x" "--speed 3"; do
  orderpipe-amqp-probe publish-rate 10 $bad > "$TEST_TMP/rate.out" 2>&1
  check_eq "publish-rate $bad is refused with status 2" 2 "$?"
  check "and the usage is shown" grep -q "usage: orderpipe-amqp-probe" "$TEST_TMP/rate.out"
done

# Three delays for four tiers: said so, and the default TTLs are declared.
ORDERPIPE_RETRY_DELAYS=100,200,300 orderpipe-amqp-probe declare > "$TEST_TMP/declare.out" 2>&1
check "a malformed ORDERPIPE_RETRY_DELAYS is reported" grep -q "ORDERPIPE_RETRY_DELAYS must be 4 comma-separated" "$TEST_TMP/declare.out"
check_eq "and the first tier keeps its default TTL" 1000 \
  "$(mgmt GET "/queues/$RABBITMQ_VHOST/reservation.retry.1" | jq '.arguments["x-message-ttl"]')"
test_done
