#!/usr/bin/env bash
# End to end against outside services: PAYMENT_PROVIDER=http against the fake provider,
# which first stalls (answers after the worker's timeout, having booked the charge), then fails a
# share of calls, then recovers; and NOTIFY_CHANNEL=webhook against a receiver that is down for
# the first seconds of the run. Then every invariant of docs/design.md §3, read from the provider's
# own books, and exactly one signed webhook delivery per terminal order.
source "$(dirname "$0")/lib.sh"
ORDERS=${E2E_HTTP_ORDERS:-1200}
HOT_STOCK=60

pipeline_env
provider_port=$((intake_port + 1)) hook_port=$((intake_port + 2))
export PAYMENT_PROVIDER=http PAYMENT_URL=http://127.0.0.1:$provider_port PAYMENT_TIMEOUT_MS=400
export NOTIFY_CHANNEL=webhook NOTIFY_WEBHOOK_URL=http://127.0.0.1:$hook_port/hooks/orders
export NOTIFY_WEBHOOK_SECRET=test-secret-$RANDOM NOTIFY_TIMEOUT_MS=1000
# The receiver is on loopback, which the worker refuses unless allowed; and it speaks http.
export NOTIFY_WEBHOOK_ALLOW_CIDRS=127.0.0.1/32 NOTIFY_WEBHOOK_ALLOW_HTTP=1
# Retries spread over 15 s: longer than the faults last, short enough to drain at the end.
export ORDERPIPE_RETRY_DELAYS=1000,2000,4000,8000

seed_stock 30 500 $HOT_STOCK

start_bg provider fake-provider "127.0.0.1:$provider_port" "$TEST_TMP/ledger.jsonl"
control() { curl -fsS -m 5 -X POST "$PAYMENT_URL/_control?$1" >/dev/null; }
check "the fake provider is up" wait_for 10 control "stall_ms=1500"

on_exit '"$ROOT/scripts/pipeline" down >/dev/null 2>&1'
check "pipeline starts with two processes of each worker" \
  "$ROOT/scripts/pipeline" up reservation=2 payment=2 notification=2 compensation=2

# Orders flow until the test stops them, so each fault lasts until it has been seen in the logs
# and no phase depends on how fast this machine is.
start_bg load orderpipe-loadgen --orders $((ORDERS * 100)) --rate 150 --connections 16 --skus 30 \
  --mix ok=70,oos=5,decline=8,flaky=5,hot=10,dup=2 \
  --accepted "$TEST_TMP/accepted" --idempotency "$TEST_TMP/idem"
load_pid=$bg_pid
in_logs() { grep -q "$2" "$ORDERPIPE_RUN_DIR"/logs/"$1".*.log 2>/dev/null; } # WORKER PATTERN
check "charges time out while the provider stalls" wait_for 300 in_logs payment "timed out\|Timeout"
control "stall_ms=0&fail_percent=30"
check "calls fail while the provider fails some" wait_for 300 in_logs payment "answered 500"
control "stall_ms=0&fail_percent=0"
check "webhooks fail while the receiver is down" \
  wait_for 300 in_logs notification "Couldn't connect\|Connection refused\|connect"
start_bg receiver webhook-receiver "127.0.0.1:$hook_port" "$NOTIFY_WEBHOOK_SECRET" "$TEST_TMP/hooks.jsonl"
loaded() { [ "$(sort -u "$TEST_TMP/accepted" | wc -l)" -ge "$ORDERS" ]; }
check "the load reaches $ORDERS accepted orders" wait_for 600 loaded
kill -TERM "$load_pid"
wait "$load_pid"
cat "$TEST_TMP/load.out"
check_eq "every order sent is accepted (202)" "$(jq .sent "$TEST_TMP/load.out")" "$(jq .accepted "$TEST_TMP/load.out")"

want=$(sort -u "$TEST_TMP/accepted" | wc -l)
terminal() { [ "$(sql "select count(*) from orders where status in ('confirmed','cancelled')")" -ge "$want" ]; }
check "all $want distinct orders reach a terminal state" wait_for 240 terminal
notified() { [ "$(sql "select count(*) from notifications where sent_at is not null")" -ge "$want" ]; }
check "every terminal order is notified" wait_for 120 notified
check "the pipeline goes idle, retry queues included" wait_for 60 pipeline_idle

check "some orders were declined by the provider" \
  test "$(sql "select count(*) from orders where cancel_reason = 'payment_declined'")" -gt 0

# The provider's books stand in for the sim ledger, so invariant 4 is checked against them.
sql "truncate sim_provider_ledger"
jq -r '[.key, .order_id, .kind, .amount] | @csv' "$TEST_TMP/ledger.jsonl" > "$TEST_TMP/ledger.csv"
psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" \
  -c "\\copy sim_provider_ledger(key, order_id, kind, amount) from '$TEST_TMP/ledger.csv' csv"
check_eq "the provider booked one charge per charged order" \
  "$(sql "select count(*) from payments where status = 'succeeded' or refunded_amount > 0")" \
  "$(sql "select count(*) from sim_provider_ledger where kind = 'charge'")"
"$ROOT/scripts/check-invariants" --accepted "$TEST_TMP/accepted" --idempotency "$TEST_TMP/idem" > "$TEST_TMP/inv.txt"
rc=$?
cat "$TEST_TMP/inv.txt"
check "every invariant of docs/design.md §3 holds against the provider's books" test $rc = 0

terminal_orders=$(sql "select count(*) from orders where status in ('confirmed','cancelled')")
check_eq "one signed webhook delivery per terminal order" "$terminal_orders" \
  "$(jq -r .delivery "$TEST_TMP/hooks.jsonl" | sort -u | wc -l)"
check_eq "no delivery arrived twice" "$(wc -l < "$TEST_TMP/hooks.jsonl")" \
  "$(jq -r .delivery "$TEST_TMP/hooks.jsonl" | sort -u | wc -l)"
check_eq "an unsigned webhook is refused by the receiver" 401 \
  "$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}' "$NOTIFY_WEBHOOK_URL")"
"$ROOT/scripts/pipeline" status
test_done
