#!/usr/bin/env bash
# Backpressure (docs/design.md §1): when the work queues or the outbox fall behind past their bounds,
# the intake answers new orders 429 with Retry-After and a JSON reason, accepts nothing it cannot
# confirm, and admits orders again once the backlog drains. The watcher survives a PostgreSQL
# restart.
source "$(dirname "$0")/lib.sh"
port=$(free_base 20000 24000 4 4)
export INTAKE_LISTEN=127.0.0.1:$port INTAKE_URL=http://127.0.0.1:$port
export INTAKE_MAX_QUEUE_DEPTH=100 INTAKE_MAX_OUTBOX_ROWS=50 INTAKE_BACKPRESSURE_INTERVAL_MS=50
export INTAKE_RATE_PER_CLIENT=100000 INTAKE_BURST_PER_CLIENT=100000
"$ROOT/scripts/stock" set SKU-0001 100000 >/dev/null
orderpipe-amqp-probe declare >/dev/null
# Its /metrics on a port of its own (the workers started below pick their own).
start_bg intake env METRICS_LISTEN=127.0.0.1:$((port + 1)) orderpipe-intake
intake_pid=$bg_pid
up() { curl -fs "$INTAKE_URL/healthz" >/dev/null; }
check "the intake comes up" wait_for 10 up
post() {
  curl -s -D "$TEST_TMP/h" -o "$TEST_TMP/r" -w '%{http_code}' -X POST "$INTAKE_URL/v1/orders" \
    -H "Authorization: Bearer $ORDERPIPE_API_KEY" -H 'Content-Type: application/json' \
    -d '{"customer_id":"c","currency":"EUR","lines":[{"sku":"SKU-0001","quantity":1,"unit_price":100}],"payment":{"token":"tok_ok"}}'
}

# No worker runs: the reservation queue only grows.
orderpipe-loadgen --orders 400 --rate 2000 --connections 4 --skus 1 --accepted "$TEST_TMP/accepted" > "$TEST_TMP/load.json"
cat "$TEST_TMP/load.json"
accepted=$(jq .accepted "$TEST_TMP/load.json")
check "orders are accepted up to about the bound" test "$accepted" -ge 100 -a "$accepted" -lt 400
check "the rest are refused with 429" test "$(jq '.status["429"] // 0' "$TEST_TMP/load.json")" -gt 0
check_eq "every accepted order is on the queue" "$accepted" "$(queue_messages reservation)"
check_eq "a POST now gets 429" 429 "$(post)"
check_eq "with the reason" overloaded "$(jq -r .error "$TEST_TMP/r")"
check "and the figures in the message" grep -q "messages queued" "$TEST_TMP/r"
check "and Retry-After" grep -qi '^Retry-After: 1' "$TEST_TMP/h"
check "the refusals are counted" grep -Eq '^orderpipe_intake_backpressure_refused_total [1-9]' <(curl -s "http://127.0.0.1:$((port + 1))/metrics")
check "the intake says so in its log" grep -q "backpressure on" "$TEST_TMP/intake.log"

# The workers drain the queues: orders are admitted again.
export NOTIFY_LOG_FILE=$TEST_TMP/notes.log
workers=()
for w in reservation payment notification compensation; do start_bg "$w" "orderpipe-$w"; workers+=("$bg_pid"); done
drained() { [ "$(queue_messages reservation)" -lt 50 ]; }
check "the workers drain the queue" wait_for 60 drained
admitted() { [ "$(post)" = 202 ]; }
check "orders are admitted again below the bound" wait_for 10 admitted

# The outbox bound: unpublished events past it refuse orders too (with no worker to relay them).
check "the pipeline goes idle" wait_for 60 pipeline_idle
kill -TERM "${workers[@]}"; wait "${workers[@]}"
# The watcher reconnects: a PostgreSQL restart must not leave the bound unwatched.
check "PostgreSQL restarts" "$ROOT/scripts/dev-stack" restart-pg
sql "insert into outbox(message_id, aggregate_id, routing_key, payload)
     select gen_random_uuid(), 'bp-' || g, 'test.nothing', '{}' from generate_series(1, 60) g" >/dev/null
refused() { [ "$(post)" = 429 ]; }
check "an outbox past its bound gives 429" wait_for 10 refused
check "the intake said it lost the backlog while PostgreSQL was down" \
  grep -q "cannot read the outbox backlog" "$TEST_TMP/intake.log"
check "and that it reads it again" grep -q "reading the outbox backlog again" "$TEST_TMP/intake.log"
sql "delete from outbox where aggregate_id like 'bp-%'" >/dev/null
# After the restart the intake's own connection finds the server gone on its first order and
# reconnects with backoff: on a busy machine that may take more than a few seconds.
admitted_again() { last=$(post); [ "$last" = 202 ]; }
check "and orders are admitted once it drains" wait_for 60 admitted_again
[ "$last" = 202 ] || { echo "# last answer: $last"; cat "$TEST_TMP/r"; echo; tail -5 "$TEST_TMP/intake.log"; }
kill -TERM "$intake_pid"; wait "$intake_pid"
check_eq "the intake exits 0 on SIGTERM" 0 "$?"
test_done
