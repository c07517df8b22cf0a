#!/usr/bin/env bash
# Redelivery: every event the saga produced — order.placed, stock.reserved,
# payment.succeeded, payment.failed, payment.refund_requested, order.confirmed, order.cancelled,
# order.cancel_requested — is delivered a second time, byte for byte, and changes nothing:
# orders, stock, payments, the provider's books, notifications, outbox and transitions are the
# same before and after, and each worker says it ignored the repeat.
source "$(dirname "$0")/lib.sh"
pipeline_env
export RESERVATION_TTL=3s COMPENSATION_INTERVAL=200ms
P=$ROOT/scripts/pipeline
on_exit '"$P" down >/dev/null 2>&1'

"$ROOT/scripts/stock" set SKU-A 10 >/dev/null
"$ROOT/scripts/stock" set SKU-B 0 >/dev/null
# A queue of the test's own that sees every event, to deliver each one again later.
orderpipe-amqp-probe declare >/dev/null
mgmt PUT "/queues/$RABBITMQ_VHOST/capture" '{"durable":true}' >/dev/null
mgmt POST "/bindings/$RABBITMQ_VHOST/e/orderpipe.events/q/capture" '{"routing_key":"#"}' >/dev/null

check "pipeline starts" "$P" up
place() { # SKU TOKEN -> order id
  curl -fsS -X POST "$INTAKE_URL/v1/orders" -H "Authorization: Bearer $ORDERPIPE_API_KEY" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: redelivery-$1-$2-$RANDOM" \
    --data-binary "{\"customer_id\":\"c-1\",\"currency\":\"EUR\",\"lines\":[{\"sku\":\"$1\",\"quantity\":1,\"unit_price\":500}],\"payment\":{\"token\":\"$2\"},\"notify\":{\"email\":\"a@example.com\"}}" |
    jq -r .order_id
}
status_of() { sql "select coalesce(status || ':' || coalesce(cancel_reason, ''), 'none') from orders where id = '$1'"; }
is() { [ "$(status_of "$1")" = "$2" ]; }

ok_id=$(place SKU-A tok_ok) decline_id=$(place SKU-A tok_decline) oos_id=$(place SKU-B tok_ok)
check "an order is confirmed" wait_for 30 is "$ok_id" confirmed:
check "a declined order is cancelled" wait_for 30 is "$decline_id" cancelled:payment_declined
check "an order without stock is cancelled" wait_for 30 is "$oos_id" cancelled:out_of_stock

# A reserved order that nobody pays expires.
"$P" scale payment=0 >/dev/null
exp_id=$(place SKU-A tok_ok)
check "an unpaid reservation expires" wait_for 30 is "$exp_id" cancelled:reservation_expired

# A paid order the customer cancels before its sale is committed is refunded. The reservation
# worker comes back with a long TTL, so this order cannot expire while payment is away.
RESERVATION_TTL=60s "$P" scale reservation=0 >/dev/null
RESERVATION_TTL=60s "$P" scale reservation=1 >/dev/null
paid_id=$(place SKU-A tok_ok)
check "an order is reserved while payment is away" wait_for 30 is "$paid_id" reserved:
"$P" scale reservation=0 >/dev/null
"$P" scale payment=1 >/dev/null
check "it is paid while the reservation worker is away" wait_for 30 is "$paid_id" paid:
curl -fsS -X POST "$INTAKE_URL/v1/orders/$paid_id/cancel" -H "Authorization: Bearer $ORDERPIPE_API_KEY" >/dev/null
check "the customer's cancel of a paid order goes through" wait_for 30 is "$paid_id" cancelled:customer_cancelled
refunded() { [ "$(sql "select status from payments where order_id = '$paid_id'")" = refunded ]; }
check "its charge is refunded" wait_for 30 refunded
"$P" scale reservation=1 >/dev/null
curl -fsS -X POST "$INTAKE_URL/v1/orders/$ok_id/cancel" -H "Authorization: Bearer $ORDERPIPE_API_KEY" >/dev/null

check "the pipeline settles" wait_for 60 workers_idle
sleep 1
check "the confirmed order stays confirmed after a late cancel" is "$ok_id" confirmed:

snapshot() {
  sql "select md5(string_agg(t, '|' order by t)) from (
    select format('o %s %s %s %s', id, status, cancel_reason, state_entered_at) t from orders
    union all select format('i %s %s %s %s', sku, available, reserved, sold) from inventory
    union all select format('r %s %s %s %s', order_id, sku, quantity, status) from reservations
    union all select format('p %s %s %s %s %s', order_id, status, attempts, refunded_amount, updated_at) from payments
    union all select format('l %s %s', key, amount) from sim_provider_ledger
    union all select format('n %s %s %s %s', order_id, event_type, status, sent_at) from notifications
    union all select format('t %s %s', order_id, status) from order_transitions
    union all select format('x %s', message_id) from outbox) s"
  wc -l < "$NOTIFY_LOG_FILE"
}
before=$(snapshot)
n_captured=$(queue_messages capture)
queue_get capture 1000 > "$TEST_TMP/captured.json"
types=$(jq -r '.[].routing_key' "$TEST_TMP/captured.json" | sort -u | tr '\n' ' ')
echo "# captured $n_captured events: $types"
for t in order.placed stock.reserved payment.succeeded payment.failed payment.refund_requested \
         order.confirmed order.cancelled order.cancel_requested; do
  check "a $t event was captured" grep -qw "$t" <<< "$types"
done

: > "$TEST_TMP/ids"
jq -c '.[] | [.routing_key, .payload, (.properties.message_id // "")]' "$TEST_TMP/captured.json" |
while read -r row; do
  key=$(jq -r '.[0]' <<< "$row") body=$(jq -r '.[1]' <<< "$row") mid=$(jq -r '.[2]' <<< "$row")
  orderpipe-amqp-probe publish "$key" "$body" ${mid:+--message-id "$mid"} || echo "republish of $key failed"
  echo "$key $(jq -r .id <<< "$body")" >> "$TEST_TMP/ids"
done
check_eq "every captured event was delivered again" "$n_captured" "$(wc -l < "$TEST_TMP/ids")"
sleep 1
check "the redeliveries are consumed" wait_for 60 workers_idle
sleep 1
after=$(snapshot)
check_eq "nothing changed: orders, stock, payments, provider books, notifications, outbox" "$before" "$after"
for t in order.placed stock.reserved payment.succeeded payment.failed payment.refund_requested \
         order.confirmed order.cancelled order.cancel_requested; do
  check "a repeated $t was recognised and ignored" \
    grep -q "\"$t already handled: redelivery ignored\"\|\"$t already notified\"" "$ORDERPIPE_RUN_DIR"/logs/*.log
done
mgmt DELETE "/queues/$RABBITMQ_VHOST/capture" >/dev/null
check_invariants "every invariant of docs/design.md §3 holds"
test_done
