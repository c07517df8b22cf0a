#!/usr/bin/env bash
# Hostile tenants at the intake: two clients, A and B. B can neither read nor cancel
# A's order (404, nothing published, A's order untouched); an Idempotency-Key reused with another
# body is refused 422 and publishes nothing, while the same body (whatever its spacing or key
# order) answers the same order, also when both arrive at once; keys are per client. With
# PostgreSQL stalled (SIGSTOP), /healthz is served as usual, reads and orders (every order's
# payment token is recorded there) are refused 503 within the database deadline, and all works
# again after SIGCONT.
# Each case asserts the exact status and JSON error, that nothing was published, and that the
# intake still serves.
source "$(dirname "$0")/lib.sh"
port=$(free_base 20000 24000 4 4)
U=http://127.0.0.1:$port
KA=$ORDERPIPE_API_KEY
A_ID=$(grep -F ":$KA" "$ORDERPIPE_API_KEYS_FILE" | head -1 | cut -d: -f1)
KB=rival-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
# The test's own keys file: the harness's client (A) and a second one (B).
{ cat "$ORDERPIPE_API_KEYS_FILE"; echo "rival:$KB"; } > "$TEST_TMP/api-keys"
chmod 600 "$TEST_TMP/api-keys"
export ORDERPIPE_API_KEYS_FILE=$TEST_TMP/api-keys
unset ORDERPIPE_API_KEYS
export INTAKE_LISTEN=127.0.0.1:$port INTAKE_DB_TIMEOUT_MS=1000
export INTAKE_RATE_PER_CLIENT=100000 INTAKE_BURST_PER_CLIENT=100000 INTAKE_RATE_GLOBAL=100000
export METRICS_LISTEN=127.0.0.1:0
postmaster=$(head -1 "${ORDERPIPE_STACK_DIR:-$ROOT/.stack}/pg/postmaster.pid")
stopped=()
# PostgreSQL is the whole run's: whatever this test stops is resumed however it ends.
on_exit 'for p in "${stopped[@]}"; do kill -CONT "$p" 2>/dev/null; done'

# A key past its retention, which the intake prunes (its first round is 5-35 s after start).
sql "insert into idempotency_keys(client_id, key, body_sha256, order_id, created_at) values
     ('$A_ID', 'ancient', sha256('x'), gen_random_uuid(), now() - interval '8 days')" >/dev/null
start_bg intake "$ROOT/bin/orderpipe-intake"
start_bg compensation "$ROOT/bin/orderpipe-compensation"
up() { curl -fs -m 2 "$U/healthz" >/dev/null; }
check "the intake comes up healthy" wait_for 20 up
mgmt PUT "/queues/$RABBITMQ_VHOST/tap" '{"durable":true}' >/dev/null
mgmt POST "/bindings/$RABBITMQ_VHOST/e/orderpipe.events/q/tap" '{"routing_key":"#"}' >/dev/null
# Every event anyone publishes lands in the tap; "published" is how many did since the last mark.
mark() { base=$(queue_messages tap); }
published() { echo $(( $(queue_messages tap) - base )); }

req() { # METHOD PATH BODY KEY [curl args...] -> "status error field"; its seconds in $TEST_TMP/time
  local m=$1 p=$2 b=$3 k=$4; shift 4
  curl -s -m 10 -o "$TEST_TMP/resp" -w '%{http_code} %{time_total}' -X "$m" "$U$p" ${b:+--data-binary "$b"} \
    -H "Authorization: Bearer $k" -H 'Content-Type: application/json' "$@" > "$TEST_TMP/code"
  cut -d' ' -f2 "$TEST_TMP/code" > "$TEST_TMP/time"
  echo "$(cut -d' ' -f1 "$TEST_TMP/code") $(jq -r '.error // "-"' "$TEST_TMP/resp" 2>/dev/null || echo not-json) $(jq -r '.field // "-"' "$TEST_TMP/resp" 2>/dev/null)"
}
# case DESCRIPTION EXPECTED METHOD PATH BODY KEY [curl args]: the answer, nothing published, and
# the intake still healthy.
case_() {
  local d=$1 e=$2; shift 2
  mark
  check_eq "$d: $e" "$e" "$(req "$@")"
  check_eq "$d: nothing published" 0 "$(published)"
  check "$d: the intake still serves" up
}
order() { # CUSTOMER QUANTITY -> an order body
  echo '{"customer_id":"'"$1"'","currency":"EUR","lines":[{"sku":"SKU-T","quantity":'"$2"',"unit_price":500}],"payment":{"token":"tok_ok"}}'
}
record() { # ORDER-ID CLIENT: the order as the reservation worker records it
  sql "insert into orders(id, client_id, customer_id, currency, total, payment_token, placed_at)
       values ('$1', '$2', 'c-1', 'EUR', 500, 'tok_ok', now());
       insert into order_lines values ('$1', 1, 'SKU-T', 1, 500);
       insert into order_transitions(order_id, status) values ('$1', 'pending')" >/dev/null
}
status_of() { sql "select status || ':' || coalesce(cancel_reason, '') from orders where id = '$1'"; }

