#!/usr/bin/env bash
# Messages crafted outside the pipeline (anyone with the broker's credentials can publish). An
# event whose orderid is not a UUID is dead-lettered at once as invalid, with its reason, before
# it reaches the handlers (whose cast of the batch's order ids to uuid would fail the whole batch).
# An x-attempt header of 0 or less counts as a first attempt (it names no retry tier), and one past
# the last tier as the last attempt: either can still be retried or dead-lettered.
source "$(dirname "$0")/lib.sh"
pipeline_env
export ORDERPIPE_RETRY_DELAYS=100,200,300,400
P=$ROOT/scripts/pipeline R=$ROOT/scripts/replay
on_exit '"$P" down >/dev/null 2>&1'
"$ROOT/scripts/stock" set SKU-C 100 >/dev/null
check "pipeline starts" "$P" up

check "an order.placed whose orderid is not a UUID is published" orderpipe-amqp-probe publish order.placed \
  "$(cloud_event order.placed 55555555-5555-4555-8555-555555555555 order-1 '{}')" --message-id crafted-1
for i in 1 2 3 4 5; do place_order SKU-C "crafted-$i-$RANDOM" & done
wait
check "it is dead-lettered" wait_for 60 queue_has reservation.dlq 1
"$R" list --queue reservation > "$TEST_TMP/list.txt"
check "as an invalid message" grep -q "crafted-1 .* invalid_message" "$TEST_TMP/list.txt"
"$R" show crafted-1 > "$TEST_TMP/show.txt"
check "whose orderid must be a UUID" grep -q "x-last-error.*'orderid' must be a UUID" "$TEST_TMP/show.txt"
confirmed() { [ "$(sql "select count(*) from orders where status = 'confirmed'")" = 5 ]; }
check "the five orders placed with it are confirmed" wait_for 120 confirmed
check_eq "none of them was retried" 0 \
  "$(cat "$ORDERPIPE_RUN_DIR"/logs/reservation.*.log | grep -c 'retrying through')"

unknown=77777777-7777-4777-8777-777777777777
cancel_unknown() { # EVENT_ID MESSAGE_ID X_ATTEMPT: a cancel request for an order that does not exist
  orderpipe-amqp-probe publish order.cancel_requested "$(cloud_event order.cancel_requested "$1" "$unknown" \
    "{\"order_id\":\"$unknown\",\"requested_at\":\"2026-11-25T10:00:00Z\",\"client_id\":\"t\"}")" \
    --message-id "$2" --header "x-attempt=$3"
}
exhausted_after_5() { "$R" list --queue compensation | grep -Eq "$1 .* retries_exhausted +5 "; }
check "a cancel request for an unknown order with x-attempt 0 is published" \
  cancel_unknown 66666666-6666-4666-8666-666666666666 crafted-2 0
check "it goes through the retry tiers to the dead-letter queue" wait_for 120 queue_has compensation.dlq 1
check "after its 5 attempts" exhausted_after_5 crafted-2
check_eq "its first retry went through tier 1" 1 \
  "$(cat "$ORDERPIPE_RUN_DIR"/logs/compensation.*.log | grep -c 'attempt 1 failed, retrying through compensation.retry.1')"
check "one with x-attempt 99 is published" cancel_unknown 88888888-8888-4888-8888-888888888888 crafted-3 99
check "it is dead-lettered at once" wait_for 120 queue_has compensation.dlq 2
check "counted as its last attempt, 5" exhausted_after_5 crafted-3
check_eq "no delivery was given back" 0 \
  "$(cat "$ORDERPIPE_RUN_DIR"/logs/*.log | grep -c 'goes back to its queue')"
check_invariants "every invariant holds"
test_done
