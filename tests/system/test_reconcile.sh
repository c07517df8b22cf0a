#!/usr/bin/env bash
# scripts/reconcile against the fake provider's settlement file: a day of orders and payments
# written straight into the database, their charges booked at the fake provider, then
#   A. the plain file: a charge for a cancelled order, a charge we have no payment for, a refund
#      we have not recorded; --fix refunds exactly what is owed (the provider's books say so),
#      exit 1 then 0, and a second --fix issues nothing more;
#   B. the file with deliberate discrepancies: every other kind is found and stays unresolved;
#   C. a hand-written file of hostile lines: each refused with its line number, none executed;
#   D. usage and configuration errors exit 2.
source "$(dirname "$0")/lib.sh"

base=$(free_base 28000 32000 2 2)
export PAYMENT_URL=http://127.0.0.1:$base PAYMENT_CHANNELS="" PAYMENT_DEFAULT_METHOD=card
unset PAYMENT_CHANNELS
ledger=$TEST_TMP/ledger.jsonl
start_bg provider fake-provider "127.0.0.1:$base" "$ledger"
check "the fake provider is up" wait_for 60 curl -fsS -o /dev/null -X POST "$PAYMENT_URL/_control?stall_ms=0"
stat() { curl -fsS -m 10 "$PAYMENT_URL/_stats" | jq -r "$1"; }
day=$(date -u +%F)

k() { printf '00000000-0000-4000-8000-%012d' "$1"; }
# order N STATUS [CANCEL_REASON]: an order of 500 EUR.
order() {
  sql "insert into orders (id, client_id, customer_id, currency, total, payment_token, status, cancel_reason, placed_at)
       values ('$(k "$1")', 'test', 'c-$1', 'EUR', 500, 'tok_ok', '$2', nullif('${3:-}', ''), now())" >/dev/null
}
# payment N STATUS [CHANNEL]: its payment row, created now.
payment() {
  sql "insert into payments (order_id, amount, currency, status, charge_key, channel)
       values ('$(k "$1")', 500, 'EUR', '$2', '$(k "$1")', '${3:-card}')" >/dev/null
}
# charge KEY: a charge of 500 EUR booked at the provider.
charge() {
  curl -fsS -m 10 -o /dev/null -X POST "$PAYMENT_URL/charges" -H "Idempotency-Key: $1" \
    -d "{\"order_id\":\"$1\",\"amount\":500,\"currency\":\"EUR\",\"token\":\"tok_ok\"}"
}

# 1-4, 7: confirmed and paid; 5: cancelled, our payment declined, yet charged there (a late
# success); 6: cancelled, refund asked for and not yet recorded, refunded there; 8: charged there,
# no order of ours; 10: confirmed, paid on the wallet channel (not this channel's business).
for n in 1 2 3 4 7; do order $n confirmed; payment $n succeeded; done
order 5 cancelled payment_declined; payment 5 declined
order 6 cancelled customer_cancelled; payment 6 refund_pending
order 10 confirmed; payment 10 succeeded wallet
for n in 1 2 3 4 5 6 7 8; do charge "$(k $n)"; done
curl -fsS -m 10 -o /dev/null -X POST "$PAYMENT_URL/refunds" -H "Idempotency-Key: refund:$(k 6)" \
  -d "{\"order_id\":\"$(k 6)\",\"charge_key\":\"$(k 6)\",\"amount\":500}"
check_eq "the provider booked 8 charges and 1 refund" "8 1" "$(stat '"\(.charges.succeeded) \(.refunds.count)"')"

reconcile() { "$ROOT/scripts/reconcile" --date "$day" --channel card "$@"; }
kinds() { jq -r '[.items[] | "\(.kind):\(.charge_key // .line):\(.action):\(.resolved)"] | sort | join(" ")'; }

