#!/usr/bin/env bash
# PostgreSQL as a pg_auto_failover formation (a monitor, a primary and a synchronous secondary),
# every program on a multi-host DATABASE_URL with target_session_attrs=read-write. Orders flow at
# a steady rate through a planned switchover, then through the SIGKILL of the primary (its
# supervisor with it, so nothing restarts it and the monitor promotes the secondary). After each:
# every order answered 202 is recorded and at a saga end, nothing is charged twice, every
# invariant holds. Prints how long the pipeline stalled each time.
# Long form (5,000 orders per part): tests/run --long test_pg_failover, or FAILOVER_ORDERS=5000.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/chaos.sh"
if [ "${ORDERPIPE_TEST_LONG:-0}" = 1 ]; then ORDERS=${FAILOVER_ORDERS:-5000}; else ORDERS=${FAILOVER_ORDERS:-1200}; fi
RATE=${FAILOVER_RATE:-100}

chaos_stack_up --pg-nodes 2
node_port() { echo $((ORDERPIPE_PG_PORT + ${1#node} - 1)); }
check "DATABASE_URL lists both nodes, read-write sessions only" \
  grep -q "127.0.0.1:$(node_port node1),127.0.0.1:$(node_port node2)/.*target_session_attrs=read-write" <<< "$DATABASE_URL"
sync_standby() { # the primary waits for a standby's flush at every commit
  [ -n "$(sql "show synchronous_standby_names")" ] &&
    [ "$(sql "select count(*) from pg_stat_replication where sync_state in ('sync', 'quorum')")" = 1 ]
}
check "the primary replicates synchronously to the secondary" wait_for 60 sync_standby
chaos_pipeline_up 1

# stall_since START EVENT: the longest gap (s) between two orders reaching their saga end since
# START; how long after EVENT the first order recorded after EVENT reached its end; and, for
# reference, the longest gap between START and EVENT (the same load, before the fault).
stall_since() {
  sql "with ends as (select recorded_at r, state_entered_at t from orders
                      where status in ('confirmed', 'cancelled') and state_entered_at > to_timestamp($1)),
             gaps as (select t, t - lag(t) over (order by t) g from ends)
       select round(extract(epoch from (select max(g) from gaps))::numeric, 2) || ' ' ||
              round(extract(epoch from (select min(t) from ends where r > to_timestamp($2)) - to_timestamp($2))::numeric, 2) || ' ' ||
              round(extract(epoch from (select max(g) from gaps where t < to_timestamp($2)))::numeric, 2)"
}
accepted_at_least() { [ "$(sort -u "$TEST_TMP/accepted" 2>/dev/null | wc -l)" -ge "$1" ]; }
primary_is() { [ "$("$STACK" pg-primary)" = "$1" ] && "$STACK" pg-states | grep -qE "^$1 [0-9]+ (primary|wait_primary) "; }
other() { if [ "$1" = node1 ]; then echo node2; else echo node1; fi; }

# --- 1. planned switchover under load ---
before=$("$STACK" pg-primary)
base=$(sort -u "$TEST_TMP/accepted" 2>/dev/null | wc -l)
chaos_load "$ORDERS" "$RATE"
start=$(date +%s.%N)
check "orders flow before the switchover" wait_for 120 accepted_at_least $((base + ORDERS / 3))
at=$(date +%s.%N)
echo "# t=${SECONDS}s switchover from $before"
check "pg_autoctl perform switchover completes" "$STACK" pg-switchover
check "the secondary is the primary now" wait_for 120 primary_is "$(other "$before")"
chaos_settle_and_check "a planned switchover"
read -r sw_gap sw_first sw_ref <<< "$(stall_since "$start" "$at")"
echo "# figures: switchover longest_gap_s=$sw_gap first_new_order_end_s=$sw_first gap_before_s=$sw_ref orders=$ORDERS rate=$RATE"

# --- 2. the primary killed under load ---
check "the old primary is a synchronous secondary again" wait_for 180 sync_standby
victim=$("$STACK" pg-primary)
base=$(sort -u "$TEST_TMP/accepted" | wc -l)
chaos_load "$ORDERS" "$RATE"
start=$(date +%s.%N)
check "orders flow before the kill" wait_for 120 accepted_at_least $((base + ORDERS / 3))
at=$(date +%s.%N)
echo "# t=${SECONDS}s SIGKILL the primary $victim"
"$STACK" pg-kill "$victim"
check "the monitor promotes $(other "$victim")" wait_for 120 primary_is "$(other "$victim")"
promoted=$(date +%s.%N)
chaos_settle_and_check "the primary was killed"
read -r kill_gap kill_first kill_ref <<< "$(stall_since "$start" "$at")"
echo "# figures: failover longest_gap_s=$kill_gap first_new_order_end_s=$kill_first gap_before_s=$kill_ref" \
     "promoted_after_s=$(awk -v a="$at" -v b="$promoted" 'BEGIN { printf "%.1f", b - a }') orders=$ORDERS rate=$RATE"

# Every program says where it is and that it moved.
new_port=$(node_port "$(other "$victim")")
for w in reservation payment intake; do
  p=$(metrics_port "$w")
  curl -fsS "http://127.0.0.1:$p/metrics" > "$TEST_TMP/$w.metrics"
  check "$w: on the new primary (orderpipe_db_server)" \
    grep -q "^orderpipe_db_server{host=\"127.0.0.1\",port=\"$new_port\"} 1" "$TEST_TMP/$w.metrics"
  check "$w: counted its failovers" test "$(awk '/^orderpipe_db_failovers_total /{print int($2)}' "$TEST_TMP/$w.metrics")" -ge 2
  check "$w: /healthz names the server" \
    test "$(curl -fsS "http://127.0.0.1:$p/healthz" | jq -r .database.port)" = "$new_port"
done
test_done
