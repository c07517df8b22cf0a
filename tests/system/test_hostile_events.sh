#!/usr/bin/env bash
# Hostile events: what anyone holding the broker's credentials, or a hostile payment
# provider, can send the workers. Each case is dead-lettered with its reason and changes nothing
# in the database, or (the provider's answers) ends its order normally:
#   - a cancel request naming another client than the order's owner: not_order_owner;
#   - a cancel request for an order that does not exist: retried, then retries_exhausted;
#   - an order.placed whose total does not match its lines, or that overflows: invalid_order /
#     invalid_message; lines out of bounds: schema_violation, and reservation_place (SQL) refuses
#     them as well when called with them directly;
#   - a 3 KB CloudEvent id (before: it overflowed the inbox index and failed its whole batch, whose
#     other messages went round the retries), a 3 KB type, a 3 KB subject (which is not the order id): invalid_message;
#   - a decline whose message is 500 x "é" (before: cut mid-character, the payment.failed event
#     could not be built and the order went round the retries): cancelled payment_declined;
#   - a 4000-byte provider reference (before: written into a 128-byte buffer with the size of a
#     256-byte one), and one with control characters: confirmed, the reference cut and cleaned;
#   - a refund request for a confirmed order: order_not_cancelled, nothing refunded;
#   - a customer id of 64 x "é" (128 bytes; before: cut mid-character at 71 bytes, so the order's
#     order.cancelled carried empty data and its notification was dead-lettered).
source "$(dirname "$0")/lib.sh"
pipeline_env
provider_port=$((intake_port + 1))
export ORDERPIPE_RETRY_DELAYS=100,200,300,400
export PAYMENT_PROVIDER=http PAYMENT_URL=http://127.0.0.1:$provider_port PAYMENT_TIMEOUT_MS=2000
P=$ROOT/scripts/pipeline R=$ROOT/scripts/replay
on_exit '"$P" down >/dev/null 2>&1'

start_bg provider fake-provider "127.0.0.1:$provider_port" "$TEST_TMP/ledger.jsonl"
provider_up() { curl -fsS -m 5 -X POST "$PAYMENT_URL/_control?stall_ms=0" >/dev/null; }
check "the fake provider is up" wait_for 10 provider_up
"$ROOT/scripts/stock" set SKU-H 10 >/dev/null
"$ROOT/scripts/stock" set SKU-P 100 >/dev/null
"$ROOT/scripts/stock" set SKU-OOS 0 >/dev/null
check "the topology is declared" orderpipe-amqp-probe declare

uuid() { cat /proc/sys/kernel/random/uuid; }
# event TYPE ID ORDER_ID DATA_JSON [EXTRA_ENVELOPE_JSON]: a CloudEvent as the workers expect it.
event() {
  jq -cn --arg type "$1" --arg id "$2" --arg oid "$3" --argjson data "$4" --argjson extra "${5:-{\}}" \
    '{specversion: "1.0", id: $id, source: "t", type: $type, time: "2026-11-25T10:00:00Z",
      orderid: $oid, data: $data} + $extra'
}
# placed ORDER_ID TOTAL LINES_JSON: order.placed data of client "shop-a".
placed() {
  jq -cn --arg oid "$1" --argjson total "$2" --argjson lines "$3" \
    '{order_id: $oid, client_id: "shop-a", customer_id: "c-1", currency: "EUR", lines: $lines,
      total: $total, notify: {}, placed_at: "2026-11-25T10:00:00Z"}'
}
publish() { orderpipe-amqp-probe publish "$@" >/dev/null; } # KEY BODY [--message-id ID]...
show() { "$R" show "$1" > "$TEST_TMP/show-$1.txt" 2>&1; cat "$TEST_TMP/show-$1.txt"; }
# dead_reason MESSAGE_ID REASON ERROR_REGEX: the message is in a DLQ with that reason and error.
dead_reason() {
  show "$1" | grep -Eq "\"x-dead-reason\": *\"$2\"" &&
    grep -Eq "\"x-last-error\": *\".*$3" "$TEST_TMP/show-$1.txt"
}
inventory() { sql "select sku || ':' || available || '/' || reserved || '/' || sold from inventory order by sku" | tr '\n' ' '; }
line() { echo "{\"sku\":\"$1\",\"quantity\":$2,\"unit_price\":$3}"; }

