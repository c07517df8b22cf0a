#!/usr/bin/env bash
# The outbox fast path and per-order event order: an event a worker consumed has been
# published even when its publisher has not marked its outbox row yet, so it must not hold back
# the events it caused: the consumer's fast path must not take the unmarked row for an older
# unpublished event of the same order and leave its own event to the relay (a second's wait).
# Here the upstream row is kept unmarked and locked (no relay can take
# it) while the payment worker consumes it: payment.succeeded must still go out, and the order be
# confirmed. order.confirmed, whose writer did not consume stock.reserved, waits behind it.
source "$(dirname "$0")/lib.sh"
pipeline_env
P=$ROOT/scripts/pipeline
release_holder() { # the sleeping session keeps its lock until it is ended server-side
  sql "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'fast-path-holder'" >/dev/null
  kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null; holder=
}
on_exit '[ -n "${holder:-}" ] && release_holder; "$P" down >/dev/null 2>&1'

"$ROOT/scripts/stock" set SKU-F 10 >/dev/null
check "pipeline starts without the payment worker" "$P" up payment=0
place_order SKU-F "fast-$RANDOM"
status_is() { [ "$(sql "select status from orders limit 1")" = "$1" ]; }
check "the order is reserved" wait_for 20 status_is reserved
queued() { [ "$(queue_messages payment)" = 1 ]; }
check "its stock.reserved waits in the payment queue" wait_for 10 queued
order=$(sql "select id from orders limit 1")

# Its publisher "has not marked it yet": unmarked, and locked so no relay publishes it again. One
# session unmarks the row and locks it right after, so the workers' relays (each looks every
# second) have only a round trip to take it in between; if one did, the row is marked again and
# the set-up is made again until the lock holds an unmarked row.
locked() { # the holder has its row lock: it has gone on to its sleep
  [ "$(sql "select count(*) from pg_stat_activity where application_name = 'fast-path-holder'
            and state = 'active' and query like '%pg_sleep%'")" -ge 1 ]; }
unmarked_reserved() { sql "select count(*) from outbox where routing_key = 'stock.reserved' and published_at is null"; }
for attempt in 1 2 3 4 5; do
  PGAPPNAME=fast-path-holder psql -X -q "$DATABASE_URL" \
    -c "update outbox set published_at = null where routing_key = 'stock.reserved'" -c "begin" \
    -c "select id from outbox where routing_key = 'stock.reserved' for update" \
    -c "select pg_sleep(90)" >/dev/null 2>&1 &
  holder=$!
  wait_for 10 locked && [ "$(unmarked_reserved)" = 1 ] && break
  release_holder
done
check "the upstream row is held unmarked" test -n "$holder"

"$P" scale payment=1 >/dev/null
check "the order is confirmed while its stock.reserved is still unmarked" wait_for 30 status_is confirmed
check_eq "stock.reserved is indeed still unmarked" 1 \
  "$(sql "select count(*) from outbox where routing_key = 'stock.reserved' and published_at is null")"
check_eq "payment.succeeded, caused by it, went out" 1 \
  "$(sql "select count(*) from outbox where aggregate_id = '$order' and routing_key = 'payment.succeeded' and published_at is not null")"
check_eq "order.confirmed, whose writer did not consume stock.reserved, waits behind it" 1 \
  "$(sql "select count(*) from outbox where aggregate_id = '$order' and routing_key = 'order.confirmed' and published_at is null")"

release_holder
all_out() { [ "$(sql "select count(*) from outbox where published_at is null")" = 0 ]; }
check "once released, a relay publishes stock.reserved again (the inbox drops the repeat), then order.confirmed" wait_for 15 all_out
check "stock.reserved was marked before order.confirmed" test "$(sql "select count(*) from outbox a, outbox b
  where a.aggregate_id = '$order' and b.aggregate_id = '$order' and a.routing_key = 'stock.reserved'
    and b.routing_key = 'order.confirmed' and a.published_at <= b.published_at")" = 1
check "the pipeline settles" pipeline_idle 30
test_done