# --- reads and cancels across tenants --------------------------------------------------------
mark
check_eq "A places an order" "202 - -" "$(req POST /v1/orders "$(order c-a 1)" "$KA" -H 'Idempotency-Key: a-1')"
a1=$(jq -r .order_id "$TEST_TMP/resp")
case_ "A cancels its order before it is recorded" "404 not_found order_id" POST "/v1/orders/$a1/cancel" '' "$KA"
record "$a1" "$A_ID"
check_eq "A reads its recorded order" "200 - -" "$(req GET "/v1/orders/$a1" '' "$KA")"
case_ "B reads A's order" "404 not_found order_id" GET "/v1/orders/$a1" '' "$KB"
check "B learns nothing of it" jq -e '(.order_id == null) and (.status == null) and (.message | length) > 0' "$TEST_TMP/resp"
case_ "B cancels A's order" "404 not_found order_id" POST "/v1/orders/$a1/cancel" '' "$KB"
case_ "B cancels an unknown order" "404 not_found order_id" POST "/v1/orders/$(cat /proc/sys/kernel/random/uuid)/cancel" '' "$KB"
case_ "A cancels an unknown order" "404 not_found order_id" POST "/v1/orders/$(cat /proc/sys/kernel/random/uuid)/cancel" '' "$KA"
# A's own cancel of a second order goes through the same compensation queue after B's attempt:
# once it is cancelled, B's cancel (had it been published) would have been handled too.
check_eq "A places a second order" "202 - -" "$(req POST /v1/orders "$(order c-a 2)" "$KA")"
a2=$(jq -r .order_id "$TEST_TMP/resp")
record "$a2" "$A_ID"
check_eq "A cancels its own recorded order" "202 - -" "$(req POST "/v1/orders/$a2/cancel" '' "$KA")"
cancelled() { [ "$(status_of "$a2")" = cancelled:customer_cancelled ]; }
check "which compensation cancels" wait_for 30 cancelled
check_eq "A's first order stays pending, untouched by B" "pending:" "$(status_of "$a1")"
check_eq "and has exactly its one transition" 1 "$(sql "select count(*) from order_transitions where order_id = '$a1'")"

# --- Idempotency-Keys --------------------------------------------------------------------------
relayed() { [ "$(sql "select count(*) from outbox where published_at is null")" = 0 ]; }
check "compensation's events are out" wait_for 30 relayed
queue_get tap 100 >/dev/null
mark
check_eq "a keyed order" "202 - -" "$(req POST /v1/orders "$(order c-k 1)" "$KA" -H 'Idempotency-Key: k-1')"
k1=$(jq -r .order_id "$TEST_TMP/resp")
check_eq "the same key and body again" "202 - -" "$(req POST /v1/orders "$(order c-k 1)" "$KA" -H 'Idempotency-Key: k-1')"
check_eq "answers the same order" "$k1" "$(jq -r .order_id "$TEST_TMP/resp")"
check_eq "with the same body spaced and ordered otherwise" "202 - -" "$(req POST /v1/orders \
  '{ "payment": {"token": "tok_ok"},
     "lines": [ {"unit_price": 500, "quantity": 1, "sku": "SKU-T"} ],
     "currency": "EUR", "customer_id": "c-k" }' "$KA" -H 'Idempotency-Key: k-1')"
check_eq "still the same order" "$k1" "$(jq -r .order_id "$TEST_TMP/resp")"
msgs=$(queue_get tap 10)
check_eq "every message published is of that one order (and one event id)" "1 1" \
  "$(jq -r '[.[].payload | fromjson | .orderid] | unique | length' <<< "$msgs") $(jq -r '[.[].properties.message_id] | unique | length' <<< "$msgs")"
