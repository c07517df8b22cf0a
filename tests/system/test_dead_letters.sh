#!/usr/bin/env bash
# Dead letters and replay: poison messages go straight to the DLQ with their reason; an
# order whose payment provider is down is retried through the tiers, then dead-lettered with the
# reason, last error and attempt count; `scripts/replay list/show` shows it; once the provider is
# back, `requeue` completes the order, and a second requeue does nothing. `redrive` restarts an
# order whose event was lost, and refuses terminal and unknown orders.
source "$(dirname "$0")/lib.sh"
pipeline_env
base=$intake_port
export ORDERPIPE_RETRY_DELAYS=100,200,300,400
export PAYMENT_PROVIDER=http PAYMENT_URL=http://127.0.0.1:$((base + 1)) PAYMENT_TIMEOUT_MS=300
# Every tier calls the provider (test_payment_pending covers the channel's circuit breaker).
export PAYMENT_BREAKER_FAILURES=1000
export RESERVATION_TTL=300s
P=$ROOT/scripts/pipeline R=$ROOT/scripts/replay
on_exit '"$P" down >/dev/null 2>&1'
"$ROOT/scripts/stock" set SKU-A 10 >/dev/null
check "pipeline starts" "$P" up

# --- poison: straight to the DLQ, never retried ---
orderpipe-amqp-probe publish order.placed 'this is not json' --message-id poison-1 >/dev/null
orderpipe-amqp-probe publish order.placed \
  '{"specversion":"1.0","id":"11111111-1111-4111-8111-111111111111","source":"t","type":"order.placed","time":"2026-11-25T10:00:00Z","orderid":"22222222-2222-4222-8222-222222222222","data":{"order_id":"22222222-2222-4222-8222-222222222222"}}' \
  --message-id poison-2 >/dev/null
orderpipe-amqp-probe publish order.placed \
  '{"specversion":"1.0","id":"33333333-3333-4333-8333-333333333333","source":"t","type":"order.exploded","time":"2026-11-25T10:00:00Z","orderid":"44444444-4444-4444-8444-444444444444","data":{}}' \
  --message-id poison-3 >/dev/null
three() { [ "$(queue_messages reservation.dlq)" = 3 ]; }
check "three poison messages are dead-lettered" wait_for 20 three
"$R" list --queue reservation > "$TEST_TMP/list1.txt"
cat "$TEST_TMP/list1.txt"
check "invalid JSON is listed with its reason" grep -q "poison-1 .* invalid_message" "$TEST_TMP/list1.txt"
check "a schema violation is listed with its reason" grep -q "poison-2 .*22222222-2222-4222-8222-222222222222 .*schema_violation" "$TEST_TMP/list1.txt"
check "an unknown type is listed with its reason" grep -q "poison-3 .* unknown_type" "$TEST_TMP/list1.txt"
check "poison was never retried" test "$(grep -c 'retrying through reservation' "$ORDERPIPE_RUN_DIR"/logs/reservation.*.log)" = 0
"$R" show poison-2 > "$TEST_TMP/show2.txt"
check "show names the failing path" grep -q "x-last-error.*data\.client_id" "$TEST_TMP/show2.txt"
check "show gives the original routing key" grep -q '"x-original-routing-key": *"order.placed"' "$TEST_TMP/show2.txt"
check_eq "show of an unknown message fails" 1 "$("$R" show no-such-id >/dev/null 2>&1; echo $?)"

# --- a transient failure that outlasts the retries ---
order=$(curl -fsS -X POST "$INTAKE_URL/v1/orders" -H "Authorization: Bearer $ORDERPIPE_API_KEY" \
  -H 'Content-Type: application/json' -H "Idempotency-Key: dlq-$RANDOM" \
  --data-binary '{"customer_id":"c-1","currency":"EUR","lines":[{"sku":"SKU-A","quantity":2,"unit_price":700}],"payment":{"token":"tok_ok"},"notify":{"email":"a@example.com"}}' |
  jq -r .order_id)
dead() { [ "$(queue_messages payment.dlq)" = 1 ]; }
check "the charge is retried through every tier, then dead-lettered" wait_for 30 dead
check_eq "each tier was tried" 4 "$(grep -h "retrying through payment.retry" "$ORDERPIPE_RUN_DIR"/logs/payment.*.log | grep -c "$order")"
check_eq "the order waits, reserved" reserved "$(sql "select status from orders where id = '$order'")"
"$R" list --queue payment > "$TEST_TMP/list2.txt"
cat "$TEST_TMP/list2.txt"
check "list shows the order, the reason and 5 attempts" grep -Eq "^payment +[^ ]+ +$order +retries_exhausted +5 " "$TEST_TMP/list2.txt"
check "list shows the last error" grep -q "provider /charges" "$TEST_TMP/list2.txt"
mid=$(awk -v o="$order" '$3 == o {print $2}' "$TEST_TMP/list2.txt")
"$R" show "$mid" > "$TEST_TMP/show.txt"
for h in x-dead-reason x-last-error x-attempts x-original-routing-key x-original-queue x-dead-at; do
  check "the dead letter carries $h" grep -q "\"$h\"" "$TEST_TMP/show.txt"
