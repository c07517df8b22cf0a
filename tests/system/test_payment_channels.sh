#!/usr/bin/env bash
# Payments the way real channels work, end to end: orders over two channels (card and wallet,
# each its own fake provider with its own secret), about half of them answered pending. The
# providers lose some notifications (the payment worker's queries find those results), repeat
# some, reorder them, and send forged copies (refused 401, nothing changes); some payments never
# complete (cancelled payment_timeout and voided), and some succeed only after that cancellation
# (refunded, counted as late payments). Then every invariant of docs/design.md §3 holds against
# both providers' books, and scripts/reconcile --fix on each channel's settlement file for the
# day ends with exit 0.
source "$(dirname "$0")/lib.sh"
ORDERS=${PAYMENT_CHANNELS_ORDERS:-2000}

pipeline_env
card_port=$((intake_port + 1)) wallet_port=$((intake_port + 2))
card_secret=whsec-card-$RANDOM$RANDOM wallet_secret=whsec-wallet-$RANDOM$RANDOM
export PAYMENT_PROVIDER=http PAYMENT_TIMEOUT_MS=2000
export PAYMENT_CHANNELS="card=http://127.0.0.1:$card_port,wallet=http://127.0.0.1:$wallet_port"
export PAYMENT_CHANNEL_SECRETS="card=$card_secret,wallet=$wallet_secret"
# Short enough that timeouts happen within the run, long enough that a notification delayed by
# the providers' reordering still lands before it.
export PAYMENT_PENDING_TIMEOUT=20s PAYMENT_QUERY_AFTER=3s
export ORDERPIPE_RETRY_DELAYS=1000,2000,4000,8000
seed_stock 30 100000 100

# provider NAME PORT SECRET: a fake provider for one channel, notifying the intake.
provider() {
  start_bg "provider-$1" fake-provider "127.0.0.1:$2" "$TEST_TMP/ledger-$1.jsonl" \
    --notify-url "$INTAKE_URL/v1/payment-notifications/$1" --secret "$3"
}
provider card "$card_port" "$card_secret"
provider wallet "$wallet_port" "$wallet_secret"
control() { curl -fsS -m 5 -X POST "http://127.0.0.1:$1/_control?$2" >/dev/null; } # PORT QUERY
# Lost 10 %, repeated 10 %, reordered, forged 5 %; a third of the ordinary charges pending; the
# late-success token refuses the void and succeeds after the pending timeout.
faults="notify_delay_ms=300&lose_percent=10&dup_percent=10&reorder=1&forge_percent=5&pending_percent=34&void_refuse=1&late_ms=26000"
for p in $card_port $wallet_port; do
  check "the provider on $p is up" wait_for 10 control "$p" "$faults"
done

on_exit '"$ROOT/scripts/pipeline" down >/dev/null 2>&1'
check "the pipeline starts" "$ROOT/scripts/pipeline" up reservation=2 payment=2 notification=1 compensation=1

# ok 50 % of which a third pending, + 30 % pending kinds: about half the charges pending.
orderpipe-loadgen --orders "$ORDERS" --rate 150 --connections 16 --skus 30 --methods card,wallet \
  --mix ok=50,pending=20,pend_fail=4,pend_never=3,pend_late=3,decline=5,oos=3,hot=10,dup=2 \
  --accepted "$TEST_TMP/accepted" --idempotency "$TEST_TMP/idem" > "$TEST_TMP/load.out"
cat "$TEST_TMP/load.out"
check_eq "every order sent is accepted (202)" "$(jq .sent "$TEST_TMP/load.out")" \
  "$(jq .accepted "$TEST_TMP/load.out")"
want=$(sort -u "$TEST_TMP/accepted" | wc -l)

terminal() { [ "$(sql "select count(*) from orders where status in ('confirmed','cancelled')")" -ge "$want" ]; }
check "all $want orders reach a terminal state" wait_for 300 terminal
# The late successes arrive after their orders were cancelled: wait until neither provider holds
# a pending charge and no refund is owed, then load both providers' books.
stats() { curl -fsS -m 5 "http://127.0.0.1:$1/_stats"; }
load_books() {
  sql "truncate sim_provider_ledger"
  cat "$TEST_TMP"/ledger-card.jsonl "$TEST_TMP"/ledger-wallet.jsonl |
    jq -r '[.key, .order_id, .kind, .amount] | @csv' > "$TEST_TMP/ledger.csv"
  psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" \
    -c "\\copy sim_provider_ledger(key, order_id, kind, amount) from '$TEST_TMP/ledger.csv' csv"
}
settled() {
  [ "$(stats "$card_port" | jq .charges.pending)" = 0 ] && [ "$(stats "$wallet_port" | jq .charges.pending)" = 0 ] &&
    load_books &&
    [ "$(sql "select count(*) from orders o join sim_provider_ledger c on c.order_id = o.id
              and c.kind = 'charge' where o.status = 'cancelled' and not exists
              (select 1 from sim_provider_ledger r where r.order_id = o.id and r.kind = 'refund')")" = 0 ]
}
check "no charge is left pending at a provider, no refund owed" wait_for 240 settled
check "the pipeline goes idle, retry queues included" wait_for 120 pipeline_idle