# --- A. the plain file ------------------------------------------------------------------------
curl -fsS "$PAYMENT_URL/settlement?date=$day" > "$TEST_TMP/a.csv"
reconcile --settlement "$TEST_TMP/a.csv" > "$TEST_TMP/a1.txt"
check_eq "differences left: exit 1" 1 $?
cat "$TEST_TMP/a1.txt"
check "the table names the run and its figures" grep -q "Reconciliation run [0-9]*: channel card, $day, 9 lines (0 malformed), 3 items, 0 fixed, 3 unresolved" "$TEST_TMP/a1.txt"
for w in "charged_for_cancelled.*$(k 5)" "missing_here.*$(k 8)" "refunded_there_not_here.*$(k 6)"; do
  check "the table lists ${w%%.*}" grep -q "$w" "$TEST_TMP/a1.txt"
done
check_eq "without --fix nothing is refunded" 1 "$(stat .refunds.count)"
reconcile --settlement "$TEST_TMP/a.csv" --format json > "$TEST_TMP/a1.json"
check_eq "json: the three kinds, refunds owed" \
  "charged_for_cancelled:$(k 5):refund_owed:false missing_here:$(k 8):refund_owed:false refunded_there_not_here:$(k 6):none:false" \
  "$(kinds < "$TEST_TMP/a1.json")"

reconcile --settlement "$TEST_TMP/a.csv" --fix --format csv > "$TEST_TMP/a2.csv"
check_eq "--fix resolves every difference: exit 0" 0 $?
check_eq "csv: a header and a row per item" "4 item,kind,charge_key,line,order_status,payment_status,our_amount,their_amount,their_refunded,our_currency,their_currency,action,refund_amount,resolved,detail" \
  "$(wc -l < "$TEST_TMP/a2.csv") $(head -1 "$TEST_TMP/a2.csv")"
check "csv: the refunds issued" test "$(grep -c ',refund_issued,500,t,' "$TEST_TMP/a2.csv")" = 2
check "csv: the refund recorded" grep -q "refunded_there_not_here,$(k 6),.*,refund_recorded,500,t," "$TEST_TMP/a2.csv"
check_eq "exactly the two owed refunds reached the provider" 3 "$(stat .refunds.count)"
check_eq "the provider's ledger: refunds of 5, 6 and 8" "refund:$(k 5) refund:$(k 6) refund:$(k 8)" \
  "$(jq -r 'select(.kind == "refund") | .key' "$ledger" | sort | tr '\n' ' ' | sed 's/ $//')"
check_eq "our payments: 5 and 6 refunded" "refunded 500 refunded 500" \
  "$(sql "select string_agg(status || ' ' || refunded_amount, ' ' order by order_id) from payments where order_id in ('$(k 5)', '$(k 6)')")"

reconcile --settlement "$TEST_TMP/a.csv" --fix --format json > "$TEST_TMP/a3.json"
check_eq "a second --fix: exit 0" 0 $?
check_eq "and it issues nothing more" 3 "$(stat .refunds.count)"
check_eq "the refunded charge with no order stays resolved" "missing_here:$(k 8):refund_already_issued:true" \
  "$(kinds < "$TEST_TMP/a3.json")"
check_eq "runs of A: 3 items, 3 then 1 item (fixed 3, then 0), nothing unresolved after --fix" \
  "3:0:3 3:0:3 3:3:0 1:0:0" \
  "$(sql "select string_agg(items || ':' || fixed || ':' || unresolved, ' ' order by id) from reconciliation_runs")"

# --- B. the file with deliberate discrepancies ------------------------------------------------
curl -fsS -X POST "$PAYMENT_URL/_control?discrepancies=1" > /dev/null
curl -fsS "$PAYMENT_URL/settlement?date=$day" > "$TEST_TMP/b.csv"
disc=$(grep ',ch_disc_1,' "$TEST_TMP/b.csv" | cut -d, -f1)
reconcile --settlement "$TEST_TMP/b.csv" --format json > "$TEST_TMP/b1.json"
check_eq "discrepancies: exit 1" 1 $?
check_eq "every kind found" \
  "$(printf '%s\n' "amount_mismatch:$(k 1):none:false" "currency_mismatch:$(k 2):none:false" \
     "missing_at_provider:$(k 3):none:false" "missing_here:$disc:refund_owed:false" \
     "missing_here:$(k 8):refund_already_issued:true" "refunded_there_not_here:$(k 4):none:false" | sort | tr '\n' ' ' | sed 's/ $//')" \
  "$(kinds < "$TEST_TMP/b1.json")"
