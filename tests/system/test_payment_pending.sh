#!/usr/bin/env bash
# Asynchronous payments with the in-process provider (PAYMENT_PROVIDER=sim): charges answered
# pending and completed by the worker's active queries; pending charges that never complete,
# cancelled payment_timeout at their deadline and voided; payment.notified events (as the intake
# publishes them) applied exactly once — applied, repeated, mismatched, for a payment already
# final, for an unknown order, a failure, and a success arriving after the timeout (refunded);
# a channel's circuit breaker opening (metrics, `pipeline status`). Then every invariant.
source "$(dirname "$0")/lib.sh"

pipeline_env
# Two channels, both served by the in-process provider (it ignores the URLs).
export PAYMENT_PROVIDER=sim PAYMENT_CHANNELS=card=http://card.invalid,wallet=http://wallet.invalid
export PAYMENT_QUERY_AFTER=300ms PAYMENT_PENDING_TIMEOUT=10m
export PAYMENT_BREAKER_FAILURES=100 ORDERPIPE_RETRY_DELAYS=300,600,1200,30000 RESERVATION_TTL=120s
"$ROOT/scripts/stock" set SKU-PAY 100 >/dev/null

on_exit '"$ROOT/scripts/pipeline" down >/dev/null 2>&1'
check "the pipeline starts" "$ROOT/scripts/pipeline" up

