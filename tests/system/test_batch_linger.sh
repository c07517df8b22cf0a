#!/usr/bin/env bash
# A batch lingers (WORKER_BATCH_LINGER_MS) for more deliveries while they keep coming: orders placed a few
# tens of ms apart are reserved in one transaction when the linger covers them; orders further
# apart than the lone delivery's wait (a fifth of the linger) each in its own; and each in its own
# when the linger is 0 (the batch takes only what is already there). A transaction's outbox rows
# share its start time (created_at defaults to now()), which is how the test tells batches apart.
# The notification worker, off the placed -> confirmed path, lingers 50 ms by default. Bad values
# are refused at start-up.
source "$(dirname "$0")/lib.sh"
pipeline_env
P=$ROOT/scripts/pipeline
on_exit '"$P" down >/dev/null 2>&1'

"$ROOT/scripts/stock" set SKU-L 100 >/dev/null
reserved_batches() { # TAG -> distinct transaction starts of the tagged orders' stock.reserved rows
  sql "select count(distinct ob.created_at) from outbox ob join orders o on o.id = ob.aggregate_id::uuid
        where ob.routing_key = 'stock.reserved' and o.idempotency_key like 'linger-$1-%'"
}
reserved_count() {
  sql "select count(*) from outbox ob join orders o on o.id = ob.aggregate_id::uuid
        where ob.routing_key = 'stock.reserved' and o.idempotency_key like 'linger-$1-%'"
}
place_spaced() { # TAG GAP: four orders, GAP seconds apart
  local i
  for i in 1 2 3 4; do
    place_order SKU-L "linger-$1-$i-$RANDOM" || return 1
    [ "$i" = 4 ] || sleep "$2"
  done
}
has_reserved() { [ "$(reserved_count "$1")" = 4 ]; }
confirmed() { [ "$(sql "select count(*) from orders where status = 'confirmed'")" = "$1" ]; }
notified() { [ "$(sql "select count(*) from notifications where status = 'sent'")" = "$1" ]; }

check "pipeline starts with batches lingering 1 s" \
  env WORKER_BATCH_LINGER_MS=1000 "$P" up
# The premise needs the four to reach the broker well within the lone delivery's wait (200 ms)
# of each other; on a busy machine the client alone may space them wider, so the four are placed
# again (new ones) until they were, by the intake's own clock.
widest_gap_ms() { # TAG -> the widest gap between two consecutive placed_at of the tagged orders
  sql "select coalesce(round(max(g) * 1000), 0) from (select extract(epoch from placed_at -
         lag(placed_at) over (order by placed_at)) as g from orders
        where idempotency_key like 'linger-$1-%') x"
}
placed=0
for attempt in 1 2 3 4 5; do
  tag=long$attempt
  place_spaced "$tag" 0.05 || break
  placed=$((placed + 4))
  wait_for 20 has_reserved "$tag" || break
  gap=$(widest_gap_ms "$tag")
  echo "# attempt $attempt: widest gap between the four $gap ms"
  [ "$gap" -lt 150 ] && break
done
check "four orders are placed 0.05 s apart, within 150 ms of each other ($gap ms)" test "$gap" -lt 150
check "all four are reserved" has_reserved "$tag"
check_eq "in one transaction" 1 "$(reserved_batches "$tag")"
# A lone delivery waits only a fifth of the linger (200 ms) for a second one. The payment worker
# stops first: its payment.succeeded events come back to the reservation queue and would make a
# batch of two out of an order and the previous one's payment.
check "the payment worker stops" "$P" scale payment=0
check "four orders are placed 0.6 s apart" place_spaced lone 0.6
check "all four are reserved" wait_for 20 has_reserved lone
check_eq "each in its own transaction" 4 "$(reserved_batches lone)"

check "the reservation worker restarts without lingering" \
  sh -c "'$P' scale reservation=0 >/dev/null && WORKER_BATCH_LINGER_MS=0 '$P' scale reservation=1 >/dev/null"
check "four more orders are placed 0.3 s apart" place_spaced none 0.3
check "all four are reserved" wait_for 20 has_reserved none
check_eq "each in its own transaction" 4 "$(reserved_batches none)"
check "the payment worker comes back" "$P" scale payment=1
check "all $((placed + 8)) orders are confirmed" wait_for 30 confirmed $((placed + 8))
check "and their customers told" wait_for 30 notified $((placed + 8))
check_invariants "every invariant holds"

out=$TEST_TMP/out
# The notification worker is off the placed -> confirmed path and lingers longer by default; the
# environment still sets every worker's linger (the test above ran its batches at 1 s).
check "the notification worker lingers 50 ms by default" \
  grep -q "(default 50, at most 1000" <(orderpipe-notification --help)
check "the reservation worker 10 ms" grep -q "(default 10, at most 1000" <(orderpipe-reservation --help)
check "the payment worker 10 ms" grep -q "(default 10, at most 1000" <(orderpipe-payment --help)
WORKER_BATCH_LINGER_MS=-5 timeout 10 orderpipe-reservation > "$out" 2>&1
check_eq "a negative WORKER_BATCH_LINGER_MS is refused with status 2" 2 "$?"
check "and named" grep -q "WORKER_BATCH_LINGER_MS: must be an integer in \[0, 1000\]" "$out"
WORKER_BATCH_LINGER_MS=1001 timeout 10 orderpipe-notification > "$out" 2>&1
check_eq "a WORKER_BATCH_LINGER_MS over a second is refused with status 2" 2 "$?"
check "and named" grep -q "WORKER_BATCH_LINGER_MS: must be an integer in \[0, 1000\]" "$out"
timeout 10 orderpipe-payment --batch-linger-ms soon > "$out" 2>&1
check_eq "a malformed --batch-linger-ms is refused with status 2" 2 "$?"
check "and named" grep -q -- "--batch-linger-ms: must be an integer" "$out"
test_done
