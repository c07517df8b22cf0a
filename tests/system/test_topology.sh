#!/usr/bin/env bash
# The topology as the broker sees it, read back through the management API: every queue the
# pipeline declares is a quorum queue (work queues, retry tiers and dead-letter queues alike, so
# a message waiting in any of them survives a node's loss), each retry tier carries its TTL and
# dead-letters back to its work queue at least once, and the work queues are bound to their keys.
# Declaring a second time changes nothing.
source "$(dirname "$0")/lib.sh"

check "the topology is declared" orderpipe-amqp-probe declare
check "and declared again (idempotent)" orderpipe-amqp-probe declare

queues() { mgmt GET "/queues/$RABBITMQ_VHOST?columns=name,type,arguments" > "$TEST_TMP/queues.json"; }
all_listed() { queues && [ "$(jq length "$TEST_TMP/queues.json")" -ge 24 ]; }
check "the management API lists the 24 queues" wait_for 30 all_listed
q() { jq -c --arg n "$1" ".[] | select(.name == \$n) | $2" "$TEST_TMP/queues.json"; }

check_eq "no queue of another type" "[]" \
  "$(jq -c '[.[] | select(.type != "quorum") | .name]' "$TEST_TMP/queues.json")"
delays=(1000 5000 30000 120000)
for queue in reservation payment notification compensation; do
  check_eq "$queue is a quorum queue" '"quorum"' "$(q "$queue" .type)"
  check_eq "$queue.dlq is a quorum queue" '"quorum"' "$(q "$queue.dlq" .type)"
  for tier in 1 2 3 4; do
    r=$queue.retry.$tier
    check_eq "$r is a quorum queue" '"quorum"' "$(q "$r" .type)"
    check_eq "$r waits ${delays[tier - 1]} ms, then dead-letters to $queue at least once" \
      "{\"x-dead-letter-exchange\":\"\",\"x-dead-letter-routing-key\":\"$queue\",\"x-dead-letter-strategy\":\"at-least-once\",\"x-message-ttl\":${delays[tier - 1]},\"x-overflow\":\"reject-publish\",\"x-queue-type\":\"quorum\"}" \
      "$(q "$r" '.arguments' | jq -cS .)"
  done
done

keys() { # QUEUE -> its binding keys from orderpipe.events, sorted, comma-separated
  mgmt GET "/queues/$RABBITMQ_VHOST/$1/bindings" |
    jq -r '[.[] | select(.source == "orderpipe.events") | .routing_key] | sort | join(",")'
}
check_eq "reservation's bindings" "order.placed,payment.succeeded" "$(keys reservation)"
check_eq "payment's bindings" "payment.notified,payment.refund_requested,stock.reserved" "$(keys payment)"
check_eq "notification's bindings" "order.cancelled,order.confirmed" "$(keys notification)"
check_eq "compensation's bindings" "order.cancel_requested,payment.failed,reservation.expired" \
  "$(keys compensation)"
check_eq "the events exchange is a durable topic exchange" '{"durable":true,"type":"topic"}' \
  "$(mgmt GET "/exchanges/$RABBITMQ_VHOST/orderpipe.events" | jq -cS '{durable, type}')"
test_done
