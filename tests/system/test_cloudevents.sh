#!/usr/bin/env bash
# CloudEvents as any consumer reads them, and only what consumers need in them.
# A catch-all queue bound to orderpipe.events with '#' sees every event of orders of every kind:
# confirmed (e-mail and webhook, with and without Idempotency-Keys, over HTTP and the bulk import),
# declined, flaky, out of stock, cancelled late, cancelled paid (refund), cancelled and expired by
# binary-mode events the official CloudEvents SDK publishes, re-driven, and dead-lettered then
# replayed. Then:
#   - no message (body or headers) carries a payment token, the webhook secret or an API key;
#   - the SDK (tests/cloudevents/conformance.js) reads every one by its content type, validates it
#     strictly, and finds its data valid against the schema its dataschema names;
#   - a message in any other form (an unknown content type, binary mode without attributes) is
#     dead-lettered with the reason.
source "$(dirname "$0")/lib.sh"
CE="$ROOT/tests/cloudevents"
if [ ! -d "$CE/node_modules/cloudevents" ]; then
  not_ok "the CloudEvents SDK is installed (scripts/install-deps runs npm ci in tests/cloudevents)"
  test_done
fi
sdk() { node "$CE/conformance.js" "$@"; }

pipeline_env
hook_port=$((intake_port + 1))
client=$(grep -F ":$ORDERPIPE_API_KEY" "$ORDERPIPE_API_KEYS_FILE" | head -1 | cut -d: -f1)
export ORDERPIPE_WEBHOOK_HOSTS="$client=127.0.0.2" ORDERPIPE_WEBHOOK_ALLOW_HTTP=1
export NOTIFY_CHANNEL=webhook NOTIFY_WEBHOOK_URL=http://127.0.0.2:$hook_port/default
export NOTIFY_WEBHOOK_SECRET=ce-secret-$RANDOM$RANDOM NOTIFY_WEBHOOK_ALLOW_CIDRS=127.0.0.2/32 NOTIFY_WEBHOOK_ALLOW_HTTP=1
export ORDERPIPE_RETRY_DELAYS=200,400,600,800 RESERVATION_TTL=60s
P=$ROOT/scripts/pipeline
on_exit '"$P" down >/dev/null 2>&1'
"$ROOT/scripts/stock" set SKU-C 100 >/dev/null
"$ROOT/scripts/stock" set SKU-OOS 0 >/dev/null
start_bg hooks webhook-receiver "127.0.0.2:$hook_port" "$NOTIFY_WEBHOOK_SECRET" "$TEST_TMP/hooks.jsonl"

orderpipe-amqp-probe declare >/dev/null
mgmt PUT "/queues/$RABBITMQ_VHOST/ce.tap" '{"durable":true}' >/dev/null
mgmt POST "/bindings/$RABBITMQ_VHOST/e/orderpipe.events/q/ce.tap" '{"routing_key":"#"}' >/dev/null
check "pipeline starts" "$P" up

body() { # SKU TOKEN [NOTIFY_JSON]
  local notify=${3:-}
  [ -n "$notify" ] || notify='{"email":"ce@example.com"}'
  printf '{"customer_id":"c-ce","currency":"EUR","lines":[{"sku":"%s","quantity":1,"unit_price":500}],"payment":{"token":"%s"},"notify":%s}' \
    "$1" "$2" "$notify"
}
place() { # SKU TOKEN [NOTIFY_JSON [IDEMPOTENCY_KEY]] -> order id
  curl -fsS -X POST "$INTAKE_URL/v1/orders" -H "Authorization: Bearer $ORDERPIPE_API_KEY" \
    -H 'Content-Type: application/json' ${4:+-H "Idempotency-Key: $4"} --data-binary "$(body "$@")" |
    jq -r .order_id
}
cancel() { curl -fsS -o /dev/null -X POST "$INTAKE_URL/v1/orders/$1/cancel" -H "Authorization: Bearer $ORDERPIPE_API_KEY"; }
status_of() { sql "select coalesce(status || ':' || coalesce(cancel_reason, ''), 'none') from orders where id = '$1'"; }
is() { [ "$(status_of "$1")" = "$2" ]; }