check_eq "the wrong amount and currency as the file has them" "501 USD" \
  "$(jq -r '[(.items[] | select(.kind == "amount_mismatch") | .their_amount), (.items[] | select(.kind == "currency_mismatch") | .their_currency)] | join(" ")' "$TEST_TMP/b1.json")"
reconcile --settlement "$TEST_TMP/b.csv" --fix --format json > "$TEST_TMP/b2.json"
check_eq "--fix cannot resolve mismatches: exit 1" 1 $?
check_eq "--fix refunds the unknown charge only" 4 "$(stat .refunds.count)"
check_eq "and records the refund seen there on our confirmed order's payment" "succeeded 500" \
  "$(sql "select status || ' ' || refunded_amount from payments where order_id = '$(k 4)'")"
check_eq "left unresolved: mismatches and the missing charge" "amount_mismatch currency_mismatch missing_at_provider" \
  "$(jq -r '[.items[] | select(.resolved | not) | .kind] | sort | join(" ")' "$TEST_TMP/b2.json")"
reconcile --settlement "$TEST_TMP/b.csv" --fix > /dev/null
check_eq "a second --fix: still exit 1" 1 $?
check_eq "and no refund more" 4 "$(stat .refunds.count)"
check_eq "the wallet channel's payment is never an item" 0 \
  "$(sql "select count(*) from reconciliation_items where charge_key = '$(k 10)'")"

# --- C. hostile lines -------------------------------------------------------------------------
# Another day, when we took no payment: only the keys in the file are ours to compare.
cday=2001-02-03
payments_before=$(sql "select count(*) from payments")
{
  echo "charge_key,provider_ref,amount,currency,status,settled_at"
  echo "$(k 7),\"ch, with \"\"quotes\"\"'); drop table payments; --\",500,EUR,succeeded,${cday}T10:00:00Z"  # 2 ok
  echo "$(k 9),ch_x,500,EUR,succeeded,${cday}T10:00:00Z"                                                  # 3 ok
  echo "$(k 11),ch_y,12.5,EUR,succeeded,${cday}T10:00:00Z"                                                # 4
  echo "'; drop table payments; --,ch_z,500,EUR,succeeded,${cday}T10:00:00Z"                              # 5
  echo "$(k 12),\"unterminated,500,EUR,succeeded,${cday}T10:00:00Z"                                      # 6
  echo "$(k 13),$(head -c 10000 /dev/zero | tr '\0' x),500,EUR,succeeded,${cday}T10:00:00Z"              # 7
  echo "$(k 14),ch_w,500"                                                                              # 8
  echo "$(k 15),ch_v,500,eur,succeeded,${cday}T10:00:00Z"                                                 # 9
  echo "$(k 16),ch_u,500,EUR,succeeded,2001-01-01T10:00:00Z"                                           # 10
  printf '%s,ch_\xff\xfe,500,EUR,succeeded,%sT10:00:00Z\n' "$(k 17)" "$cday"                             # 11
  echo "$(k 18),ch_t,-5,EUR,refunded,${cday}T10:00:00Z"                                                   # 12
  echo "$(k 19),ch_s,500,EUR,chargeback,${cday}T10:00:00Z"                                                # 13
  echo "$(k 20),\"ch_\$(touch $TEST_TMP/pwned)\",500,EUR,succeeded,${cday}T25:00:00Z"                     # 14
} > "$TEST_TMP/c.csv"
order 9 confirmed
"$ROOT/scripts/reconcile" --date "$cday" --channel card --settlement "$TEST_TMP/c.csv" --format json > "$TEST_TMP/c.json"
check_eq "malformed lines: exit 1" 1 $?
check_eq "each refused with its line number" "4 5 6 7 8 9 10 11 12 13 14" \
  "$(jq -r '[.items[] | select(.kind == "malformed_line") | .line] | join(" ")' "$TEST_TMP/c.json")"
