#!/usr/bin/env bash
# A broker that stops answering (here SIGSTOP: a stuck node, or one whose disk or memory alarm
# blocks its connections) must not freeze the intake. The intake answers the orders in flight 503
# once their confirm is overdue and replaces the connection; tearing down the stuck one used to
# wait for the broker's reply to the close (30 s for the channel, 30 more for the connection) on
# the event loop, so nothing, not even /healthz, was answered meanwhile. (Each attempt to
# reconnect still holds the loop for up to the connect timeout, 2 s: hence 3 s below.)
source "$(dirname "$0")/lib.sh"
pipeline_env
export INTAKE_CONFIRM_TIMEOUT_MS=1000
P=$ROOT/scripts/pipeline
beam=$(cat "${ORDERPIPE_STACK_DIR:-$ROOT/.stack}/rabbit/node1/pid")
trap 'kill -CONT "$beam" 2>/dev/null; "$P" down >/dev/null 2>&1' EXIT
"$ROOT/scripts/stock" set SKU-T 10 >/dev/null
check "pipeline starts" "$P" up
check "an order is accepted" place_order SKU-T "stall-1-$RANDOM"
check "the broker stops answering" kill -STOP "$beam"
code=$(curl -s -o /dev/null -w '%{http_code}' -m 10 -X POST "$INTAKE_URL/v1/orders" \
  -H "Authorization: Bearer $ORDERPIPE_API_KEY" -H 'Content-Type: application/json' \
  -H "Idempotency-Key: stall-2-$RANDOM" \
  --data-binary '{"customer_id":"c-1","currency":"EUR","lines":[{"sku":"SKU-T","quantity":1,"unit_price":500}],"payment":{"token":"tok_ok"},"notify":{"email":"a@example.com"}}')
check_eq "an order whose confirm does not come is answered 503" 503 "$code"
slow=0
for i in 1 2 3 4 5 6; do
  curl -s -o /dev/null -m 3 "$INTAKE_URL/healthz" || slow=$((slow + 1))
  sleep 0.5
done
check_eq "the intake answers /healthz within 3 s throughout" 0 "$slow"
check "the broker answers again" kill -CONT "$beam"
accepted() { place_order SKU-T "stall-3-$RANDOM"; }
check "orders are accepted again" wait_for 60 accepted
# (The order answered 503 may go through all the same: the broker may have taken it.)
confirmed() { [ "$(sql "select count(*) from orders where status = 'confirmed'")" -ge 2 ]; }
check "and both accepted orders are confirmed" wait_for 60 confirmed
check_invariants "every invariant holds"
test_done
