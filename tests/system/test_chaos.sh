#!/usr/bin/env bash
# Chaos: while orders flow, SIGKILL random worker processes again and again, restart
# RabbitMQ, restart PostgreSQL and stall the payment provider, with payments pending at the
# provider and their signed notifications in flight (some lost, some repeated; queries and the
# payment timeout end the rest); then let it settle and check every
# invariant of docs/design.md §3. Short form in `make test`; `tests/run --long chaos` runs the long
# form (20,000 orders, a kill every 3 s). CHAOS_ORDERS / CHAOS_RATE / CHAOS_KILL_EVERY override.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/chaos.sh"
if [ "${ORDERPIPE_TEST_LONG:-0}" = 1 ]; then
  ORDERS=${CHAOS_ORDERS:-20000} RATE=${CHAOS_RATE:-250} EVERY=${CHAOS_KILL_EVERY:-3}
else
  ORDERS=${CHAOS_ORDERS:-3000} RATE=${CHAOS_RATE:-100} EVERY=${CHAOS_KILL_EVERY:-2}
fi
duration=$((ORDERS / RATE))

chaos_stack_up
chaos_pipeline_up 2
chaos_load "$ORDERS" "$RATE"
start=$SECONDS
broker_restarted=0 pg_restarted=0 stalled=0
# One fault of each kind at a quarter, a half and three quarters of the run, and a kill every
# EVERY seconds throughout.
while kill -0 "$load_pid" 2>/dev/null || [ $pg_restarted = 0 ]; do
  sleep "$EVERY"
  chaos_kill_one
  t=$((SECONDS - start))
  if [ $broker_restarted = 0 ] && [ $t -ge $((duration / 4)) ]; then
    echo "# t=${SECONDS}s restarting RabbitMQ"
    if "$STACK" restart-rabbit > "$TEST_TMP/restart-rabbit.log" 2>&1; then broker_restarted=1
    else cat "$TEST_TMP/restart-rabbit.log"; broker_restarted=failed; fi
  elif [ $stalled = 0 ] && [ $t -ge $((duration / 2)) ]; then
    chaos_provider_stall 3; stalled=1
  elif [ $pg_restarted = 0 ] && [ $t -ge $((duration * 3 / 4)) ]; then
    echo "# t=${SECONDS}s restarting PostgreSQL"
    if "$STACK" restart-pg > "$TEST_TMP/restart-pg.log" 2>&1; then pg_restarted=1
    else cat "$TEST_TMP/restart-pg.log"; pg_restarted=failed; fi
  fi
done
check_eq "RabbitMQ was restarted mid-run" 1 "$broker_restarted"
check_eq "PostgreSQL was restarted mid-run" 1 "$pg_restarted"
check_eq "the payment provider stalled mid-run" 1 "$stalled"
check "worker processes were killed again and again" test "$CHAOS_KILLS" -ge 3
chaos_settle_and_check "$CHAOS_KILLS kills and both restarts"
echo "# figures: broker_restarts=$broker_restarted pg_restarts=$pg_restarted provider_stalls=$stalled"
test_done
