#!/usr/bin/env bash
# The fake payment provider on its own, driven with curl: pending charges completed and notified
# (each notification signed `Orderpipe-Signature: t=..,v1=HMAC-SHA256(secret, "t.body")`, checked
# here with openssl), failed and never-completing ones, the query and void APIs, lost, duplicated,
# forged and reordered notifications counted by GET /_stats, refunds, the JSON-lines ledger and the
# settlement CSV with and without deliberate discrepancies. The receiver is
# tests/helpers/notification-receiver, which records every post with the answer it gave.
source "$(dirname "$0")/lib.sh"

base=$(free_base 24000 28000 2 2)
P=http://127.0.0.1:$base
SECRET="s3cret-$RANDOM"
ledger=$TEST_TMP/ledger.jsonl recv=$TEST_TMP/received.jsonl

help=$(fake-provider --help)
check "--help exits 0 and names the notification flags" grep -q -- '--notify-url' <<< "$help"
check "usage errors exit 2" test "$(fake-provider 2>/dev/null; echo $?)" = 2

start_bg receiver notification-receiver "127.0.0.1:$((base + 1))" "$SECRET" "$recv"
start_bg provider fake-provider --notify-url "http://127.0.0.1:$((base + 1))/notify/card" \
  --secret "$SECRET" "127.0.0.1:$base" "$ledger"
provider_pid=$bg_pid
control() { curl -fsS -m 10 -X POST "$P/_control?$1" >/dev/null; }
check "the fake provider is up" wait_for 60 control "notify_delay_ms=200"
check "the receiver is up" wait_for 60 curl -s -o /dev/null "http://127.0.0.1:$((base + 1))/"
: > "$recv" # the receiver's start-up probe is not a notification
fds() { ls "/proc/$provider_pid/fd" | wc -l; }
fds_at_start=$(fds)

# charge KEY TOKEN [AMOUNT] -> "<http status> <body>"
charge() {
  curl -sS -m 10 -X POST "$P/charges" -H "Idempotency-Key: $1" -H 'Content-Type: application/json' \
    -d "{\"order_id\":\"$1\",\"amount\":${3:-500},\"currency\":\"EUR\",\"token\":\"$2\"}" \
    -w ' %{http_code}' | awk '{ print $NF, $0 }' | sed 's/ [0-9]*$//'
}
query() { curl -sS -m 10 "$P/charges/$1"; }
query_status() { query "$1" | jq -r .status; }
void() { curl -sS -m 10 -o "$TEST_TMP/void.out" -w '%{http_code}' -X POST "$P/charges/$1/void" -H "Idempotency-Key: void:$1"; }
stat() { curl -fsS -m 10 "$P/_stats" | jq -r "$1"; }
received() { jq -s "[.[] | select(.body | fromjson | .charge_key == \"$1\")]" "$recv"; }
received_count() { [ "$(received "$1" | jq length)" = "$2" ]; }
ledger_has() { jq -e --arg k "$1" --arg kind "$2" 'select(.key == $k and .kind == $kind)' "$ledger" >/dev/null 2>&1; }
k() { printf '00000000-0000-4000-8000-%012d' "$1"; }

# --- a pending charge succeeds later, and is notified --------------------------------------
control "notify_delay_ms=6000"
out=$(charge "$(k 1)" tok_pending 1999)
check_eq "tok_pending is answered 202 pending" "202 pending" "$(cut -d' ' -f1 <<< "$out") $(cut -d' ' -f2- <<< "$out" | jq -r .status)"
check_eq "a query says pending meanwhile" pending "$(query_status "$(k 1)")"
check "the ledger has no charge while it is pending" bash -c "! grep -q '$(k 1)' '$ledger'"
check "the pending charge is notified" wait_for 60 received_count "$(k 1)" 1
check_eq "then a query says succeeded" succeeded "$(query_status "$(k 1)")"
check "and the ledger has its charge" ledger_has "$(k 1)" charge
n=$(received "$(k 1)" | jq '.[0]')
body=$(jq -r .body <<< "$n") sig=$(jq -r .signature <<< "$n")
check_eq "the notification carries the charge" "$(k 1) succeeded 1999 EUR evt_ch_1 ch_1" \
  "$(jq -r '[.charge_key, .status, .amount, .currency, .event_id, .provider_ref] | join(" ")' <<< "$body")"
