#!/usr/bin/env bash
# A batch function that answers the wrong number of rows (here reservation_place, made to record
# its orders and then answer none): the reservation worker refuses the answer, so its transaction
# rolls back whole (no order row, no stock taken), logs the mismatch, and retries the message.
# Once the function answers properly again, the same message confirms the order: nothing was lost
# or half-written.
source "$(dirname "$0")/lib.sh"
export ORDERPIPE_RETRY_DELAYS=3000,3000,3000,3000
pipeline_env
P=$ROOT/scripts/pipeline
on_exit '"$P" down >/dev/null 2>&1'

"$ROOT/scripts/stock" set SKU-G 10 >/dev/null
check "pipeline starts without the reservation worker" "$P" up reservation=0
sql "alter function reservation_place(json, int, uuid[]) rename to reservation_place_real;
     create function reservation_place(p_orders json, p_ttl int, p_paid uuid[] default '{}')
     returns table (n int, outcome text, expires_at text, reason text) language sql as
     \$\$ select * from reservation_place_real(p_orders, p_ttl, p_paid) offset 1000000 \$\$" >/dev/null

check "an order is accepted" place_order SKU-G "guard-$RANDOM"
"$P" scale reservation=1 >/dev/null
mismatch() { cat "$ORDERPIPE_RUN_DIR"/logs/reservation.*.log 2>/dev/null |
             grep -q "reservation_place answered 0 rows for 1 orders"; }
check "the worker logs the wrong answer" wait_for 20 mismatch
retrying() { cat "$ORDERPIPE_RUN_DIR"/logs/reservation.*.log 2>/dev/null | grep -q "retrying through"; }
check "and schedules the message for a retry" wait_for 10 retrying
check_eq "no order row stayed" 0 "$(sql "select count(*) from orders")"
check_eq "no stock was taken" "10|0|0" \
  "$(sql "select available || '|' || reserved || '|' || sold from inventory where sku = 'SKU-G'")"

sql "drop function reservation_place(json, int, uuid[]);
     alter function reservation_place_real(json, int, uuid[]) rename to reservation_place" >/dev/null
confirmed() { [ "$(sql "select count(*) from orders where status = 'confirmed'")" = 1 ]; }
check "once it answers properly, the retried message confirms the order" wait_for 60 confirmed
check_eq "its stock is sold once" "9|0|1" \
  "$(sql "select available || '|' || reserved || '|' || sold from inventory where sku = 'SKU-G'")"
check_eq "nothing was dead-lettered" 0 "$(queue_messages reservation.dlq)"
check "the pipeline settles" pipeline_idle 30
check_invariants "every invariant holds"
test_done