check_eq "one key row for it" "1 $k1" "$(sql "select count(*) || ' ' || min(order_id::text) from idempotency_keys where key = 'k-1'")"
case_ "the same key with another quantity" "422 idempotency_key_reused Idempotency-Key" POST /v1/orders "$(order c-k 2)" "$KA" -H 'Idempotency-Key: k-1'
check "its message says why" jq -e '.message | test("different body")' "$TEST_TMP/resp"
case_ "the same key with another customer" "422 idempotency_key_reused Idempotency-Key" POST /v1/orders "$(order c-other 1)" "$KA" -H 'Idempotency-Key: k-1'
case_ "the same key with an extra member" "422 idempotency_key_reused Idempotency-Key" POST /v1/orders \
  '{"customer_id":"c-k","currency":"EUR","lines":[{"sku":"SKU-T","quantity":1,"unit_price":500}],"payment":{"token":"tok_ok"},"notify":{"email":"x@example.com"}}' "$KA" -H 'Idempotency-Key: k-1'
check_eq "the key still answers its first order" "202 - -" "$(req POST /v1/orders "$(order c-k 1)" "$KA" -H 'Idempotency-Key: k-1')"
check_eq "the first order's id" "$k1" "$(jq -r .order_id "$TEST_TMP/resp")"
queue_get tap 10 >/dev/null
mark
check_eq "B uses A's key with A's body" "202 - -" "$(req POST /v1/orders "$(order c-k 1)" "$KB" -H 'Idempotency-Key: k-1')"
check "and gets another order (keys are per client)" test "$(jq -r .order_id "$TEST_TMP/resp")" != "$k1"
check_eq "B's key with another body is B's own" "202 - -" "$(req POST /v1/orders "$(order c-b 3)" "$KB" -H 'Idempotency-Key: k-2')"
check_eq "two orders published" 2 "$(published)"
queue_get tap 10 >/dev/null

# The bulk import follows the same rule, with the same table.
printf '%s\n' "{\"client_id\":\"$A_ID\",\"idempotency_key\":\"k-1\",\"order\":$(order c-k 1)}" \
  "{\"client_id\":\"$A_ID\",\"idempotency_key\":\"k-1\",\"order\":$(order c-k 5)}" > "$TEST_TMP/bulk.ndjson"
mark
"$ROOT/bin/orderpipe-enqueue" "$TEST_TMP/bulk.ndjson" > "$TEST_TMP/bulk.json"; rc=$?
check_eq "enqueue: a reused key with another body rejects that line (exit 1)" 1 "$rc"
check "enqueue: line 1 (the same body) accepted, line 2 idempotency_key_reused" \
  jq -e '.accepted == 1 and ([.rejected[] | [.line, .error, .field]] == [[2, "idempotency_key_reused", "idempotency_key"]])' "$TEST_TMP/bulk.json"
msgs=$(queue_get tap 10)
check_eq "enqueue: only the same body's order went out" "$k1" "$(jq -r '[.[].payload | fromjson | .orderid] | unique | join(",")' <<< "$msgs")"
(unset DATABASE_URL; "$ROOT/bin/orderpipe-enqueue" "$TEST_TMP/bulk.ndjson" > "$TEST_TMP/bulk2.json" 2>/dev/null); rc=$?
check_eq "enqueue: keyed lines without a database stop the import (exit 2)" "2 0" "$rc $(jq .accepted "$TEST_TMP/bulk2.json")"

# Two requests at once: the same body answers one order to both; different bodies: one wins.
both() { # KEY BODY1 BODY2 -> "status1 status2 id1 id2"
  local i
  for i in 1 2; do
    local b=$2; [ $i = 2 ] && b=$3
    curl -s -m 10 -o "$TEST_TMP/c$i" -w '%{http_code}' -X POST "$U/v1/orders" --data-binary "$b" \
      -H "Authorization: Bearer $KA" -H 'Content-Type: application/json' -H "Idempotency-Key: $1" > "$TEST_TMP/s$i" &
  done
  wait
  echo "$(cat "$TEST_TMP/s1") $(cat "$TEST_TMP/s2") $(jq -r '.order_id // .error' "$TEST_TMP/c1") $(jq -r '.order_id // .error' "$TEST_TMP/c2")"
}
for n in 1 2 3; do
  read -r s1 s2 i1 i2 <<< "$(both "same-$n" "$(order c-s 1)" "$(order c-s 1)")"
  check_eq "identical keyed requests at once ($n): both accepted with one order" "202 202 $i1" "$s1 $s2 $i2"
  read -r s1 s2 i1 i2 <<< "$(both "diff-$n" "$(order c-d 1)" "$(order c-d 2)")"
  check_eq "different bodies at once ($n): one accepted, one refused" "202 422" "$(printf '%s\n' "$s1" "$s2" | sort | tr '\n' ' ' | sed 's/ $//')"
  check "($n) the refused one says idempotency_key_reused" grep -qx idempotency_key_reused <(printf '%s\n' "$i1" "$i2")