check "the signature header is t=<unix>,v1=<64 hex>" grep -qE '^t=[0-9]+,v1=[0-9a-f]{64}$' <<< "$sig"
t=${sig#t=}; t=${t%%,*}; v1=${sig##*v1=}
want=$(printf '%s.%s' "$t" "$body" | openssl dgst -sha256 -hmac "$SECRET" | awk '{ print $NF }')
check_eq "v1 is HMAC-SHA256(secret, t.body) (openssl)" "$want" "$v1"
check "t is now (within 5 minutes)" test $(( $(date +%s) - t )) -lt 300
check_eq "the receiver accepted it" 200 "$(jq -r .status <<< "$n")"
out=$(charge "$(k 1)" tok_pending 1999)
check_eq "a repeat answers as the booking stands: 200 succeeded" "200 succeeded" \
  "$(cut -d' ' -f1 <<< "$out") $(cut -d' ' -f2- <<< "$out" | jq -r .status)"

# --- a pending charge that fails; one that never completes; voids ---------------------------
control "notify_delay_ms=200"
charge "$(k 2)" tok_pending_fail > /dev/null
check "a failing pending charge is notified" wait_for 60 received_count "$(k 2)" 1
check_eq "as failed, with a reason" "failed true" \
  "$(received "$(k 2)" | jq -r '.[0].body | fromjson | "\(.status) \(.reason != null)"')"
check_eq "a query says failed" failed "$(query_status "$(k 2)")"
check "a failed charge is not in the ledger" bash -c "! grep -q '$(k 2)' '$ledger'"

charge "$(k 3)" tok_pending_never > /dev/null
check_eq "tok_pending_never: a void of the pending charge is 200" 200 "$(void "$(k 3)")"
check_eq "answered voided" voided "$(jq -r .status "$TEST_TMP/void.out")"
check_eq "a query says voided" voided "$(query_status "$(k 3)")"
check_eq "a repeated void is 200 again" 200 "$(void "$(k 3)")"
check_eq "a void of a succeeded charge is 409" 409 "$(void "$(k 1)")"
check_eq "answered succeeded (the caller refunds)" succeeded "$(jq -r .status "$TEST_TMP/void.out")"
check_eq "a void of a charge never booked is 404" 404 "$(void "$(k 99)")"
check_eq "a query of a charge never booked is 404" 404 \
  "$(curl -sS -o /dev/null -w '%{http_code}' "$P/charges/$(k 99)")"
check_eq "a void without Idempotency-Key is 400" 400 \
  "$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$P/charges/$(k 3)/void")"

control "void_refuse=1&late_ms=3000"
charge "$(k 4)" tok_pending_late > /dev/null
check_eq "tok_pending_late with void_refuse: the void is 409" 409 "$(void "$(k 4)")"
check_eq "answered processing" processing "$(jq -r .status "$TEST_TMP/void.out")"
check "the late charge succeeds and is notified" wait_for 60 received_count "$(k 4)" 1
check_eq "a query says succeeded" succeeded "$(query_status "$(k 4)")"
check "the late charge is in the ledger" ledger_has "$(k 4)" charge
control "void_refuse=0"
charge "$(k 5)" tok_pending_late > /dev/null
check_eq "tok_pending_late without void_refuse: the void wins" 200 "$(void "$(k 5)")"
# A late charge booked after it completes after it too: once that one is notified, the voided
# one's time has passed.
charge "$(k 14)" tok_pending_late > /dev/null
check "a later late charge is notified" wait_for 60 received_count "$(k 14)" 1
check_eq "the voided late charge stays voided" voided "$(query_status "$(k 5)")"
check "and is not in the ledger" bash -c "! grep -q '$(k 5)' '$ledger'"