# order TOKEN [QTY]: places an order of QTY (default 1) SKU-PAY at 700 and prints its id.
order() {
  curl -fsS -X POST "$INTAKE_URL/v1/orders" -H "Authorization: Bearer $ORDERPIPE_API_KEY" \
    -H 'Content-Type: application/json' \
    --data-binary '{"customer_id":"c-1","currency":"EUR","lines":[{"sku":"SKU-PAY","quantity":'"${2:-1}"',"unit_price":700}],"payment":{"token":"'"$1"'"},"notify":{"email":"a@example.com"}}' |
    jq -r .order_id
}
status_of() { sql "select status || coalesce('/' || cancel_reason, '') from orders where id = '$1'"; }
pay_of() { sql "select status from payments where order_id = '$1'"; }
is() { [ "$(status_of "$1")" = "$2" ]; }            # ORDER STATE[/REASON]
pay_is() { [ "$(pay_of "$1")" = "$2" ]; }           # ORDER PAYMENT_STATUS
pending_at_provider() { [ "$(sql "select count(*) from payments where order_id = '$1' and status = 'pending' and provider_pending_at is not null")" = 1 ]; }
metric() { # NAME{LABELS} -> the payment process's value (0 when absent)
  local v
  v=$(curl -fsS "http://127.0.0.1:$(metrics_port payment)/metrics" | awk -v k="$1" '$1 == k {print $2}')
  echo "${v:-0}"
}
metric_is() { [ "$(metric "$1")" = "$2" ]; }
notification_count() { sql "select count(*) from payment_notifications where channel = 'card' and event_id = '$1'"; }
outcome_of() { sql "select outcome from payment_notifications where channel = 'card' and event_id = '$1'"; }
outcome_is() { [ "$(outcome_of "$1")" = "$2" ]; }   # EVENT_ID OUTCOME
# notify ORDER EVENT_ID STATUS AMOUNT [MESSAGE_ID] [CURRENCY]: publishes payment.notified as the
# intake does (message id derived from channel and event id unless given).
notify() {
  local id=${5:-$(echo -n "card-$2" | sha1sum | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/')}
  local data
  data=$(jq -cn --arg o "$1" --arg e "$2" --arg s "$3" --argjson a "$4" --arg c "${6:-EUR}" \
    '{order_id:$o, channel:"card", event_id:$e, charge_key:$o, provider_ref:("ref-" + $e),
      status:$s, amount:$a, currency:$c} + (if $s == "failed" then {reason:"insufficient funds"} else {} end)')
  orderpipe-amqp-probe publish payment.notified "$(cloud_event payment.notified "$id" "$1" "$data")" \
    --message-id "$id" >/dev/null
}
# provider_completes ORDER: the provider books the charge, as it does before notifying. Its
# pending record stays as it is, so the worker's queries keep finding the charge pending (or
# voided) and only the notification tells the result.
provider_completes() {
  sql "insert into sim_provider_ledger(key, order_id, kind, amount)
       select key, order_id, 'charge', amount from sim_provider_pending where key = '$1'
       on conflict do nothing" >/dev/null
}
# deadline_now ORDER: the order's pending deadline has come (the test does not wait 10 minutes).
deadline_now() { sql "update orders set state_deadline = now() where id = '$1'" >/dev/null; }

# --- pending, completed by active queries -----------------------------------------------------
q1=$(order tok_pending); q2=$(order tok_pending 2)
went_pending() { [ "$(sql "select count(*) from payments where order_id = '$1' and provider_pending_at is not null")" = 1 ]; }
check "a tok_pending charge went pending at the provider" wait_for 60 went_pending "$q1"
check "the queries complete both: confirmed" wait_for 90 is "$q1" confirmed
check "the second too" wait_for 60 is "$q2" confirmed
check_eq "the provider's books hold each charge once" "700 1400" \
  "$(sql "select string_agg(amount::text, ' ' order by amount) from sim_provider_ledger where order_id in ('$q1', '$q2')")"
check "queries were counted as they went" test "$(sql "select min(queries) from payments where order_id in ('$q1', '$q2')")" -ge 1
check "the queries metric counts the successes" test "$(metric 'orderpipe_payment_queries_total{result="succeeded"}')" -ge 2

# --- an order placed with another payment method is charged on its channel ----------------------
w1=$(cat /proc/sys/kernel/random/uuid)
sql "insert into payment_tokens (order_id, token) values ('$w1', 'tok_pending')" >/dev/null
placed=$(jq -cn --arg o "$w1" '{order_id:$o, client_id:"shop-a", customer_id:"c-1", currency:"EUR",
  lines:[{sku:"SKU-PAY", quantity:1, unit_price:700}], total:700, notify:{email:"a@example.com"},
  placed_at:"2026-11-25T10:00:00Z", payment_method:"wallet"}')
orderpipe-amqp-probe publish order.placed "$(cloud_event order.placed "$(cat /proc/sys/kernel/random/uuid)" "$w1" "$placed")" >/dev/null
check "an order paid by wallet is confirmed" wait_for 90 is "$w1" confirmed
check_eq "it was recorded and charged as a wallet payment" "wallet wallet" \
  "$(sql "select o.payment_method || ' ' || p.channel from orders o join payments p on p.order_id = o.id where o.id = '$w1'")"
check_eq "orders that name no method are card payments" "card card" \
  "$(sql "select o.payment_method || ' ' || p.channel from orders o join payments p on p.order_id = o.id where o.id = '$q1'")"

# --- pending forever: payment_timeout at the deadline, voided -----------------------------------
t1=$(order tok_pending_never 3)
check "a tok_pending_never charge is pending" wait_for 60 pending_at_provider "$t1"
check_eq "its deadline is PAYMENT_PENDING_TIMEOUT after the provider said pending" 1 \
  "$(sql "select count(*) from orders o join payments p on p.order_id = o.id where o.id = '$t1'
          and o.status = 'reserved' and o.state_deadline = p.provider_pending_at + interval '10 minutes'
          and p.next_query_at is not null and p.provider_ref = 'sim-$t1'")"
check_eq "while pending it holds its stock" 1 "$(sql "select count(*) from reservations where order_id = '$t1' and status = 'held'")"
deadline_now "$t1"
check "at its deadline the order is cancelled payment_timeout" wait_for 60 is "$t1" cancelled/payment_timeout
check "its charge is voided" wait_for 60 pay_is "$t1" voided
check_eq "the provider voided it and booked nothing" "voided 0" \
  "$(sql "select status || ' ' || (select count(*) from sim_provider_ledger where order_id = '$t1') from sim_provider_pending where key = '$t1'")"
check_eq "its stock is released" 0 "$(sql "select count(*) from reservations where order_id = '$t1' and status = 'held'")"
check "the timeout is counted" wait_for 30 metric_is orderpipe_payment_timeouts_total 1
check_eq "one cancellation, one transition" 1 "$(sql "select count(*) from order_transitions where order_id = '$t1' and status = 'cancelled'")"

# --- notifications ------------------------------------------------------------------------------
n1=$(order tok_pending_never); n2=$(order tok_pending_never); n3=$(order tok_pending_never)
n4=$(order tok_pending_never)
for o in "$n1" "$n2" "$n3" "$n4"; do check "order ${o:0:8} is pending" wait_for 60 pending_at_provider "$o"; done
provider_completes "$n1"
notify "$n1" ev-1 succeeded 700
check "a success notification confirms the order" wait_for 60 is "$n1" confirmed
check_eq "recorded as applied" applied "$(outcome_of ev-1)"
check_eq "with the provider's reference" "ref-ev-1" "$(sql "select provider_ref from payments where order_id = '$n1'")"
# The same event again: the same message id (the inbox drops it) and another id (its row does).
notify "$n1" ev-1 succeeded 700
notify "$n1" ev-1 succeeded 700 "$(cat /proc/sys/kernel/random/uuid)"
check "both repeats are counted as duplicates" wait_for 60 metric_is 'orderpipe_payment_notifications_total{outcome="duplicate"}' 2
check_eq "and recorded once" 1 "$(notification_count ev-1)"
notify "$n1" ev-1b failed 700
check "a result for a payment already final is recorded and ignored" wait_for 60 outcome_is ev-1b already_final
check_eq "the confirmed order stays confirmed" confirmed "$(status_of "$n1")"
# The charge's own answer recorded after a notification settled the payment (the 202 came back
# late): nothing changes, nothing is emitted.
settle() { sql "select event from payment_settle('[{\"id\":\"$1\",\"result\":\"$2\",\"ref\":\"late\"}]')"; }
check_eq "a charge answer after the notification finds the payment settled" "settled settled" \
  "$(settle "$n1" ok) $(settle "$n1" pending)"
check_eq "and leaves it succeeded" "succeeded ref-ev-1" "$(sql "select status || ' ' || provider_ref from payments where order_id = '$n1'")"

notify "$n2" ev-2 succeeded 701
check "a notification whose amount differs is kept as a mismatch" wait_for 60 outcome_is ev-2 mismatch
notify "$n2" ev-2c succeeded 700 "" USD
check "one whose currency differs too" wait_for 60 outcome_is ev-2c mismatch
check_eq "and nothing is applied" "reserved pending" "$(status_of "$n2") $(pay_of "$n2")"
check "mismatches are counted" wait_for 30 metric_is 'orderpipe_payment_notifications_total{outcome="mismatch"}' 2

notify "$n3" ev-3 failed 700
check "a failure notification cancels the order as declined" wait_for 60 is "$n3" cancelled/payment_declined
check_eq "its payment is declined" declined "$(pay_of "$n3")"

stranger=$(cat /proc/sys/kernel/random/uuid)
notify "$stranger" ev-x succeeded 700
check "a notification for an unknown order is recorded" wait_for 60 outcome_is ev-x unknown_order
check_eq "and acked, not dead-lettered" 0 "$(queue_messages payment.dlq)"

# A success after the timeout: the void came too late at the provider.
deadline_now "$n4"
check "the order times out" wait_for 60 is "$n4" cancelled/payment_timeout
check "its charge is voided" wait_for 60 pay_is "$n4" voided
provider_completes "$n4"
notify "$n4" ev-4 succeeded 700
check "the late success is refunded" wait_for 60 pay_is "$n4" refunded
check_eq "recorded as late_refunded" late_refunded "$(outcome_of ev-4)"
check_eq "the provider's books net zero for it" "700 700" \
  "$(sql "select string_agg(amount::text, ' ' order by kind) from sim_provider_ledger where order_id = '$n4'")"
check "late payment refunded is counted" wait_for 30 metric_is orderpipe_payment_late_refunds_total 1

# The mismatched one still times out.
deadline_now "$n2"
check "the mismatched order times out" wait_for 60 is "$n2" cancelled/payment_timeout
check "and is voided" wait_for 60 pay_is "$n2" voided

# --- the circuit breaker: the card channel's provider is down -----------------------------------
"$ROOT/scripts/pipeline" scale payment=0 >/dev/null
down_port=$((intake_port + 2)) # free (pipeline_env) and nobody listens there
export PAYMENT_PROVIDER=http PAYMENT_BREAKER_FAILURES=1 PAYMENT_BREAKER_OPEN=10m
export PAYMENT_CHANNELS=card=http://127.0.0.1:$down_port,wallet=http://127.0.0.1:$down_port
"$ROOT/scripts/pipeline" scale payment=1 >/dev/null
f1=$(order tok_ok)
tripped() { [ "$(metric 'orderpipe_payment_breaker_trips_total{channel="card"}')" = 1 ]; }
check "a failed call trips the channel's breaker" wait_for 60 tripped
check_eq "the breaker is open" 1 "$(metric 'orderpipe_payment_breaker_open{channel="card"}')"
check_eq "the other channel's is not" 0 "$(metric 'orderpipe_payment_breaker_open{channel="wallet"}')"
check "pipeline status shows it" bash -c "'$ROOT/scripts/pipeline' status | grep -qx 'payment breakers open: card'"
check_eq "pipeline status --json too" card "$("$ROOT/scripts/pipeline" status --json | jq -r '.payment_breakers_open | join(",")')"
refused() { grep -q 'is unavailable (circuit breaker open)' "$ORDERPIPE_RUN_DIR"/logs/payment.*.log; }
check "while open, charges fail at once without calling the provider" wait_for 60 refused
check_eq "the provider was called once" 1 "$(grep -c "attempt [0-9]* failed.*Couldn't connect to server" "$ORDERPIPE_RUN_DIR/logs/payment.1.log")"
"$ROOT/scripts/pipeline" scale payment=0 >/dev/null
export PAYMENT_PROVIDER=sim
"$ROOT/scripts/pipeline" scale payment=1 >/dev/null
check "once the channel is back the order is charged" wait_for 90 is "$f1" confirmed
check_eq "pipeline status shows no open breaker" "none" \
  "$("$ROOT/scripts/pipeline" status --json | jq -r '.payment_breakers_open | if length == 0 then "none" else join(",") end')"

check "the pipeline goes idle" wait_for 90 workers_idle
check_invariants "every invariant holds"
test_done