# --- orders of every kind ---------------------------------------------------------------------
ok_id=$(place SKU-C tok_ok)
hook_id=$(place SKU-C tok_ok "{\"webhook_url\":\"http://127.0.0.2:$hook_port/hook\"}" ce-key-1)
again_id=$(place SKU-C tok_ok "{\"webhook_url\":\"http://127.0.0.2:$hook_port/hook\"}" ce-key-1)
decline_id=$(place SKU-C tok_decline) flaky_id=$(place SKU-C tok_flaky) oos_id=$(place SKU-OOS tok_ok)
check_eq "a repeated Idempotency-Key answers the same order" "$hook_id" "$again_id"
{ body SKU-C tok_ok; echo
  printf '{"client_id":"%s","idempotency_key":"ce-bulk-1","order":%s}\n' "$client" "$(body SKU-C tok_decline)"
} > "$TEST_TMP/bulk.ndjson"
check "the bulk import accepts its orders" orderpipe-enqueue --client "$client" "$TEST_TMP/bulk.ndjson"
check "an order is confirmed" wait_for 30 is "$ok_id" confirmed:
check "a webhook order is confirmed" wait_for 30 is "$hook_id" confirmed:
check "a declined order is cancelled" wait_for 30 is "$decline_id" cancelled:payment_declined
check "a flaky payment is confirmed after retries" wait_for 30 is "$flaky_id" confirmed:
check "an order without stock is cancelled" wait_for 30 is "$oos_id" cancelled:out_of_stock
hooked() { grep -q "$hook_id" "$TEST_TMP/hooks.jsonl" 2>/dev/null; }
check "the webhook is called" wait_for 30 hooked
bulk_done() { [ "$(sql "select count(*) from orders where status in ('confirmed', 'cancelled')")" = 7 ]; }
check "the imported orders complete" wait_for 30 bulk_done
cancel "$ok_id"   # too late: an order.cancel_requested that changes nothing

# A paid order the customer cancels before its sale is committed is refunded.
"$P" scale reservation=0 >/dev/null
"$P" scale payment=0 >/dev/null
"$P" scale reservation=1 >/dev/null
paid_id=$(place SKU-C tok_ok)
check "an order is reserved while payment is away" wait_for 30 is "$paid_id" reserved:
"$P" scale reservation=0 >/dev/null
"$P" scale payment=1 >/dev/null
check "it is paid while the reservation worker is away" wait_for 30 is "$paid_id" paid:
cancel "$paid_id"
check "the cancel of a paid order goes through" wait_for 30 is "$paid_id" cancelled:customer_cancelled
refunded() { [ "$(sql "select status from payments where order_id = '$paid_id'")" = refunded ]; }
check "its charge is refunded" wait_for 30 refunded
"$P" scale reservation=1 >/dev/null

# --- binary mode: events the SDK publishes are handled like the pipeline's own ----------------
"$P" scale payment=0 >/dev/null
cancel_id=$(place SKU-C tok_ok) expire_id=$(place SKU-C tok_ok)
check "two orders wait, reserved" wait_for 30 is "$cancel_id" reserved:
wait_for 30 is "$expire_id" reserved:
now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
check "the SDK publishes an order.cancel_requested in binary mode" sdk publish-binary "$AMQP_URL" \
  order.cancel_requested "$cancel_id" "{\"order_id\":\"$cancel_id\",\"requested_at\":\"$now\",\"client_id\":\"$client\"}"
check "the SDK publishes a reservation.expired in binary mode" sdk publish-binary "$AMQP_URL" \
  reservation.expired "$expire_id" "{\"order_id\":\"$expire_id\"}"
check "the binary-mode cancel request is applied" wait_for 30 is "$cancel_id" cancelled:customer_cancelled
check "the binary-mode expiry is applied" wait_for 30 is "$expire_id" cancelled:reservation_expired

# --- redrive: an order whose stock.reserved was lost ------------------------------------------
lost_id=$(place SKU-C tok_ok)
waiting() { is "$lost_id" reserved: && [ "$(queue_messages payment)" -ge 1 ]; }
check "an order is reserved while payment is away" wait_for 30 waiting
mgmt DELETE "/queues/$RABBITMQ_VHOST/payment/contents" >/dev/null
"$P" scale payment=1 >/dev/null
check "redrive re-emits its last event" orderpipe-replay redrive "$lost_id"
check "the re-driven order completes" wait_for 30 is "$lost_id" confirmed:

# --- anything else is dead-lettered with the reason -------------------------------------------
ghost=$(cat /proc/sys/kernel/random/uuid)
paid_ghost="{\"order_id\":\"$ghost\",\"amount\":500,\"currency\":\"EUR\",\"provider_ref\":\"ce-ghost\"}"
check "the SDK publishes a payment.succeeded for an unknown order" \
  sdk publish-binary "$AMQP_URL" payment.succeeded "$ghost" "$paid_ghost"
orderpipe-amqp-probe publish payment.succeeded "$(jq -cn --arg o "$ghost" --argjson d "$paid_ghost" \
  '{specversion:"1.0", id:"ce-structured-ghost", source:"test", type:"payment.succeeded",
    time:"2026-11-25T10:00:00Z", subject:$o, orderid:$o, datacontenttype:"application/json",
    dataschema:"urn:orderpipe:schema:payment.succeeded", data:$d}')" --message-id ce-structured-ghost
both_dead() { [ "$(queue_messages reservation.dlq)" = 2 ]; }
check "both (binary and structured) are dead-lettered" wait_for 30 both_dead
cancel_body="{\"order_id\":\"$ghost\",\"requested_at\":\"$now\",\"client_id\":\"$client\"}"
# Straight to the compensation queue: they are not events, and not for the catch-all queue.
direct() { orderpipe-amqp-probe publish compensation "$cancel_body" --exchange '' "$@" >/dev/null; }
direct --content-type text/plain --message-id ce-text
direct --content-type application/json --message-id ce-bare
direct --content-type application/json --header cloudEvents:specversion=1.0 \
  --header cloudEvents:id=ce-noattrs --message-id ce-noattrs