# --- lost, duplicated, forged, reordered notifications --------------------------------------
control "lose_percent=100"
charge "$(k 6)" tok_pending > /dev/null
lost_one() { [ "$(stat .notifications.lost)" = 1 ]; }
check "a lost notification is counted" wait_for 60 lost_one
check_eq "the lost charge succeeded all the same (a query finds it)" succeeded "$(query_status "$(k 6)")"
check_eq "and nothing was posted for it" 0 "$(received "$(k 6)" | jq length)"

control "lose_percent=0&dup_percent=100"
charge "$(k 7)" tok_pending > /dev/null
check "a duplicated notification is posted twice" wait_for 60 received_count "$(k 7)" 2
check_eq "with the same event_id, both accepted" "1 200 200" \
  "$(received "$(k 7)" | jq -r '([.[].body | fromjson | .event_id] | unique | length | tostring), (.[].status | tostring)' | tr '\n' ' ' | sed 's/ $//')"

control "dup_percent=0&forge_percent=100"
charge "$(k 8)" tok_pending > /dev/null
check "a forged copy is posted beside the real one" wait_for 60 received_count "$(k 8)" 2
check_eq "the receiver accepted the real one and refused the forgery" "200 401" \
  "$(received "$(k 8)" | jq -r '[.[].status] | sort | map(tostring) | join(" ")')"