done
"$R" requeue --queue payment --dry-run > "$TEST_TMP/dry.txt" 2>&1
check "a dry run says what it would requeue" grep -q "would requeue $mid (order $order) to payment" "$TEST_TMP/dry.txt"
check_eq "a dry run moves nothing" 1 "$(queue_messages payment.dlq)"
"$R" requeue --reason no_such_reason > /dev/null 2>&1
check_eq "requeue by another reason moves nothing" 1 "$(queue_messages payment.dlq)"

# --- fix the cause, replay ---
start_bg provider fake-provider "127.0.0.1:$((base + 1))" "$TEST_TMP/ledger.jsonl"
up() { curl -fsS -X POST "$PAYMENT_URL/_control" >/dev/null 2>&1; }
wait_for 10 up
"$R" requeue --order "$order" > "$TEST_TMP/requeue.txt" 2>&1
cat "$TEST_TMP/requeue.txt"
check "requeue by order id moves the message back" grep -q "requeued $mid (order $order) to payment" "$TEST_TMP/requeue.txt"
is_confirmed() { [ "$(sql "select status from orders where id = '$order'")" = confirmed ]; }
check "the replayed order completes" wait_for 30 is_confirmed
check_eq "it was charged once" 1 "$(grep -c "\"order_id\":\"$order\",\"kind\":\"charge\"" "$TEST_TMP/ledger.jsonl")"
notified() { grep -q "\"order_id\":\"$order\",\"event\":\"order.confirmed\"" "$NOTIFY_LOG_FILE"; }
check "the customer is told" wait_for 20 notified
"$R" requeue --order "$order" > "$TEST_TMP/requeue2.txt" 2>&1
check "a second requeue finds nothing to move" grep -q "0 matched" "$TEST_TMP/requeue2.txt"
check_eq "the poison stays where it is" 3 "$(queue_messages reservation.dlq)"

# --- redrive: an order whose event was lost ---
"$P" scale payment=0 >/dev/null
lost=$(curl -fsS -X POST "$INTAKE_URL/v1/orders" -H "Authorization: Bearer $ORDERPIPE_API_KEY" \
  -H 'Content-Type: application/json' -H "Idempotency-Key: lost-$RANDOM" \
  --data-binary '{"customer_id":"c-2","currency":"EUR","lines":[{"sku":"SKU-A","quantity":1,"unit_price":900}],"payment":{"token":"tok_ok"},"notify":{"email":"b@example.com"}}' |
  jq -r .order_id)
reserved() { [ "$(sql "select status from orders where id = '$lost'")" = reserved ] && [ "$(queue_messages payment)" = 1 ]; }
check "a second order is reserved" wait_for 30 reserved
mgmt DELETE "/queues/$RABBITMQ_VHOST/payment/contents" >/dev/null   # its stock.reserved is lost
"$P" scale payment=1 >/dev/null
sleep 2
check_eq "without its event the order stays reserved" reserved "$(sql "select status from orders where id = '$lost'")"
check "redrive re-emits the order's last event" "$R" redrive "$lost"
lost_confirmed() { [ "$(sql "select status from orders where id = '$lost'")" = confirmed ]; }
check "the re-driven order completes" wait_for 30 lost_confirmed
check_eq "redrive refuses a terminal order" 1 "$("$R" redrive "$lost" >/dev/null 2>&1; echo $?)"
check_eq "redrive refuses an unknown order" 1 "$("$R" redrive 99999999-9999-4999-8999-999999999999 >/dev/null 2>&1; echo $?)"
check_eq "redrive with no id is a usage error" 2 "$("$R" redrive >/dev/null 2>&1; echo $?)"

drained() { [ "$(sql "select count(*) from outbox where published_at is null")" = 0 ] && [ "$(queue_messages notification)" = 0 ]; }
wait_for 20 drained
sql "truncate sim_provider_ledger"
jq -r '[.key, .order_id, .kind, .amount] | @csv' "$TEST_TMP/ledger.jsonl" > "$TEST_TMP/ledger.csv"
psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "\\copy sim_provider_ledger(key, order_id, kind, amount) from '$TEST_TMP/ledger.csv' csv"
check_invariants "every invariant holds (the poison sits in its DLQ with its reason)"
test_done
