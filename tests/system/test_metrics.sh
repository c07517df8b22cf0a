#!/usr/bin/env bash
# Every program's /metrics passes `promtool check metrics` (no errors, no lint warnings) and carries
# the families operators alert on (docs/operations.md "Metrics"); every /healthz answers 200.
# Orders go through first — good ones, a declined one, a flaky one, an out-of-stock one, a
# malformed one (400), a redelivered one (inbox duplicate) and enough to be rate limited (429) —
# so the labelled series exist and are checked with their values.
source "$(dirname "$0")/lib.sh"
WORKERS=(reservation payment notification compensation)

if ! command -v promtool >/dev/null; then
  not_ok "promtool is installed (Debian package prometheus; scripts/install-deps)"
  exit 1
fi

export ORDERPIPE_RUN_DIR=$TEST_TMP/run
port=$(free_base 20000 24000 4 4)
export INTAKE_LISTEN=127.0.0.1:$port INTAKE_URL=http://127.0.0.1:$port
export NOTIFY_LOG_FILE=$TEST_TMP/notifications.log
K=metrics-key-0123456789abcdef
export ORDERPIPE_API_KEYS="shop:$K"
unset ORDERPIPE_API_KEYS_FILE
# A burst of 8 and then one order in 1000 s, longer than the test runs: the 9th order is refused
# (429) however slowly this machine sends them.
export INTAKE_RATE_PER_CLIENT=0.001 INTAKE_BURST_PER_CLIENT=8

"$ROOT/scripts/stock" set SKU-M1 100 >/dev/null
"$ROOT/scripts/stock" set SKU-M0 0 >/dev/null

on_exit '"$ROOT/scripts/pipeline" down >/dev/null 2>&1'
check "the pipeline starts" "$ROOT/scripts/pipeline" up > "$TEST_TMP/up.txt"

# --- each worker's metrics address, from the line it logs at start-up ---
declare -A addr
for w in intake "${WORKERS[@]}"; do
  has_port() { [ -n "$(metrics_port "$w")" ]; }
  check "$w logs the port of its /metrics" wait_for 10 has_port
  addr[$w]=127.0.0.1:$(metrics_port "$w")
done

# --- traffic ---
order() { # SKU TOKEN [IDEMPOTENCY-KEY] -> HTTP status
  curl -s -o "$TEST_TMP/resp" -w '%{http_code}' -X POST "$INTAKE_URL/v1/orders" \
    -H "Authorization: Bearer $K" -H 'Content-Type: application/json' ${3:+-H "Idempotency-Key: $3"} \
    --data-binary "{\"customer_id\":\"c-1\",\"currency\":\"EUR\",\"lines\":[{\"sku\":\"$1\",\"quantity\":1,\"unit_price\":500}],\"payment\":{\"token\":\"$2\"},\"notify\":{\"email\":\"m@example.com\"}}"
}
codes=""
codes="$codes $(order SKU-M1 tok_ok k1)"
codes="$codes $(order SKU-M1 tok_ok k2)"
codes="$codes $(order SKU-M1 tok_decline k3)"
codes="$codes $(order SKU-M1 tok_flaky k4)"
codes="$codes $(order SKU-M0 tok_ok k5)"
codes="$codes $(order SKU-M1 tok_ok k1)"     # the same key again: the same order, no new one
bad=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$INTAKE_URL/v1/orders" -H "Authorization: Bearer $K" \
  -H 'Content-Type: application/json' --data-binary '{"customer_id":')
check_eq "six orders accepted" " 202 202 202 202 202 202" "$codes"
check_eq "a malformed order is refused" 400 "$bad"
curl -s -o /dev/null "$INTAKE_URL/v1/orders/00000000-0000-0000-0000-000000000000" -H "Authorization: Bearer $K"
limited=0
for i in $(seq 1 6); do [ "$(order SKU-M1 tok_ok "burst-$i")" = 429 ] && limited=$((limited + 1)); done
check "orders over the client's rate are refused (429)" test "$limited" -ge 1
ok_extra=$((6 - limited))

