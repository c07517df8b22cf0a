#!/usr/bin/env bash
# A broker that stops answering (here SIGSTOP: a stuck node, or one whose disk or memory alarm
# blocks its connections) must not freeze the intake. The intake answers the orders in flight 503
# once their confirm is overdue and replaces the connection; tearing down the stuck one must not
# wait on the event loop for the broker's reply to the close (30 s for the channel, 30 more for the
# connection), or nothing, not even /healthz, is answered meanwhile. Reconnecting, too, runs off
# the loop: each attempt waits up to the connect timeout (2 s) for the stopped broker, and
# while it does every request must be answered in its normal time (503 where the broker is
# needed), never after the attempt.
source "$(dirname "$0")/lib.sh"
pipeline_env
export INTAKE_CONFIRM_TIMEOUT_MS=1000
P=$ROOT/scripts/pipeline
beam=$(cat "${ORDERPIPE_STACK_DIR:-$ROOT/.stack}/rabbit/node1/pid")
on_exit 'kill -CONT "$beam" 2>/dev/null; "$P" down >/dev/null 2>&1'
"$ROOT/scripts/stock" set SKU-T 10 >/dev/null
check "pipeline starts" "$P" up
check "an order is accepted" place_order SKU-T "stall-1-$RANDOM"
check "the broker stops answering" kill -STOP "$beam"
code=$(curl -s -o /dev/null -w '%{http_code}' -m 10 -X POST "$INTAKE_URL/v1/orders" \
  -H "Authorization: Bearer $ORDERPIPE_API_KEY" -H 'Content-Type: application/json' \
  -H "Idempotency-Key: stall-2-$RANDOM" \
  --data-binary '{"customer_id":"c-1","currency":"EUR","lines":[{"sku":"SKU-T","quantity":1,"unit_price":500}],"payment":{"token":"tok_ok"},"notify":{"email":"a@example.com"}}')
check_eq "an order whose confirm does not come is answered 503" 503 "$code"
# For at least 4 s (two connect timeouts: attempts are in flight throughout) and 5 rounds, POSTs
# and /healthz in turn. Each answer's time is measured; the bound is far below the connect
# timeout, so a loop held by an attempt shows.
timed() { # NAME curl-args...: appends "code seconds error" to $TEST_TMP/NAME.times
  local name=$1; shift
  curl -s -o "$TEST_TMP/$name.body" -w '%{http_code} %{time_total}' -m 10 "$@" > "$TEST_TMP/$name.one"
  echo "$(cat "$TEST_TMP/$name.one") $(jq -r '.error // "-"' "$TEST_TMP/$name.body" 2>/dev/null || echo -)" \
    >> "$TEST_TMP/$name.times"
}
end=$((SECONDS + 4))
rounds=0
while [ $SECONDS -lt $end ] || [ $rounds -lt 5 ]; do
  rounds=$((rounds + 1))
  timed post -X POST "$INTAKE_URL/v1/orders" -H "Authorization: Bearer $ORDERPIPE_API_KEY" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: stall-x-$RANDOM" \
    --data-binary '{"customer_id":"c-1","currency":"EUR","lines":[{"sku":"SKU-T","quantity":1,"unit_price":500}],"payment":{"token":"tok_ok"}}'
  timed health "$INTAKE_URL/healthz"
  sleep 0.05
done
cat "$TEST_TMP/post.times" | sort -k2 -n | tail -3
check_eq "requests were made throughout the stop" "$rounds" "$(wc -l < "$TEST_TMP/post.times")"
check_eq "every POST meanwhile is answered 503 broker_unavailable" "" \
  "$(awk '$1 != 503 || $3 != "broker_unavailable"' "$TEST_TMP/post.times" | head -1)"
check_eq "every /healthz meanwhile is answered 503" "" "$(awk '$1 != 503' "$TEST_TMP/health.times" | head -1)"
check_eq "every POST is answered within 1 s during the reconnect attempts" "" \
  "$(awk '$2 >= 1' "$TEST_TMP/post.times" | head -1)"
check_eq "every /healthz is answered within 1 s during the reconnect attempts" "" \
  "$(awk '$2 >= 1' "$TEST_TMP/health.times" | head -1)"
check "the intake tried to reconnect meanwhile" \
  grep -q "broker unreachable, retrying" "$ORDERPIPE_RUN_DIR/logs/intake.1.log"
check "the broker answers again" kill -CONT "$beam"
accepted() { place_order SKU-T "stall-3-$RANDOM"; }
check "orders are accepted again" wait_for 60 accepted
# (The order answered 503 may go through all the same: the broker may have taken it.)
confirmed() { [ "$(sql "select count(*) from orders where status = 'confirmed'")" -ge 2 ]; }
check "and both accepted orders are confirmed" wait_for 60 confirmed
check_invariants "every invariant holds"
test_done