n_reason() { sql "select count(*) from orders where cancel_reason = '$1'"; }
check "orders whose payment never completed are cancelled payment_timeout ($(n_reason payment_timeout))" \
  test "$(n_reason payment_timeout)" -gt 0
check "declined payments cancel their orders ($(n_reason payment_declined))" \
  test "$(n_reason payment_declined)" -gt 0
pending_share=$(sql "select round(100.0 * count(*) filter (where provider_pending_at is not null) / count(*))
                     from payments")
echo "# $pending_share % of the payments were answered pending"
check "about half the payments were answered pending ($pending_share %)" \
  test "$pending_share" -ge 35 -a "$pending_share" -le 65
check "both channels charged orders" \
  test "$(sql "select count(distinct channel) from payments where status = 'succeeded'")" = 2
check "timed-out charges were voided at the provider" \
  test "$(sql "select count(*) from payments where status = 'voided'")" -gt 0

metric_sum() { # NAME [LABEL-FILTER]: the sum of a counter over every payment process
  local port total=0 v
  for f in "$ORDERPIPE_RUN_DIR"/logs/payment.*.log; do
    port=$(grep -ho 'serving /metrics and /healthz on port [0-9]*' "$f" | tail -1 | grep -o '[0-9]*$')
    v=$(curl -fsS -m 5 "http://127.0.0.1:$port/metrics" 2>/dev/null |
        grep "^$1[{ ]" | grep -F "${2:-}" | awk '{s += $2} END {print s + 0}')
    total=$((total + ${v%.*}))
  done
  echo "$total"
}
late=$(metric_sum orderpipe_payment_late_refunds_total)
check "late successes after the timeout were refunded and counted ($late)" test "$late" -gt 0
queries=$(metric_sum orderpipe_payment_queries_total)
check "pending payments were queried ($queries queries)" test "$queries" -gt 0

for ch in card:$card_port wallet:$wallet_port; do
  name=${ch%%:*} port=${ch#*:}
  stats "$port" > "$TEST_TMP/stats-$name.json"
  echo "# $name provider: $(jq -c . "$TEST_TMP/stats-$name.json")"
  check "the $name provider lost notifications" test "$(jq '.notifications.lost' "$TEST_TMP/stats-$name.json")" -gt 0
  check "the $name provider repeated notifications" \
    test "$(jq '.notifications.duplicated' "$TEST_TMP/stats-$name.json")" -gt 0
  check "the $name provider's forged notifications were all refused 401" \
    test "$(jq '.notifications.forged' "$TEST_TMP/stats-$name.json")" -gt 0 -a \
         "$(jq '.notifications.forged' "$TEST_TMP/stats-$name.json")" = "$(jq '.notifications.answers."401" // 0' "$TEST_TMP/stats-$name.json")"
done
check_eq "no notification was refused as a mismatch" 0 \
  "$(sql "select count(*) from payment_notifications where outcome = 'mismatch'")"
# Copies of one provider event reach two payment processes at once: the second is a duplicate,
# never an error that dead-letters it.
dead=$(for q in reservation payment notification compensation; do queue_messages "$q.dlq"; done |
       awk '{s += $1} END {print s + 0}')
check_eq "nothing was dead-lettered" 0 "$dead"
check "repeated notifications were recorded as duplicates" \
  test "$(metric_sum orderpipe_payment_notifications_total duplicate)" -gt 0
check "repeated notifications changed nothing twice" \
  test "$(sql "select count(*) from (select order_id from payment_notifications
                where outcome = 'applied' group by order_id having count(*) > 1) x")" = 0

# Both providers' books stand in for the sim ledger, so invariant 4 is checked against them.
load_books
"$ROOT/scripts/check-invariants" --accepted "$TEST_TMP/accepted" --idempotency "$TEST_TMP/idem" > "$TEST_TMP/inv.txt"
rc=$?
cat "$TEST_TMP/inv.txt"
check "every invariant holds against both providers' books" test $rc = 0

day=$(date -u +%F)
for ch in card:$card_port wallet:$wallet_port; do
  name=${ch%%:*} port=${ch#*:}
  curl -fsS -m 10 "http://127.0.0.1:$port/settlement?date=$day" > "$TEST_TMP/settle-$name.csv"
  "$ROOT/scripts/reconcile" --date "$day" --channel "$name" --settlement "$TEST_TMP/settle-$name.csv" \
    --fix --format json > "$TEST_TMP/rec-$name.json"
  rc=$?
  jq -c . "$TEST_TMP/rec-$name.json" | head -c 2000; echo
  check_eq "the $name channel reconciles clean after --fix (exit 0)" 0 "$rc"
done
test_done
