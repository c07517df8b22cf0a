#!/usr/bin/env bash
# Servers restarting under the pipeline, on a private stack of this test's own so
# the shared one is never disturbed: while RabbitMQ is stopped the intake answers 503 and accepts
# nothing; once it is back, orders are accepted again without restarting anything; the workers
# reconnect by themselves after a RabbitMQ and a PostgreSQL restart; every invariant holds.
source "$(dirname "$0")/lib.sh"
export ORDERPIPE_STACK_DIR=$TEST_TMP/stack ORDERPIPE_PG_PORT=$(free_base 24000 25000 1 1)
export ORDERPIPE_EPMD_PORT=$(free_base 25000 26000 1 1) ORDERPIPE_AMQP_PORT=$(free_base 26000 30000 50 25)
STACK="$ROOT/scripts/dev-stack"
on_exit '"$ROOT/scripts/pipeline" down >/dev/null 2>&1; "$STACK" destroy >/dev/null 2>&1'
# The intake's port comes from the stack's env, as `make demo` takes it: the listener and the URL
# clients use must agree.
export ORDERPIPE_INTAKE_PORT=$(free_base 30000 32000 2 2)
"$STACK" up > "$TEST_TMP/stack.log" 2>&1 || { cat "$TEST_TMP/stack.log"; not_ok "private stack starts"; exit 1; }
ok "a private stack is up"
eval "$("$STACK" env)"
export RABBITMQ_VHOST=%2F ORDERPIPE_RUN_DIR=$TEST_TMP/run NOTIFY_LOG_FILE=$TEST_TMP/notes.log
check "the stack's env has the intake listen where INTAKE_URL points" \
  test "http://$INTAKE_LISTEN" = "$INTAKE_URL"
"$ROOT/scripts/stock" set SKU-0001 100000 >/dev/null
"$ROOT/scripts/pipeline" up >/dev/null || { not_ok "pipeline starts"; exit 1; }

send() { "$ROOT/bin/orderpipe-loadgen" --orders "$1" --connections 8 --skus 1 \
           --accepted "$TEST_TMP/accepted" --idempotency "$TEST_TMP/idem" | jq -r .accepted; }
post() {
  curl -s -o "$TEST_TMP/post.json" -w '%{http_code}' -X POST "$INTAKE_URL/v1/orders" \
    -H "Authorization: Bearer $ORDERPIPE_API_KEY" -H 'Content-Type: application/json' \
    -d '{"customer_id":"c","currency":"EUR","lines":[{"sku":"SKU-0001","quantity":1,"unit_price":100}],"payment":{"token":"tok_ok"}}'
}
check_eq "orders are accepted before the restarts" 200 "$(send 200)"

"$STACK" stop-rabbit > /dev/null 2>&1
check_eq "with RabbitMQ stopped, a POST gets 503" 503 "$(post)"
check_eq "with a JSON reason" broker_unavailable "$(jq -r .error "$TEST_TMP/post.json")"
check_eq "and /healthz says so" 503 "$(curl -s -o /dev/null -w '%{http_code}' "$INTAKE_URL/healthz")"
"$STACK" start-rabbit > /dev/null 2>&1
accepted_again() { [ "$(post)" = 202 ]; }
check "once RabbitMQ is back, POSTs succeed again without restarting the intake" wait_for 30 accepted_again
jq -r .order_id "$TEST_TMP/post.json" >> "$TEST_TMP/accepted"
check_eq "orders flow after the broker restart" 200 "$(send 200)"

"$STACK" restart-pg > /dev/null 2>&1
# The intake answers 503 until its reconnect backoff lets it reach the new server (how long that
# takes follows the machine's speed); what matters is that it gets there without a restart.
check "once PostgreSQL is back, POSTs succeed again without restarting the intake" wait_for 60 accepted_again
jq -r .order_id "$TEST_TMP/post.json" >> "$TEST_TMP/accepted"
check_eq "orders flow after the PostgreSQL restart" 200 "$(send 200)"

want=$(sort -u "$TEST_TMP/accepted" | wc -l)
terminal() { [ "$(sql "select count(*) from orders where status in ('confirmed','cancelled')")" -ge "$want" ]; }
check "every accepted order ($want) reaches a terminal state" wait_for 120 terminal
# Terminal is not settled: a notification may still be on its way back from a retry tier.
check "the pipeline goes idle, retry queues included" wait_for 120 pipeline_idle
"$ROOT/scripts/check-invariants" --accepted "$TEST_TMP/accepted" --idempotency "$TEST_TMP/idem" > "$TEST_TMP/inv" 2>&1
rc=$?; cat "$TEST_TMP/inv"
check "every invariant holds after the restarts" test $rc = 0
if [ $rc != 0 ]; then # what a look afterwards needs, since TEST_TMP goes with the run
  echo "# queues:"; mgmt GET "/queues/$RABBITMQ_VHOST?columns=name,messages_ready,messages_unacknowledged,consumers" | jq -c '.[]' | sed 's/^/#   /'
  echo "# notifications by status:"; sql "select status, event_type, count(*) from notifications group by 1, 2" | sed 's/^/#   /'
  for p in notification payment; do
    echo "# $p worker, its warnings and errors:"
    grep -v '"level":"debug"' "$TEST_TMP/run/logs/$p.1.log" | grep -v '"level":"info".*order_id' | tail -40 | cut -c1-400 | sed 's/^/#   /'
  done
fi
check "the workers logged reconnecting" grep -q -i "reconnect\|unreachable\|lost" "$TEST_TMP"/run/logs/reservation.1.log
test_done
