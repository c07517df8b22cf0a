#!/usr/bin/env bash
# One slow webhook host cannot starve the others. The notification worker used
# to call every webhook of a batch in turn under one call budget, so a host that never answers
# spent the batch's time and every other customer's notifications behind it went to the retry
# tiers. Now each destination gets a share of the budget (NOTIFY_HOST_BUDGET_PERCENT) and a
# circuit breaker: the fast host's notifications are delivered at once, the slow host's retry,
# and after NOTIFY_BREAKER_FAILURES failures its breaker opens (metrics show it) and they retry
# without a call.
source "$(dirname "$0")/lib.sh"
pipeline_env
fast_port=$((intake_port + 1)) slow_port=$((intake_port + 2)) metrics_port=$((intake_port + 3))
KEY=iso-key-$RANDOM-0123456789abcdef
export ORDERPIPE_API_KEYS="shop-a:$KEY" ORDERPIPE_WEBHOOK_HOSTS="shop-a=127.0.0.2" ORDERPIPE_WEBHOOK_ALLOW_HTTP=1
export NOTIFY_CHANNEL=webhook NOTIFY_WEBHOOK_URL=http://127.0.0.2:$fast_port/default
export NOTIFY_WEBHOOK_SECRET=iso-secret-$RANDOM NOTIFY_WEBHOOK_ALLOW_CIDRS=127.0.0.2/32 NOTIFY_WEBHOOK_ALLOW_HTTP=1
# A call may wait 5 s, a batch 4 s, one destination 25 % of that: 1 s.
export NOTIFY_TIMEOUT_MS=5000 WORKER_CALL_BUDGET_MS=4000 NOTIFY_HOST_BUDGET_PERCENT=25
export NOTIFY_BREAKER_FAILURES=2 NOTIFY_BREAKER_OPEN_MS=600000
export ORDERPIPE_RETRY_DELAYS=300,600,900,1200
P=$ROOT/scripts/pipeline
on_exit '"$P" down >/dev/null 2>&1'
"$ROOT/scripts/stock" set SKU-ISO 100 >/dev/null
start_bg fast webhook-receiver "127.0.0.2:$fast_port" "$NOTIFY_WEBHOOK_SECRET" "$TEST_TMP/fast.jsonl"
start_bg slow webhook-receiver "127.0.0.2:$slow_port" "$NOTIFY_WEBHOOK_SECRET" "$TEST_TMP/slow.jsonl" stall
check "pipeline starts without its notification worker" "$P" up notification=0

place() { # N PORT FILE: N orders notified at 127.0.0.2:PORT, their ids appended to FILE
  local i
  for i in $(seq 1 "$1"); do
    curl -fsS -m 10 -X POST "$INTAKE_URL/v1/orders" -H "Authorization: Bearer $KEY" \
      -H 'Content-Type: application/json' -H "Idempotency-Key: iso-$2-$i-$RANDOM" \
      --data-binary '{"customer_id":"c-1","currency":"EUR","lines":[{"sku":"SKU-ISO","quantity":1,"unit_price":500}],"payment":{"token":"tok_ok"},"notify":{"webhook_url":"http://127.0.0.2:'"$2"'/hook"}}' |
      jq -r .order_id >> "$3"
  done
}
waiting() { [ "$(queue_messages notification)" = "$1" ]; }
# The slow host's notifications first in the queue, so they come first in the batch.
place 6 "$slow_port" "$TEST_TMP/slow.ids"
check "six notifications to the slow host wait" wait_for 60 waiting 6
place 6 "$fast_port" "$TEST_TMP/fast.ids"
check "and six to the fast one behind them" wait_for 60 waiting 12

METRICS_LISTEN=127.0.0.1:$metrics_port "$P" scale notification=1 >/dev/null
fast_done() { [ "$(jq -r .order_id "$TEST_TMP/fast.jsonl" 2>/dev/null | sort -u | wc -l)" = 6 ]; }
check "the fast host gets its six notifications" wait_for 60 fast_done
logs() { cat "$ORDERPIPE_RUN_DIR"/logs/notification.*.log; }
retried_fast=0
while read -r id; do
  grep -q "\"order_id\":\"$id\".*attempt [0-9]* failed" <(logs) && retried_fast=$((retried_fast + 1))
done < "$TEST_TMP/fast.ids"
check_eq "none of them waited for a retry behind the slow host" 0 "$retried_fast"
slow_key="http://127.0.0.2:$slow_port"
check "the slow host's notifications go to the retry tiers" \
  grep -q "attempt 1 failed, retrying.*$slow_key" <(logs)
metric() { curl -fsS -m 5 "http://127.0.0.1:$metrics_port/metrics" | grep -F "$1" | awk '{print $2}'; }
open_now() { [ "$(metric "orderpipe_notify_breaker_open{destination=\"$slow_key\"}")" = 1 ]; }
check "the slow host's circuit opens (metrics)" wait_for 60 open_now
skipped() { [ "$(metric 'orderpipe_notify_webhooks_total{outcome="breaker_open"}')" -ge 1 ] 2>/dev/null; }
check "and its notifications then retry without a call" wait_for 60 skipped
check "the opening is logged" grep -q "$slow_key failed 2 times in a row: circuit open" <(logs)
fast_open=$(metric "orderpipe_notify_breaker_open{destination=\"http://127.0.0.2:$fast_port\"}")
check_eq "the fast host's breaker stays closed" 0 "${fast_open:-0}"
check_eq "six sent" 6 "$(metric 'orderpipe_notify_webhooks_total{outcome="sent"}')"
test_done
