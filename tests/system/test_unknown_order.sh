#!/usr/bin/env bash
# Events for an order that was never recorded, as anyone holding the broker's credentials can
# publish them: the compensation worker dead-letters a payment.failed and a reservation.expired
# as unknown_order at once (no retries: no later attempt can find the order), records and emits
# nothing for them, and keeps handling the events of real orders.
source "$(dirname "$0")/lib.sh"
pipeline_env
export ORDERPIPE_RETRY_DELAYS=100,200,300,400
P=$ROOT/scripts/pipeline R=$ROOT/scripts/replay
on_exit '"$P" down >/dev/null 2>&1'

uuid() { cat /proc/sys/kernel/random/uuid; }
event() { # TYPE EVENT_ID ORDER_ID DATA_JSON -> a CloudEvent
  jq -cn --arg t "$1" --arg id "$2" --arg o "$3" --argjson d "$4" \
    '{specversion:"1.0", id:$id, source:"test", type:$t, time:"2026-11-25T10:00:00Z", orderid:$o, data:$d}'
}
publish() { orderpipe-amqp-probe publish "$@" >/dev/null; } # KEY BODY [--message-id ID]
# dead_reason MESSAGE_ID REASON ERROR_REGEX: the message is in a DLQ with that reason and error.
dead_reason() {
  "$R" show "$1" > "$TEST_TMP/show-$1.txt" 2>&1
  grep -Eq "\"x-dead-reason\": *\"$2\"" "$TEST_TMP/show-$1.txt" &&
    grep -Eq "\"x-last-error\": *\".*$3" "$TEST_TMP/show-$1.txt" &&
    grep -Eq "\"x-attempts\": *\"?1\"?[,}]?$" "$TEST_TMP/show-$1.txt"
}
two_dead() { [ "$(queue_messages compensation.dlq)" = 2 ]; }

"$ROOT/scripts/stock" set SKU-U 10 >/dev/null
check "the topology is declared" orderpipe-amqp-probe declare
ghost_pay=$(uuid) ghost_exp=$(uuid)
publish payment.failed \
  "$(event payment.failed "$(uuid)" "$ghost_pay" "{\"order_id\":\"$ghost_pay\",\"reason\":\"declined\",\"message\":\"no\"}")" \
  --message-id ghost-payment-failed
publish reservation.expired \
  "$(event reservation.expired "$(uuid)" "$ghost_exp" "{\"order_id\":\"$ghost_exp\"}")" \
  --message-id ghost-expired
check "pipeline starts" "$P" up
check "both events are dead-lettered" wait_for 60 two_dead
check "the payment.failed as unknown_order, at its first attempt, naming the order" \
  dead_reason ghost-payment-failed unknown_order "payment.failed for unknown order $ghost_pay"
cat "$TEST_TMP/show-ghost-payment-failed.txt"
check "the reservation.expired as unknown_order, at its first attempt, naming the order" \
  dead_reason ghost-expired unknown_order "reservation.expired for unknown order $ghost_exp"
check_eq "no order was recorded for them" 0 \
  "$(sql "select count(*) from orders where id in ('$ghost_pay', '$ghost_exp')")"
check_eq "nothing was emitted for them" 0 \
  "$(sql "select count(*) from outbox where aggregate_id in ('$ghost_pay', '$ghost_exp')")"
check "a real order is still confirmed" place_order SKU-U "unknown-order-$RANDOM"
confirmed() { [ "$(sql "select count(*) from orders where status = 'confirmed'")" = 1 ]; }
check "and reaches confirmed" wait_for 60 confirmed
check "the pipeline goes idle" wait_for 60 pipeline_idle
check_invariants "every invariant holds"
test_done