want=$((5 + ok_extra))
settled() {
  [ "$(sql "select count(*) from orders where status in ('confirmed','cancelled')")" -ge "$want" ] &&
    [ "$(sql "select count(*) from outbox where published_at is null")" = 0 ]
}
check "all $want orders settle" wait_for 60 settled

# A redelivery: a stock.reserved event the reservation worker published, delivered again with its
# message id — the payment worker's inbox recognises it.
ev=$(sql "select payload from outbox where routing_key = 'stock.reserved' order by id limit 1")
mid=$(jq -r .id <<< "$ev")
check "a stock.reserved event went through the outbox" test -n "$mid" -a "$mid" != null
"$ROOT/bin/orderpipe-amqp-probe" publish stock.reserved "$ev" --message-id "$mid" >/dev/null

# --- scrape every program ---
metric() { # NAME SERIES-REGEX -> the first matching sample's value
  grep -E "^$2 " "$TEST_TMP/$1.metrics" | head -1 | awk '{print $2}'
}
has_family() { # NAME FAMILY TYPE
  grep -qx "# TYPE $2 $3" "$TEST_TMP/$1.metrics"
}
positive() { awk -v v="$1" 'BEGIN { exit !(v + 0 > 0) }'; }

scrape() { # NAME
  curl -fsS -m 5 "http://${addr[$1]}/metrics" > "$TEST_TMP/$1.metrics"
}

for p in intake "${WORKERS[@]}"; do
  check "$p serves /metrics" scrape "$p"
  check_eq "$p /healthz is 200" 200 "$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://${addr[$p]}/healthz")"
  promtool check metrics < "$TEST_TMP/$p.metrics" > "$TEST_TMP/$p.promtool" 2>&1
  rc=$?
  check "$p /metrics passes promtool check metrics (exit 0)" test $rc = 0
  check "$p /metrics has no promtool lint warning" test ! -s "$TEST_TMP/$p.promtool"
  [ -s "$TEST_TMP/$p.promtool" ] && sed "s/^/    $p: /" "$TEST_TMP/$p.promtool"
  for f in process_resident_memory_bytes:gauge process_cpu_seconds_total:counter process_start_time_seconds:gauge; do
    check "$p has ${f%:*}" has_family "$p" "${f%:*}" "${f#*:}"
  done
  check "$p counts broker reconnects" has_family "$p" orderpipe_reconnects_total counter
  check "$p shows the broker reconnect series" grep -q '^orderpipe_reconnects_total{server="broker"} ' "$TEST_TMP/$p.metrics"
done

# --- the intake ---
m=intake
check "intake: HTTP requests by route and status" has_family $m orderpipe_http_requests_total counter
check "intake: 202s counted" positive "$(metric $m 'orderpipe_http_requests_total\{route="post_order",status="202"\}')"
check "intake: the 400 counted" positive "$(metric $m 'orderpipe_http_requests_total\{route="post_order",status="400"\}')"
check "intake: 429s counted" positive "$(metric $m 'orderpipe_http_requests_total\{route="post_order",status="429"\}')"
check "intake: rate-limit rejections by client" has_family $m orderpipe_rate_limited_total counter
check_eq "intake: every 429 is a rate-limit rejection" "$limited" "$(metric $m 'orderpipe_rate_limited_total\{client="shop"\}')"
check "intake: publish-confirm latency histogram" has_family $m orderpipe_intake_publish_seconds histogram
check "intake: its +Inf bucket equals its count" test \
  "$(metric $m 'orderpipe_intake_publish_seconds_bucket\{outcome="ok",le="\+Inf"\}')" = \
  "$(metric $m 'orderpipe_intake_publish_seconds_count\{outcome="ok"\}')"