# --- crafted order.placed, published before the workers start so they arrive in one batch ----
good=() ; for i in 1 2 3; do good+=("$(uuid)"); done
bad_total=$(uuid) big_total=$(uuid) q0=$(uuid) qneg=$(uuid) qbig=$(uuid) qfrac=$(uuid)
long_id=$(uuid) long_type=$(uuid) long_subject=$(uuid)
# Random, so that PostgreSQL cannot compress it under the index's row size limit.
k3=$(head -c 3000 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9' | head -c 3000)
# jq (1.6) would round these numbers: they are written in after it.
huge() { sed 's/"total":777/"total":99999999999999999999/; s/"quantity":222/"quantity":2.0/'; }
publish order.placed "$(event order.placed "$(uuid)" "${good[0]}" "$(placed "${good[0]}" 1000 "[$(line SKU-P 2 500)]")")" --message-id good-1
publish order.placed "$(event order.placed "$k3" "$long_id" "$(placed "$long_id" 500 "[$(line SKU-P 1 500)]")")" --message-id long-id
publish order.placed "$(event order.placed "$(uuid)" "${good[1]}" "$(placed "${good[1]}" 500 "[$(line SKU-P 1 500)]")")" --message-id good-2
publish order.placed "$(event order.placed "$(uuid)" "$bad_total" "$(placed "$bad_total" 999 "[$(line SKU-P 2 500)]")")" --message-id bad-total
publish order.placed "$(event order.placed "$(uuid)" "$big_total" "$(placed "$big_total" 777 "[$(line SKU-P 1 500)]")" | huge)" --message-id big-total
publish order.placed "$(event order.placed "$(uuid)" "$q0" "$(placed "$q0" 500 "[$(line SKU-P 0 500)]")")" --message-id q-zero
publish order.placed "$(event order.placed "$(uuid)" "$qneg" "$(placed "$qneg" 500 "[$(line SKU-P -1 500)]")")" --message-id q-negative
publish order.placed "$(event order.placed "$(uuid)" "$qbig" "$(placed "$qbig" 500500 "[$(line SKU-P 1001 500)]")")" --message-id q-big
publish order.placed "$(event order.placed "$(uuid)" "$long_type" "$(placed "$long_type" 500 "[$(line SKU-P 1 500)]")" "{\"type\":\"order.$k3\"}")" --message-id long-type
publish order.placed "$(event order.placed "$(uuid)" "$long_subject" "$(placed "$long_subject" 500 "[$(line SKU-P 1 500)]")" "{\"subject\":\"$k3\"}")" --message-id long-subject
publish order.placed "$(event order.placed "$(uuid)" "${good[2]}" "$(placed "${good[2]}" 1500 "[$(line SKU-P 1 500),$(line SKU-P 2 500)]")")" --message-id good-3
check_eq "eleven crafted order.placed wait in the reservation queue" 11 "$(queue_messages reservation)"

# A pending order of client shop-a holding 2 of SKU-H, as the reservation would have left it.
owned=$(uuid)
sql "update inventory set available = 8, reserved = 2 where sku = 'SKU-H';
     insert into orders(id, client_id, customer_id, currency, total, payment_token, placed_at, state_deadline)
       values ('$owned', 'shop-a', 'c-1', 'EUR', 1000, 'tok_ok', now(), now() + interval '1 hour');
     insert into order_lines values ('$owned', 1, 'SKU-H', 2, 500);
     insert into reservations(order_id, sku, quantity, expires_at) values ('$owned', 'SKU-H', 2, now() + interval '1 hour');" >/dev/null

check "pipeline starts" "$P" up

confirmed_good() { [ "$(sql "select count(*) from orders where status = 'confirmed' and id in ('${good[0]}','${good[1]}','${good[2]}')")" = 3 ]; }
check "the three good orders of the batch are confirmed" wait_for 60 confirmed_good
eight() { [ "$(queue_messages reservation.dlq)" = 8 ]; }
check "the eight crafted ones are dead-lettered" wait_for 30 eight
check_eq "nothing of the batch was retried" 0 \
  "$(cat "$ORDERPIPE_RUN_DIR"/logs/reservation.*.log | grep -c 'retrying through')"
check "a 3 KB id: invalid_message, naming the id" dead_reason long-id invalid_message "attribute 'id' is 3000 bytes long"
check "a 3 KB type: invalid_message" dead_reason long-type invalid_message "attribute 'type' is 3006 bytes long"
check "a 3 KB subject: invalid_message" dead_reason long-subject invalid_message "attributes 'subject' and 'orderid' name different orders"
check "a total that does not match its lines: invalid_order" \
  dead_reason bad-total invalid_order "total: 999 does not match its lines, which add up to 1000"
check "a total past bigint: invalid_message" dead_reason big-total invalid_message "invalid JSON"
check "quantity 0: schema_violation" dead_reason q-zero schema_violation "data\\.lines\\[0\\]\\.quantity"
check "quantity -1: schema_violation" dead_reason q-negative schema_violation "data\\.lines\\[0\\]\\.quantity"
check "quantity 1001: schema_violation" dead_reason q-big schema_violation "data\\.lines\\[0\\]\\.quantity"
check_eq "none of the eight was recorded" 0 \
  "$(sql "select count(*) from orders where id in ('$bad_total','$big_total','$q0','$qneg','$qbig','$long_id','$long_type','$long_subject')")"
check_eq "the recorded totals are their lines'" "500 1000 1500" \
  "$(sql "select string_agg(total::text, ' ' order by total) from orders where id in ('${good[0]}','${good[1]}','${good[2]}')")"
check_eq "and charged so" 3000 \
  "$(sql "select sum(amount) from payments where order_id in ('${good[0]}','${good[1]}','${good[2]}')")"
check_eq "SKU-P sold only the good orders' 6 units" "SKU-P:94/0/6" "$(inventory | grep -o 'SKU-P:[^ ]*')"

# --- reservation_place itself refuses what the schema would (a second layer) ----------------
ord() { jq -cn --arg id "$1" --argjson d "$2" '{id: $id, tp: null, d: $d}'; }
direct() { # DATA_JSON: reservation_place's outcome and reason for one order
  psql -X -q -tA -F '|' -v ON_ERROR_STOP=1 "$DATABASE_URL" -v orders="[$(ord "$(uuid)" "$1" | huge)]" \
    <<< "select outcome, reason from reservation_place(:'orders'::json, 600)"
}
before=$(inventory) orders_before=$(sql "select count(*) from orders")
check "SQL: quantity 0 is refused" grep -q "^invalid|lines\[0\].quantity: 0 is not in 1..1000$" <<< "$(direct "$(placed x 0 "[$(line SKU-P 0 500)]")")"
check "SQL: quantity -3 is refused" grep -q "^invalid|lines\[0\].quantity: -3 is not in" <<< "$(direct "$(placed x -1500 "[$(line SKU-P -3 500)]")")"
check "SQL: quantity 1001 is refused" grep -q "^invalid|lines\[0\].quantity: 1001 is not in" <<< "$(direct "$(placed x 500500 "[$(line SKU-P 1001 500)]")")"
check "SQL: quantity 2.0 is refused" grep -q "^invalid|lines\[0\].quantity: must be an integer$" <<< "$(direct "$(placed x 1000 "[$(line SKU-P 222 500)]")")"
check "SQL: unit_price 0 is refused" grep -q "^invalid|lines\[1\].unit_price: 0 is not in" <<< "$(direct "$(placed x 500 "[$(line SKU-P 1 500),$(line SKU-P 1 0)]")")"
check "SQL: unit_price past its bound is refused" grep -q "^invalid|lines\[0\].unit_price: 100000001 is not in" <<< "$(direct "$(placed x 100000001 "[$(line SKU-P 1 100000001)]")")"
check "SQL: a total that overflows bigint is refused" grep -q "^invalid|total: 99999999999999999999 does not match" <<< "$(direct "$(placed x 777 "[$(line SKU-P 1 500)]")")"
check "SQL: a total off by one is refused" grep -q "^invalid|total: 1001 does not match its lines, which add up to 1000$" <<< "$(direct "$(placed x 1001 "[$(line SKU-P 2 500)]")")"
check "SQL: no lines is refused" grep -q "^invalid|lines: must be an array of 1 to 100 lines$" <<< "$(direct "$(placed x 1 "[]")")"
check_eq "SQL: none of them was recorded" "$orders_before" "$(sql "select count(*) from orders")"
check_eq "SQL: no stock moved" "$before" "$(inventory)"

# --- forged cancel requests ----------------------------------------------------------------
cancel() { # ORDER_ID CLIENT_ID
  event order.cancel_requested "$(uuid)" "$1" \
    "{\"order_id\":\"$1\",\"requested_at\":\"2026-11-25T10:00:00Z\",\"client_id\":\"$2\"}"
}
before=$(inventory)
publish order.cancel_requested "$(cancel "$owned" shop-b)" --message-id forged-cancel
dead_owner() { [ "$(queue_messages compensation.dlq)" = 1 ]; }
check "a cancel request of another client is dead-lettered" wait_for 30 dead_owner
check "as not_order_owner, naming the requester" \
  dead_reason forged-cancel not_order_owner "cancel requested by client 'shop-b', not the order's owner"
check_eq "the order is still pending" pending "$(sql "select status from orders where id = '$owned'")"
check_eq "its stock is still held" "$before" "$(inventory)"
check_eq "nothing was refunded or emitted for it" 0 \
  "$(sql "select count(*) from outbox where aggregate_id = '$owned'")"
publish order.cancel_requested "$(cancel "$owned" "")" --message-id empty-client
two_dead() { [ "$(queue_messages compensation.dlq)" = 2 ]; }
check "one naming no client (empty) is dead-lettered" wait_for 30 two_dead
check "as a schema violation" dead_reason empty-client schema_violation "data\\.client_id"
publish order.cancel_requested "$(cancel "$owned" shop-a)" --message-id owner-cancel
cancelled() { [ "$(sql "select status || ' ' || cancel_reason from orders where id = '$owned'")" = "cancelled customer_cancelled" ]; }
check "the owner's own request cancels it" wait_for 30 cancelled
check_eq "and releases its stock" "SKU-H:10/0/0" "$(inventory | grep -o 'SKU-H:[^ ]*')"
nobody=$(uuid)
publish order.cancel_requested "$(cancel "$nobody" shop-a)" --message-id unknown-cancel
three_dead() { [ "$(queue_messages compensation.dlq)" = 3 ]; }
check "a cancel request for an unknown order ends in the DLQ" wait_for 60 three_dead
check "after its retries, saying why" dead_reason unknown-cancel retries_exhausted "not recorded yet"
check_eq "and records nothing" 0 "$(sql "select count(*) from orders where id = '$nobody'")"

# --- hostile provider answers and multibyte ids, through the intake -------------------------
post() { # TOKEN CUSTOMER_ID SKU -> order id
  curl -fsS -X POST "$INTAKE_URL/v1/orders" -H "Authorization: Bearer $ORDERPIPE_API_KEY" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: hostile-$1-$3-$RANDOM" \
    --data-binary "{\"customer_id\":\"$2\",\"currency\":\"EUR\",\"lines\":[{\"sku\":\"$3\",\"quantity\":1,\"unit_price\":700}],\"payment\":{\"token\":\"$1\"},\"notify\":{\"email\":\"a@example.com\"}}" |
    jq -r .order_id
}
e500=$(printf 'é%.0s' $(seq 500)) e64=$(printf 'é%.0s' $(seq 64))
declined=$(post tok_decline_long c-1 SKU-P)
longref=$(post tok_long_ref c-1 SKU-P)
ctlref=$(post tok_ctl_ref c-1 SKU-P)
oos=$(post tok_ok "$e64" SKU-OOS)
state() { sql "select status || ' ' || coalesce(cancel_reason, '-') from orders where id = '$1'"; }
is_state() { [ "$(state "$1")" = "$2" ]; }
check "a decline with a 500 x é message cancels its order as payment_declined" \
  wait_for 60 is_state "$declined" "cancelled payment_declined"
msg=$(sql "select last_error from payments where order_id = '$declined'")
check "the decline message is kept, cut on a character boundary" \
  grep -Eq '^provider /charges answered 402: (é)+$' <<< "$msg"
check "within its 255 bytes" test "$(printf %s "$msg" | wc -c)" -le 255
check_eq "the decline was not retried" 0 \
  "$(cat "$ORDERPIPE_RUN_DIR"/logs/payment.*.log | grep "$declined" | grep -c 'retrying through')"
check "a 4000-byte provider reference: the order is confirmed" wait_for 60 is_state "$longref" "confirmed -"
check_eq "its reference is cut to 127 bytes" 127 \
  "$(sql "select octet_length(provider_ref) from payments where order_id = '$longref'")"
check "a reference with control characters: the order is confirmed" wait_for 60 is_state "$ctlref" "confirmed -"
check_eq "its reference is cleaned" 'ch_??[31m?€?_end' \
  "$(sql "select provider_ref from payments where order_id = '$ctlref'")"
check "an order of customer 64 x é out of stock is cancelled" wait_for 60 is_state "$oos" "cancelled out_of_stock"
cust_in_event() {
  [ "$(sql "select payload from outbox where aggregate_id = '$oos' and routing_key = 'order.cancelled'" |
       jq -r .data.customer_id)" = "$e64" ]
}
check "its order.cancelled carries the whole customer id" cust_in_event
notified() { [ "$(sql "select count(*) from notifications where order_id = '$oos' and sent_at is not null")" = 1 ]; }
check "and its customer is notified" wait_for 30 notified
check_eq "nothing reached the notification DLQ" 0 "$(queue_messages notification.dlq)"
check_eq "nor the payment DLQ" 0 "$(queue_messages payment.dlq)"

# --- a forged refund request for a confirmed order --------------------------------------------
publish payment.refund_requested "$(event payment.refund_requested "$(uuid)" "${good[0]}"   "{\"order_id\":\"${good[0]}\",\"amount\":1000,\"reason\":\"order_cancelled\"}")" --message-id forged-refund
refund_dead() { [ "$(queue_messages payment.dlq)" = 1 ]; }
check "a refund request for a confirmed order is dead-lettered" wait_for 30 refund_dead
check "as order_not_cancelled" dead_reason forged-refund order_not_cancelled "refund requested for an order that is confirmed"
check_eq "its payment stands" "succeeded 0" \
  "$(sql "select status || ' ' || refunded_amount from payments where order_id = '${good[0]}'")"
check_eq "the provider refunded nothing" 0 "$(grep -c '"kind":"refund"' "$TEST_TMP/ledger.jsonl")"
check "every worker is still running" eval '"$P" status > "$TEST_TMP/status.txt"'
check "the pipeline goes idle" wait_for 60 pipeline_idle

# The provider's books stand in for the sim ledger, so invariant 4 is checked against them.
sql "truncate sim_provider_ledger"
jq -r '[.key, .order_id, .kind, .amount] | @csv' "$TEST_TMP/ledger.jsonl" > "$TEST_TMP/ledger.csv"
psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" \
  -c "\\copy sim_provider_ledger(key, order_id, kind, amount) from '$TEST_TMP/ledger.csv' csv"
check_invariants "every invariant holds"
test_done
