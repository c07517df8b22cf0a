#!/usr/bin/env bash
# The fast path's publish refused by the broker: a worker publishes the events it has just
# committed itself, and when the broker does not take them (here the payment queue is full: a
# policy caps it with overflow reject-publish, its worker is stopped and a filler message holds
# the one place, so stock.reserved is nacked) the rows stay unmarked in the outbox and go to the
# relay. Once the policy is gone the relay publishes them, and the order goes on to be confirmed,
# once. (A queue or binding deleted is not a refusal that lasts: the relay declares the topology
# again when a publish comes back unroutable; test_deleted_queues.)
source "$(dirname "$0")/lib.sh"
pipeline_env
P=$ROOT/scripts/pipeline
POL=/policies/$RABBITMQ_VHOST/refuse-payment
on_exit '"$P" down >/dev/null 2>&1'

"$ROOT/scripts/stock" set SKU-F 10 >/dev/null
check "the pipeline starts" "$P" up
check "the payment worker stops" "$P" scale payment=0
check "the payment queue is capped" mgmt PUT "$POL" \
  '{"pattern":"^payment$","apply-to":"queues","priority":10,"definition":{"max-length":0,"overflow":"reject-publish"}}'
check "a filler takes its one place" \
  orderpipe-amqp-probe publish payment 'filler' --exchange '' --message-id filler-1
# Until the policy reaches the queue a publish may still get in: more fillers, dead-lettered as
# invalid once the worker is back.
refuses() { ! orderpipe-amqp-probe publish payment 'filler' --exchange '' >/dev/null 2>&1; }
check "and it refuses every publish" wait_for 10 refuses
check "an order is accepted" place_order SKU-F "refused-$RANDOM"
refused() { cat "$ORDERPIPE_RUN_DIR"/logs/reservation.*.log 2>/dev/null |
            grep -q "committed events failed.*nacked"; }
check "the reservation worker's publish of stock.reserved is refused, and it says so" wait_for 20 refused
check_eq "the order is reserved" reserved "$(sql "select status from orders")"
check_eq "its stock.reserved stays unmarked in the outbox" 1 \
  "$(sql "select count(*) from outbox where routing_key = 'stock.reserved' and published_at is null")"
sleep 3
check_eq "and stays so while the queue refuses it (the relay retries, nothing is lost)" 1 \
  "$(sql "select count(*) from outbox where routing_key = 'stock.reserved' and published_at is null")"

check "the policy is removed" mgmt DELETE "$POL"
check "the payment worker comes back" "$P" scale payment=1
status_is() { [ "$(sql "select status from orders")" = "$1" ]; }
check "the relay publishes it, and the order is confirmed" wait_for 30 status_is confirmed
check_eq "stock.reserved was published exactly once more: marked, one row" "1 1" \
  "$(sql "select count(*) || ' ' || count(published_at) from outbox where routing_key = 'stock.reserved'")"
check_eq "one payment, one charge" "1 1" \
  "$(sql "select (select count(*) from payments) || ' ' || (select count(*) from sim_provider_ledger where kind = 'charge')")"
check "the pipeline settles" pipeline_idle 30
check_invariants "every invariant holds"
test_done