check "intake: publishes in flight" has_family $m orderpipe_intake_inflight gauge
check "intake: database reconnects" grep -q '^orderpipe_reconnects_total{server="database"} ' "$TEST_TMP/$m.metrics"

# --- the workers ---
for m in "${WORKERS[@]}"; do
  check "$m: messages handled by type and outcome" has_family $m orderpipe_messages_handled_total counter
  check "$m: handling latency histogram" has_family $m orderpipe_message_handling_seconds histogram
  check "$m: retries" has_family $m orderpipe_messages_retried_total counter
  check "$m: dead letters by reason" has_family $m orderpipe_messages_dead_lettered_total counter
  check "$m: inbox duplicates" has_family $m orderpipe_inbox_duplicates_total counter
  check "$m: outbox rows published" has_family $m orderpipe_outbox_published_total counter
  check "$m: outbox backlog" has_family $m orderpipe_outbox_backlog_rows gauge
  check "$m: outbox backlog age" has_family $m orderpipe_outbox_oldest_age_seconds gauge
  backlog_empty() { scrape "$1" && [ "$(metric "$1" orderpipe_outbox_backlog_rows)" = 0 ]; }
  check "$m: the backlog gauge comes down to 0 once settled (refreshed each second)" wait_for 10 backlog_empty $m
  check "$m: database reconnects" grep -q '^orderpipe_reconnects_total{server="database"} ' "$TEST_TMP/$m.metrics"
  check "$m: its worker name" grep -q "^orderpipe_worker_info{worker=\"$m\"} 1" "$TEST_TMP/$m.metrics"
done
check "reservation handled order.placed" positive "$(metric reservation 'orderpipe_messages_handled_total\{type="order.placed",outcome="ok"\}')"
check "reservation's latency histogram counted order.placed" positive \
  "$(metric reservation 'orderpipe_message_handling_seconds_count\{type="order.placed"\}')"
check "payment retried the flaky payment" positive "$(metric payment orderpipe_messages_retried_total)"
check "payment counts the retried deliveries by type" positive \
  "$(metric payment 'orderpipe_messages_handled_total\{type="[a-z_.]*",outcome="retried"\}')"
check "the workers published outbox rows" positive "$(metric reservation orderpipe_outbox_published_total)"
dup_seen() { scrape payment && positive "$(metric payment orderpipe_inbox_duplicates_total)"; }
check "payment counts the redelivery as an inbox duplicate" wait_for 10 dup_seen
check "and as handled with outcome duplicate" positive \
  "$(metric payment 'orderpipe_messages_handled_total\{type="stock.reserved",outcome="duplicate"\}')"
# A database reconnect is counted: the reservation worker's connection is killed under it.
sql "select pg_terminate_backend(pid) from pg_stat_activity
     where datname = current_database() and application_name like 'orderpipe-reservation%'" >/dev/null
db_reconnected() {
  scrape reservation && positive "$(metric reservation 'orderpipe_reconnects_total\{server="database"\}')"
}
check "reservation counts its database reconnect" wait_for 20 db_reconnected
healthy() { [ "$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://${addr[reservation]}/healthz")" = 200 ]; }
check "and is healthy again" wait_for 10 healthy
promtool check metrics < "$TEST_TMP/reservation.metrics" > "$TEST_TMP/reservation.promtool" 2>&1
check "its /metrics still passes promtool cleanly" test $? = 0 -a ! -s "$TEST_TMP/reservation.promtool"

# docs/operations.md "Metrics" documents every family the programs serve.
families=$(cat "$TEST_TMP"/*.metrics | sed -n 's/^# TYPE \([^ ]*\) .*/\1/p' | sort -u)
check "the programs serve some families" test "$(wc -l <<< "$families")" -ge 15
undocumented=$(for f in $families; do grep -q "\`$f\`" "$ROOT/docs/operations.md" || echo "$f"; done | tr '\n' ' ')
check_eq "docs/operations.md documents every metric family" "" "$undocumented"

test_done
