#!/usr/bin/env bash
# The fast path's publish refused by the broker: a worker publishes the events it has just
# committed itself, and when the broker does not take them (here stock.reserved is unroutable:
# the payment queue's binding is removed, and publishes are mandatory) the rows stay unmarked in
# the outbox and go to the relay. Once the binding is back the relay publishes them, and the
# order goes on to be confirmed, once.
source "$(dirname "$0")/lib.sh"
pipeline_env
P=$ROOT/scripts/pipeline
B=/bindings/$RABBITMQ_VHOST/e/orderpipe.events/q/payment
trap '"$P" down >/dev/null 2>&1' EXIT

"$ROOT/scripts/stock" set SKU-F 10 >/dev/null
check "the pipeline starts" "$P" up
check "stock.reserved no longer routes to the payment queue" \
  mgmt DELETE "$B/stock.reserved"
check "an order is accepted" place_order SKU-F "refused-$RANDOM"
refused() { cat "$ORDERPIPE_RUN_DIR"/logs/reservation.*.log 2>/dev/null |
            grep -q "committed events failed.*unroutable"; }
check "the reservation worker's publish of stock.reserved is refused, and it says so" wait_for 20 refused
check_eq "the order is reserved" reserved "$(sql "select status from orders")"
check_eq "its stock.reserved stays unmarked in the outbox" 1 \
  "$(sql "select count(*) from outbox where routing_key = 'stock.reserved' and published_at is null")"
sleep 3
check_eq "and stays so while it cannot be routed (the relay retries, nothing is lost)" 1 \
  "$(sql "select count(*) from outbox where routing_key = 'stock.reserved' and published_at is null")"

check "the binding is back" mgmt POST "$B" '{"routing_key":"stock.reserved"}'
status_is() { [ "$(sql "select status from orders")" = "$1" ]; }
check "the relay publishes it, and the order is confirmed" wait_for 30 status_is confirmed
check_eq "stock.reserved was published exactly once more: marked, one row" "1 1" \
  "$(sql "select count(*) || ' ' || count(published_at) from outbox where routing_key = 'stock.reserved'")"
check_eq "one payment, one charge" "1 1" \
  "$(sql "select (select count(*) from payments) || ' ' || (select count(*) from sim_provider_ledger where kind = 'charge')")"
check "the pipeline settles" pipeline_idle 30
check_invariants "every invariant holds"
test_done