three_dead() { [ "$(queue_messages compensation.dlq)" = 3 ]; }
check "three messages in no CloudEvents form are dead-lettered" wait_for 30 three_dead
orderpipe-replay list --queue compensation > "$TEST_TMP/dead.txt"
cat "$TEST_TMP/dead.txt"
check "an unknown content type: invalid_message, saying so" grep -q "ce-text.*invalid_message.*unsupported content type 'text/plain'" "$TEST_TMP/dead.txt"
check "plain JSON: no binary-mode attributes" grep -q "ce-bare.*invalid_message.*without the 'cloudEvents:' headers" "$TEST_TMP/dead.txt"
check "binary mode without the required attributes: the missing one" grep -q "ce-noattrs.*invalid_message.*missing attribute 'source'" "$TEST_TMP/dead.txt"
mgmt DELETE "/queues/$RABBITMQ_VHOST/compensation.dlq/contents" >/dev/null

check "the pipeline settles" wait_for 60 workers_idle

# The dead letters replayed: their copies wait in the reservation queue while its worker is away.
"$P" scale reservation=0 >/dev/null
orderpipe-replay requeue --queue reservation > "$TEST_TMP/requeue.txt" 2>&1
check_eq "both dead letters are replayed" 2 "$(queue_messages reservation)"

# --- no secret in any message -----------------------------------------------------------------
peek() { # QUEUE: every message, left in place
  mgmt POST "/queues/$RABBITMQ_VHOST/$1/get" '{"count":5000,"ackmode":"reject_requeue_true","encoding":"auto"}'
}
{ peek ce.tap; peek reservation; } > "$TEST_TMP/all.json"
n=$(jq -s 'map(length) | add' "$TEST_TMP/all.json")
echo "# $n messages: $(jq -rs 'map(.[].routing_key) | group_by(.) | map("\(.[0])=\(length)") | join(" ")' "$TEST_TMP/all.json")"
check "the catch-all queue saw the saga" test "$n" -ge 40
check "no message carries a payment token (body or headers)" bash -c "! grep -q 'tok_' '$TEST_TMP/all.json'"
check "no message carries the webhook secret" bash -c "! grep -qF '$NOTIFY_WEBHOOK_SECRET' '$TEST_TMP/all.json'"
cut -d: -f2- "$ORDERPIPE_API_KEYS_FILE" | grep -v '^$' > "$TEST_TMP/keys.txt"
check "there are API keys to look for" test -s "$TEST_TMP/keys.txt"
check "no message carries an API key" bash -c "! grep -qFf '$TEST_TMP/keys.txt' '$TEST_TMP/all.json'"
check "the payment step charged with the recorded tokens (tok_decline orders were declined)" \
  test "$(sql "select count(*) from orders where cancel_reason = 'payment_declined'")" -ge 1
tokens_forgotten() {
  [ "$(sql "select count(*) from payment_tokens t join orders o on o.id = t.order_id
            where o.status in ('paid', 'confirmed', 'cancelled')")" = 0 ]
}
check "no token is kept once its order is past payment" wait_for 60 tokens_forgotten

# --- the SDK reads every message by its content type ------------------------------------------
sdk read "$AMQP_URL" "$ROOT/schemas" ce.tap reservation > "$TEST_TMP/sdk.jsonl"
rc=$?
grep '"ok":false' "$TEST_TMP/sdk.jsonl" | head -5
summary=$(tail -1 "$TEST_TMP/sdk.jsonl")
echo "# $summary"
check_eq "the SDK reads and validates every message" 0 "$rc"
check_eq "it read them all" "$n" "$(jq .summary.messages <<< "$summary")"
for t in order.placed order.cancel_requested stock.reserved payment.succeeded payment.failed \
         payment.refund_requested order.confirmed order.cancelled reservation.expired; do
  check "a $t event was read" test "$(jq --arg t "$t" '.summary.types[$t] // 0' <<< "$summary")" -gt 0
done
check "the pipeline's events are structured" test "$(jq '.summary.modes.structured // 0' <<< "$summary")" -ge 30
check "the SDK's binary-mode events and the replayed one are binary" \
  test "$(jq '.summary.modes.binary // 0' <<< "$summary")" -ge 4
check "the replayed dead letters are read too" test "$(grep -c '"queue":"reservation".*"ok":true' "$TEST_TMP/sdk.jsonl")" = 2
check "the re-driven stock.reserved is read" grep -q '"type":"stock.reserved","source":"orderpipe-replay"' "$TEST_TMP/sdk.jsonl"
mgmt DELETE "/queues/$RABBITMQ_VHOST/ce.tap" >/dev/null
test_done