done
msgs=$(queue_get tap 100)
check_eq "of the racing pairs, 6 orders were published" 6 "$(jq -r '[.[].payload | fromjson | .orderid] | unique | length' <<< "$msgs")"

# --- PostgreSQL stalled ------------------------------------------------------------------------
# The intake's own backend and the postmaster stop (new connections hang in the listen backlog);
# other tests' sessions are left alone, and all is resumed at once below (or at exit).
check "A reads its order while the database is up" test "$(req GET "/v1/orders/$a1" '' "$KA")" = "200 - -"
mapfile -t backends < <(sql "select pid from pg_stat_activity where application_name = 'orderpipe-intake' and datname = current_database()")
check "the intake holds a database connection" test "${#backends[@]}" -ge 1
stopped=("$postmaster" "${backends[@]}")
check "PostgreSQL stops answering" kill -STOP "${stopped[@]}"
timed() { # -> "status error seconds", the seconds as curl measured the request itself (the
  # programs around it can take seconds to start on a busy machine)
  local r
  r=$(req "$@")
  echo "$(cut -d' ' -f1-2 <<< "$r") $(cat "$TEST_TMP/time")"
}
mark
check_eq "stalled: GET answers 503 within its deadline" "503 database_unavailable ok" \
  "$(timed GET "/v1/orders/$a1" '' "$KA" | awk '{print $1, $2, ($3 <= 3 ? "ok" : "slow " $3 "s")}')"
check_eq "stalled: an order without a key is refused 503 within the deadline" "503 database_unavailable ok" \
  "$(timed POST /v1/orders "$(order c-n 1)" "$KA" | awk '{print $1, $2, ($3 <= 3 ? "ok" : "slow " $3 "s")}')"
check_eq "stalled: a keyed order is refused 503 within the deadline" "503 database_unavailable ok" \
  "$(timed POST /v1/orders "$(order c-n 1)" "$KA" -H 'Idempotency-Key: stalled-1' | awk '{print $1, $2, ($3 <= 3 ? "ok" : "slow " $3 "s")}')"
check_eq "stalled: a cancel is refused 503 within the deadline" "503 database_unavailable ok" \
  "$(timed POST "/v1/orders/$a1/cancel" '' "$KA" | awk '{print $1, $2, ($3 <= 3 ? "ok" : "slow " $3 "s")}')"
check_eq "stalled: nothing was published" 0 "$(published)"
slow=0
for i in 1 2 3 4 5; do curl -fs -o /dev/null -m 1 "$U/healthz" || slow=$((slow + 1)); done
check_eq "stalled: /healthz answers within 1 s every time" 0 "$slow"
check_eq "stalled: another GET is refused 503, not queued behind the stall" "503 database_unavailable ok" \
  "$(timed GET "/v1/orders/$a1" '' "$KB" | awk '{print $1, $2, ($3 <= 3 ? "ok" : "slow " $3 "s")}')"
check "PostgreSQL answers again" kill -CONT "${stopped[@]}"
stopped=()
reads() { [ "$(req GET "/v1/orders/$a1" '' "$KA")" = "200 - -" ]; }
check "after SIGCONT: GET works again" wait_for 30 reads
check_eq "after SIGCONT: a keyed order is accepted" "202 - -" "$(req POST /v1/orders "$(order c-n 1)" "$KA" -H 'Idempotency-Key: stalled-1')"
check_eq "after SIGCONT: a cancel by its owner is accepted" "202 - -" "$(req POST "/v1/orders/$a1/cancel" '' "$KA")"
pruned() { [ "$(sql "select count(*) from idempotency_keys where key = 'ancient'")" = 0 ]; }
check "a key past IDEMPOTENCY_RETENTION (7d) is pruned" wait_for 60 pruned
check_eq "and the recent ones are kept" 1 "$(sql "select count(*) from idempotency_keys where key = 'k-1' and client_id = '$A_ID'")"
test_done
