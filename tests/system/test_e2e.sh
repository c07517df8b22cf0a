#!/usr/bin/env bash
# End to end: 2,000 orders over HTTP through the whole saga with two processes of each
# worker — fine orders, out of stock, declined and flaky payments, repeated Idempotency-Keys and a
# flash sale on one scarce SKU — then every invariant of docs/design.md §3.
#   E2E_ORDERS (default 2000), PAYMENT_PROVIDER / NOTIFY_CHANNEL as the workers read them.
source "$(dirname "$0")/lib.sh"
ORDERS=${E2E_ORDERS:-2000}
HOT_STOCK=100

pipeline_env
export RESERVATION_TTL=${RESERVATION_TTL:-60s}
export PAYMENT_TOKEN_RETENTION=1h
seed_stock 50 500 $HOT_STOCK
# Tokens of orders never recorded: one older than PAYMENT_TOKEN_RETENTION, one within it.
stale=$(sql "insert into payment_tokens (order_id, token, created_at) values (gen_random_uuid(), 'tok_stale', now() - interval '2 hours') returning order_id")
fresh=$(sql "insert into payment_tokens (order_id, token) values (gen_random_uuid(), 'tok_fresh') returning order_id")

on_exit '"$ROOT/scripts/pipeline" down >/dev/null 2>&1'
check "pipeline starts with two processes of each worker" \
  "$ROOT/scripts/pipeline" up reservation=2 payment=2 notification=2 compensation=2

"$ROOT/bin/orderpipe-loadgen" --orders "$ORDERS" --connections 32 --skus 50 \
  --mix ok=60,oos=5,decline=8,flaky=4,hot=20,dup=3 \
  --accepted "$TEST_TMP/accepted" --idempotency "$TEST_TMP/idem" > "$TEST_TMP/load.json"
cat "$TEST_TMP/load.json"
check_eq "every order is accepted (202)" "$ORDERS" "$(jq .accepted "$TEST_TMP/load.json")"

want=$(sort -u "$TEST_TMP/accepted" | wc -l)
terminal() { [ "$(sql "select count(*) from orders where status in ('confirmed','cancelled')")" -ge "$want" ]; }
check "all $want distinct orders reach a terminal state" wait_for 240 terminal
sleep 2
check "the pipeline goes idle, retry queues included" wait_for 60 pipeline_idle

check_eq "duplicate Idempotency-Keys made no extra order" "$want" "$(sql "select count(*) from orders")"
tokens_forgotten() { [ "$(sql "select count(*) from payment_tokens where order_id <> '$fresh'")" = 0 ]; }
check "no payment token is kept for an order past payment, nor past retention" wait_for 60 tokens_forgotten
check_eq "the token of an unrecorded order within retention is kept" 1 "$(sql "select count(*) from payment_tokens where order_id = '$fresh'")"
check_eq "the flash sale sold exactly the scarce stock" "$HOT_STOCK" "$(sql "select sold from inventory where sku = 'HOT-1'")"
check "some orders were cancelled out of stock" test "$(sql "select count(*) from orders where cancel_reason = 'out_of_stock'")" -gt 0
check "some were declined" test "$(sql "select count(*) from orders where cancel_reason = 'payment_declined'")" -gt 0
check "flaky payments were confirmed after retries" test "$(sql "select count(*) from payments where attempts >= 3 and status = 'succeeded'")" -gt 0
"$ROOT/scripts/check-invariants" --accepted "$TEST_TMP/accepted" --idempotency "$TEST_TMP/idem" > "$TEST_TMP/inv.txt"
rc=$?
cat "$TEST_TMP/inv.txt"
check "every invariant of docs/design.md §3 holds" test $rc = 0
"$ROOT/scripts/pipeline" status
test_done
