#!/usr/bin/env bash
# Set-based batches: a worker handles a batch of deliveries with a few statements for
# the whole batch, and one bad message still cannot sink the batch:
#  - a message the set handler gives up on (a payment for an unknown order) is dead-lettered
#    alone, in the same set-based transaction, and its inbox row does not stay;
#  - a message that makes the whole set-based statement fail (an order.placed whose placed_at the
#    schema accepts but PostgreSQL refuses: year 0) rolls the batch back, the worker handles the
#    batch one message at a time, and only that message is dead-lettered.
# A batch whose order.placed is a repeat, beside a fresh payment.succeeded, still sells the stock.
# Every other order of the batches is confirmed and every invariant holds.
source "$(dirname "$0")/lib.sh"
pipeline_env
P=$ROOT/scripts/pipeline
on_exit '"$P" down >/dev/null 2>&1'

"$ROOT/scripts/stock" set SKU-S 100 >/dev/null
check "pipeline starts without the reservation worker" "$P" up reservation=0

place_orders() { # N TAG: N orders of SKU-S over HTTP
  local i
  for i in $(seq 1 "$1"); do place_order SKU-S "set-$2-$i-$RANDOM" || return 1; done
}
confirmed() { [ "$(sql "select count(*) from orders where status = 'confirmed'")" = "$1" ]; }
fallbacks() { cat "$ORDERPIPE_RUN_DIR"/logs/reservation.*.log 2>/dev/null | grep -c "handling them one by one"; }
inbox_has() { sql "select count(*) from inbox where consumer = 'reservation' and message_id = '$1'"; }
# batch_with_one_bad TAG WHAT TYPE MSG_ID ORDER_ID DATA_JSON: 10 orders placed while the
# reservation worker is away, a crafted TYPE event (WHAT, in the checks' words) queued behind them,
# then the worker back: the 10 are confirmed and the crafted one alone is dead-lettered. The
# dead letters' listing is left in $TEST_TMP/list-TAG.txt.
batch_with_one_bad() {
  local tag=$1 what=$2 type=$3 msg=$4 order=$5 data=$6 confirmed_before dead_before
  confirmed_before=$(sql "select count(*) from orders where status = 'confirmed'")
  dead_before=$(queue_messages reservation.dlq)
  "$P" scale reservation=0 >/dev/null
  check "10 orders are placed while the reservation worker is away ($tag)" place_orders 10 "$tag"
  orderpipe-amqp-probe publish "$type" "$(cloud_event "$type" "$msg" "$order" "$data")" \
    --message-id "$msg" >/dev/null
  check_eq "they and $what wait in one queue" 11 "$(queue_messages reservation)"
  "$P" scale reservation=1 >/dev/null
  check "the 10 orders are confirmed ($tag)" wait_for 120 confirmed $((confirmed_before + 10))
  check "$what is dead-lettered" wait_for 60 queue_has reservation.dlq $((dead_before + 1))
  "$ROOT/scripts/replay" list --queue reservation > "$TEST_TMP/list-$tag.txt"
  cat "$TEST_TMP/list-$tag.txt"
  check "$what is listed with handler_refused" grep -q "$msg .*handler_refused" "$TEST_TMP/list-$tag.txt"
}

# --- a message the set handler gives up on ---
ghost=aaaaaaaa-0000-4000-8000-000000000001 ghost_msg=aaaaaaaa-0000-4000-8000-0000000000e1
batch_with_one_bad a "a payment for an unknown order" payment.succeeded "$ghost_msg" "$ghost" \
  "{\"order_id\":\"$ghost\",\"amount\":500,\"currency\":\"EUR\",\"provider_ref\":\"x\"}"
check "its error names the unknown order" grep -q "payment for unknown order $ghost" "$TEST_TMP/list-a.txt"
check_eq "its inbox row did not stay" 0 "$(inbox_has "$ghost_msg")"
check_eq "the batch was not redone one by one" 0 "$(fallbacks)"

# --- a message that fails the whole set-based statement ---
bad=bbbbbbbb-0000-4000-8000-000000000002 bad_msg=bbbbbbbb-0000-4000-8000-0000000000e2
batch_with_one_bad b "an order PostgreSQL refuses" order.placed "$bad_msg" "$bad" \
  "{\"order_id\":\"$bad\",\"client_id\":\"t\",\"customer_id\":\"c-1\",\"currency\":\"EUR\",\"lines\":[{\"sku\":\"SKU-S\",\"quantity\":1,\"unit_price\":500}],\"total\":500,\"notify\":{},\"placed_at\":\"0000-01-01T00:00:00Z\"}"
check "its error is PostgreSQL's" grep -q "out of range" "$TEST_TMP/list-b.txt"
check_eq "the batch was redone one message at a time, once" 1 "$(fallbacks)"
check_eq "the refused order left no row" 0 "$(sql "select count(*) from orders where id = '$bad'")"
check_eq "nor an inbox row" 0 "$(inbox_has "$bad_msg")"
check_eq "stock: 20 sold, 80 available, none reserved" "80|0|20" \
  "$(sql "select available || '|' || reserved || '|' || sold from inventory where sku = 'SKU-S'")"

# --- a batch whose only order.placed is a duplicate, beside a fresh payment.succeeded: no placed
# handler runs, so the payment's handler takes the SKU locks itself (reservation.c) ---
"$P" scale payment=0 >/dev/null
check "one more order is placed" place_orders 1 c
recorded() { [ "$(sql "select count(*) from orders")" = 21 ]; }
check "it is recorded" wait_for 30 recorded
late=$(sql "select id from orders where status <> 'confirmed'")
reserved() { [ "$(sql "select status from orders where id = '$late'")" = "$1" ]; }
check "it is reserved while the payment worker is away" wait_for 30 reserved reserved
"$P" scale reservation=0 >/dev/null
"$P" scale payment=1 >/dev/null
waiting() { [ "$(queue_messages reservation)" = 1 ]; }
check "its payment.succeeded waits for the reservation worker" wait_for 30 waiting
seen_msg=$(sql "select message_id from inbox where consumer = 'reservation' order by received_at limit 1")
seen_order=$(sql "select id from orders where status = 'confirmed' limit 1")
orderpipe-amqp-probe publish order.placed \
  "$(cloud_event order.placed "$seen_msg" "$seen_order" "{\"order_id\":\"$seen_order\",\"client_id\":\"t\",\"customer_id\":\"c-1\",\"currency\":\"EUR\",\"lines\":[{\"sku\":\"SKU-S\",\"quantity\":1,\"unit_price\":500}],\"total\":500,\"notify\":{},\"placed_at\":\"2026-11-25T10:00:00Z\"}")" \
  --message-id "$seen_msg" >/dev/null
check_eq "beside it, an order.placed the worker has handled before" 2 "$(queue_messages reservation)"
"$P" scale reservation=1 >/dev/null
check "the order is confirmed" wait_for 30 reserved confirmed
check_eq "its stock is sold: 21 sold, 79 available, none reserved" "79|0|21" \
  "$(sql "select available || '|' || reserved || '|' || sold from inventory where sku = 'SKU-S'")"
check_eq "the repeat is dropped, not dead-lettered" 2 "$(queue_messages reservation.dlq)"
check_eq "and no batch fell back to one by one" 1 "$(fallbacks)"

check "the pipeline settles" wait_for 120 pipeline_idle
check_invariants "every invariant holds (the two refused messages sit in the DLQ with their reasons)"
test_done