check_eq "and why" "amount is not a positive integer of minor units|charge_key is not 1-128 of A-Z a-z 0-9 . _ : -|bad CSV quoting|longer than 8192 bytes|3 fields where 6 are expected|currency is not 3 capital letters|settled_at is not on $cday (UTC)|not UTF-8|amount is not a positive integer of minor units|status is neither succeeded nor refunded|settled_at is not a valid time" \
  "$(jq -r '[.items[] | select(.kind == "malformed_line") | .detail] | join("|")' "$TEST_TMP/c.json")"
check_eq "the good lines are read: a confirmed order without a payment here is not refunded" \
  "missing_here:$(k 9):none:false" \
  "$(jq -r '[.items[] | select(.kind != "malformed_line") | "\(.kind):\(.charge_key):\(.action):\(.resolved)"] | join(" ")' "$TEST_TMP/c.json")"
check_eq "the run counts 13 lines, 11 refused" "13 11" "$(jq -r '.run | "\(.lines) \(.rejected)"' "$TEST_TMP/c.json")"
check_eq "nothing was executed: payments are all there" "$payments_before" "$(sql "select count(*) from payments")"
check "no command ran" test ! -e "$TEST_TMP/pwned"
"$ROOT/scripts/reconcile" --date "$cday" --channel card --settlement "$TEST_TMP/c.csv" --fix > /dev/null
check_eq "--fix on it refunds nothing" 4 "$(stat .refunds.count)"

# --- D. usage and configuration ---------------------------------------------------------------
rc() { "$@" > /dev/null 2>&1; echo $?; }
check_eq "--help exits 0" 0 "$(rc "$ROOT/scripts/reconcile" --help)"
check_eq "no arguments: 2" 2 "$(rc "$ROOT/scripts/reconcile")"
check_eq "a bad date: 2" 2 "$(rc reconcile --date 2024-02-30 --settlement "$TEST_TMP/a.csv")"
check_eq "a bad channel name: 2" 2 "$(rc "$ROOT/scripts/reconcile" --date "$day" --channel 'x;y' --settlement "$TEST_TMP/a.csv")"
check_eq "a bad format: 2" 2 "$(rc reconcile --settlement "$TEST_TMP/a.csv" --format xml)"
check_eq "no such file: 2" 2 "$(rc reconcile --settlement "$TEST_TMP/none.csv")"
echo "not,a,settlement" > "$TEST_TMP/bad-header.csv"
check_eq "not a settlement file: 2" 2 "$(rc reconcile --settlement "$TEST_TMP/bad-header.csv")"
check_eq "--fix without the channel's URL: 2" 2 \
  "$(PAYMENT_URL='' rc reconcile --settlement "$TEST_TMP/a.csv" --fix)"
check_eq "PAYMENT_CHANNELS names the URL: exit 0" 0 \
  "$(channels="wallet=http://127.0.0.1:1,card=$PAYMENT_URL"; PAYMENT_URL='' PAYMENT_CHANNELS=$channels rc reconcile --settlement "$TEST_TMP/a.csv" --fix)"
check_eq "a malformed PAYMENT_CHANNELS: 2" 2 \
  "$(PAYMENT_CHANNELS="card" rc reconcile --settlement "$TEST_TMP/a.csv" --fix)"
check_eq "an unreachable database: 2" 2 \
  "$(DATABASE_URL=postgresql://nobody@127.0.0.1:1/none rc reconcile --settlement "$TEST_TMP/a.csv")"
test_done
