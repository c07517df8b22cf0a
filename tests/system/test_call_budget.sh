#!/usr/bin/env bash
# A batch's time for calls to outside services is bounded (WORKER_CALL_BUDGET_MS). While a worker
# waits for a provider or a webhook nothing answers the broker's heartbeats, so a batch of slow
# calls left to run on would outlive both connections and hand the deliveries, and their fate, to
# the next batch. The calls that do not fit are failed transiently and go through the retry
# tiers; every order is still charged exactly once.
source "$(dirname "$0")/lib.sh"
pipeline_env
base=$intake_port
export PAYMENT_PROVIDER=http PAYMENT_URL=http://127.0.0.1:$((base + 1)) PAYMENT_TIMEOUT_MS=5000
export WORKER_CALL_BUDGET_MS=1500 ORDERPIPE_RETRY_DELAYS=300,600,900,1200
P=$ROOT/scripts/pipeline
on_exit '"$P" down >/dev/null 2>&1'
"$ROOT/scripts/stock" set SKU-B 100 >/dev/null
start_bg provider fake-provider "127.0.0.1:$((base + 1))" "$TEST_TMP/ledger.jsonl"
control() { curl -fsS -m 5 -X POST "$PAYMENT_URL/_control?$1" >/dev/null; }
check "the provider is up, answering each charge after 1 s" wait_for 10 control "stall_ms=1000"
check "pipeline starts without its payment worker" "$P" up payment=0
placing=()
for i in 1 2 3 4 5 6; do place_order SKU-B "budget-$i-$RANDOM" & placing+=($!); done
wait "${placing[@]}"
six() { [ "$(queue_messages payment)" = 6 ]; }
check "six orders wait for their charge" wait_for 30 six
check "the payment worker starts" "$P" scale payment=1
ran_out() { grep -q "time for provider calls ran out" <(cat "$ORDERPIPE_RUN_DIR"/logs/payment.*.log); }
check "its first batch stops calling once its 1.5 s are spent, and retries the rest" wait_for 30 ran_out
check_eq "two charges fitted in it" 2 "$(wc -l < "$TEST_TMP/ledger.jsonl")"
check "the provider answers at once again" control "stall_ms=0"
confirmed() { [ "$(sql "select count(*) from orders where status = 'confirmed'")" = 6 ]; }
check "all six orders are confirmed" wait_for 60 confirmed
check_eq "no connection was lost" 0 \
  "$(cat "$ORDERPIPE_RUN_DIR"/logs/payment.*.log | grep -c 'connection lost')"
check_eq "nothing was dead-lettered" 0 "$(queue_messages payment.dlq)"
check "the pipeline settles" wait_for 30 pipeline_idle
sql "truncate sim_provider_ledger"
jq -r '[.key, .order_id, .kind, .amount] | @csv' "$TEST_TMP/ledger.jsonl" > "$TEST_TMP/ledger.csv"
psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "\\copy sim_provider_ledger(key, order_id, kind, amount) from '$TEST_TMP/ledger.csv' csv"
check_eq "six charges in the provider's books" 6 "$(sql "select count(*) from sim_provider_ledger where kind = 'charge'")"
check_invariants "every invariant holds (each order charged once)"

WORKER_CALL_BUDGET_MS=50 timeout 10 orderpipe-payment > "$TEST_TMP/out" 2>&1
check_eq "a budget under 100 ms is refused with status 2" 2 "$?"
check "and named" grep -q "WORKER_CALL_BUDGET_MS" "$TEST_TMP/out"
test_done