forged=$(received "$(k 8)" | jq -r '.[] | select(.status == 401) | .signature')
ft=${forged#t=}; ft=${ft%%,*}
fbody=$(received "$(k 8)" | jq -r '.[] | select(.status == 401) | .body')
real=$(printf '%s.%s' "$ft" "$fbody" | openssl dgst -sha256 -hmac "$SECRET" | awk '{ print $NF }')
check "the forgery's v1 is not the channel's HMAC (openssl)" test "${forged##*v1=}" != "$real"

control "forge_percent=0&reorder=1&reorder_batch=3&notify_delay_ms=300"
# One charge after the other, so each completes in its own turn of the provider's event loop (in
# one turn they would share a deadline, and the timers' order among equals is not theirs), all
# well within the batch's hold time (5 s).
for i in 9 10 11; do
  curl -sS -o /dev/null -X POST "$P/charges" -H "Idempotency-Key: $(k $i)" \
    -d "{\"order_id\":\"$(k $i)\",\"amount\":500,\"currency\":\"EUR\",\"token\":\"tok_pending\"}"
  sleep 0.05
done
check "the reordered batch arrives" wait_for 60 received_count "$(k 9)" 1
batch_in() { [ "$(jq -s '[.[] | select(.body | fromjson | .charge_key | IN($a, $b, $c))] | length' \
  --arg a "$(k 9)" --arg b "$(k 10)" --arg c "$(k 11)" "$recv")" = 3 ]; }
check "all three of the batch arrive" wait_for 60 batch_in
check_eq "last completed first" "$(k 11) $(k 10) $(k 9)" \
  "$(tail -n 3 "$recv" | jq -r '.body | fromjson | .charge_key' | tr '\n' ' ' | sed 's/ $//')"
control "reorder=0&notify_delay_ms=200"

answers_in() { [ "$(stat '.notifications.answers["200"] // 0')" -ge 10 ]; }
check "every answer is counted" wait_for 60 answers_in
check_eq "stats: sent lost duplicated forged reordered" "9 1 1 1 3" \
  "$(stat '.notifications | "\(.sent) \(.lost) \(.duplicated) \(.forged) \(.reordered)"')"
check_eq "stats: answers by status" "10 1" \
  "$(stat '.notifications.answers | "\(.["200"]) \(.["401"])"')"
check_eq "stats: posts = sent + copies" 11 "$(stat .notifications.posts)"
check "the notifications' connections are closed once answered (no descriptor left per post)" \
  test "$(fds)" -lt $((fds_at_start + 3))
check_eq "stats: voids voided, refused, unknown" "3 2 1" \
  "$(stat '.voids | "\(.voided) \(.refused) \(.unknown)"')"

# --- today's behaviours, kept -----------------------------------------------------------------
out=$(charge "$(k 12)" tok_decline)
check_eq "tok_decline is 402" 402 "${out%% *}"
check_eq "tok_flaky: 503 first" 503 "$(charge "$(k 13)" tok_flaky | cut -d' ' -f1)"
check_eq "tok_flaky: 503 second" 503 "$(charge "$(k 13)" tok_flaky | cut -d' ' -f1)"
check_eq "tok_flaky: 200 third" 200 "$(charge "$(k 13)" tok_flaky | cut -d' ' -f1)"
refund() {
  curl -sS -m 10 -X POST "$P/refunds" -H "Idempotency-Key: refund:$1" \
    -d "{\"order_id\":\"$1\",\"charge_key\":\"$1\",\"amount\":500}"
}
r1=$(refund "$(k 13)") r2=$(refund "$(k 13)")
check_eq "a refund answers the amount refunded" 500 "$(jq -r .amount <<< "$r1")"
check_eq "a repeated refund is the same booking" "$r1" "$r2"
check_eq "a query says refunded" refunded "$(query_status "$(k 13)")"
check_eq "a refund of a voided charge refunds 0" 0 "$(refund "$(k 3)" | jq -r .amount)"
check_eq "the ledger: one refund line, for the refunded charge" "refund:$(k 13) 500" \
  "$(jq -r 'select(.kind == "refund") | "\(.key) \(.amount)"' "$ledger")"
check_eq "the ledger: a charge line per succeeded charge" 10 \
  "$(jq -s '[.[] | select(.kind == "charge")] | length' "$ledger")"

# --- the settlement file ---------------------------------------------------------------------
day=$(date -u +%F)
curl -fsS "$P/settlement?date=$day" > "$TEST_TMP/settle.csv"
check_eq "the settlement header" "charge_key,provider_ref,amount,currency,status,settled_at" \
  "$(head -1 "$TEST_TMP/settle.csv")"
check_eq "one charge line per succeeded charge" 10 "$(grep -c ',succeeded,' "$TEST_TMP/settle.csv")"
check "the pending charge's line" grep -qE "^$(k 1),ch_1,1999,EUR,succeeded,${day}T[0-9:]{8}Z\$" "$TEST_TMP/settle.csv"
check "the refund's line" grep -qE "^$(k 13),re_[0-9]+,500,EUR,refunded,${day}T" "$TEST_TMP/settle.csv"
check "no line for a voided, failed or declined charge" \
  bash -c "! grep -qE '^($(k 2)|$(k 3)|$(k 5)|$(k 12)),' '$TEST_TMP/settle.csv'"
check_eq "another day's file is empty" 1 "$(curl -fsS "$P/settlement?date=2001-01-01" | wc -l)"
check_eq "a bad date is 400" 400 "$(curl -sS -o /dev/null -w '%{http_code}' "$P/settlement?date=2001-02-30")"

control "discrepancies=1"
curl -fsS "$P/settlement?date=$day" > "$TEST_TMP/disc.csv"
curl -fsS "$P/settlement?date=$day" > "$TEST_TMP/disc2.csv"
check "the same file on every request" cmp -s "$TEST_TMP/disc.csv" "$TEST_TMP/disc2.csv"
# The day's unrefunded charges in booking order: k1, k4, k14, k6, ...
check "a charge with a wrong amount" grep -q "^$(k 1),ch_1,2000,EUR,succeeded," "$TEST_TMP/disc.csv"
check "a charge with a wrong currency" grep -qE "^$(k 4),ch_[0-9]+,500,USD,succeeded," "$TEST_TMP/disc.csv"
check "a charge left out" bash -c "! grep -q '^$(k 14),' '$TEST_TMP/disc.csv'"
check "a refund that never happened" grep -q "^$(k 6),re_disc_1,500,EUR,refunded," "$TEST_TMP/disc.csv"
check "a charge unknown to us, with a UUID key" \
  grep -qE '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12},ch_disc_1,1234,EUR,succeeded,' "$TEST_TMP/disc.csv"
check_eq "everything else as booked" "$(grep -vE "^($(k 1)|$(k 4)|$(k 14)),|,ch_disc_1,|,re_disc_1," "$TEST_TMP/settle.csv")" \
  "$(grep -vE "^($(k 1)|$(k 4)|$(k 14)),|,ch_disc_1,|,re_disc_1," "$TEST_TMP/disc.csv")"
test_done
