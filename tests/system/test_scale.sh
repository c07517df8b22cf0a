#!/usr/bin/env bash
# Scaling under load: orders over HTTP at a fixed rate (a mix like test_e2e: fine, out of stock,
# declined, flaky, a flash sale, repeated Idempotency-Keys) while `scripts/pipeline scale` takes
# reservation from 1 to 4 processes and back to 1 (and payment 1 -> 2 -> 1). The processes
# stopped must drain and exit cleanly, the four-process phase must really have shared the work,
# nothing may be dead-lettered, and every invariant of docs/design.md §3 must hold at the end.
# The load runs until the test stops it (SIGTERM), so every step happens under load however long
# the steps take on this machine.
#   SCALE_ORDERS (default 10000): the load stops once the scale-down is done and this many orders
#   are accepted; SCALE_RATE orders/s (default 800); the scale-up happens once SCALE_UP_AT % of
#   SCALE_ORDERS are accepted (default 15), the scale-down at SCALE_DOWN_AT % (55).
source "$(dirname "$0")/lib.sh"
ORDERS=${SCALE_ORDERS:-10000}
RATE=${SCALE_RATE:-800}
UP_AT=$((ORDERS * ${SCALE_UP_AT:-15} / 100))
DOWN_AT=$((ORDERS * ${SCALE_DOWN_AT:-55} / 100))
HOT_STOCK=100
PIPELINE="$ROOT/scripts/pipeline"
t_start=$SECONDS

pipeline_env
RUN=$ORDERPIPE_RUN_DIR
export RESERVATION_TTL=${RESERVATION_TTL:-120s}
seed_stock 50 2000 $HOT_STOCK

on_exit '"$PIPELINE" down >/dev/null 2>&1'
"$PIPELINE" up > "$TEST_TMP/up.txt" 2>&1
check "pipeline starts with one process of each worker" test $? = 0

procs() { "$PIPELINE" status --json | jq -r --arg n "$1" '.programs[] | select(.name == $n) | .processes'; }
consumers() { "$PIPELINE" status --json | jq -r --arg n "$1" '.programs[] | select(.name == $n) | .consumers'; }
consumers_are() { [ "$(consumers "$1")" = "$2" ]; }
accepted_so_far() { sort -u "$TEST_TMP/accepted" 2>/dev/null | wc -l; }
at_least_accepted() { [ "$(accepted_so_far)" -ge "$1" ]; }
loadgen_running() { kill -0 "$load_pid" 2>/dev/null; }
# Messages a process has handled, from its /metrics (the port is in its log).
handled_by() { # LOGFILE
  local p
  p=$(grep -o 'on port [0-9]*' "$1" | tail -1 | grep -o '[0-9]*$')
  [ -n "$p" ] || { echo 0; return; }
  curl -fsS -m 5 "http://127.0.0.1:$p/metrics" 2>/dev/null |
    awk '/^orderpipe_messages_handled_total[{ ]/ { s += $NF } END { printf "%d\n", s }'
}

# --- the load, in the background -----------------------------------------------------------------
t_load=$SECONDS
# The order cap is out of reach: the test ends the load with SIGTERM.
start_bg loadgen "$ROOT/bin/orderpipe-loadgen" --orders $((ORDERS * 100)) --rate "$RATE" --connections 32 \
  --skus 50 --mix ok=60,oos=5,decline=8,flaky=4,hot=20,dup=3 \
  --accepted "$TEST_TMP/accepted" --idempotency "$TEST_TMP/idem"
load_pid=$bg_pid

# An operator watching `pipeline status` throughout: the scale must not trip over it (it removes
# the pid files of processes it finds dead while `scale` is still stopping them).
monitor() {
  while :; do
    "$PIPELINE" status --json 2>/dev/null | jq -c '[.programs[] | {(.name): .processes}] | add'
    sleep 0.5
  done
}
start_bg monitor monitor
mon_pid=$bg_pid

# --- scale up while orders flow ----------------------------------------------------------------
check "orders are flowing before scaling up ($UP_AT accepted)" wait_for 300 at_least_accepted "$UP_AT"
t_up=$SECONDS
"$PIPELINE" scale reservation=4 payment=2 > "$TEST_TMP/scale_up.txt" 2>&1
check "pipeline scale reservation=4 payment=2 succeeds" test $? = 0
check_eq "4 reservation processes are running" 4 "$(procs reservation)"
check_eq "2 payment processes are running" 2 "$(procs payment)"
check_eq "the run dir holds 4 reservation slots" "1 2 3 4" \
  "$(ls "$RUN" | sed -n 's/^reservation\.\([0-9]*\)\.pid$/\1/p' | sort -n | tr '\n' ' ' | sed 's/ $//')"
check "the broker sees 4 reservation consumers" wait_for 60 consumers_are reservation 4
check "the load is still running while 4 processes consume" loadgen_running

check "4 processes consume until $DOWN_AT orders are accepted" wait_for 600 at_least_accepted "$DOWN_AT"
# What each slot handled during the 4-process phase (read just before it is stopped).
for s in 1 2 3 4; do echo "reservation.$s $(handled_by "$RUN/logs/reservation.$s.log")"; done > "$TEST_TMP/handled"
for s in 1 2; do echo "payment.$s $(handled_by "$RUN/logs/payment.$s.log")"; done >> "$TEST_TMP/handled"
echo "handled per process at scale-down: $(tr '\n' ' ' < "$TEST_TMP/handled")"
declare -A victim
for f in reservation.2 reservation.3 reservation.4 payment.2; do victim[$f]=$(cat "$RUN/$f.pid" 2>/dev/null); done
victims="${victim[*]}"
check_eq "pid files for the 4 processes to stop" 4 "$(echo $victims | wc -w)"
check "the load is still running when scaling down" loadgen_running
before_down=$(accepted_so_far)

# --- scale down while orders flow --------------------------------------------------------------
t_down=$SECONDS
up_s=$((t_down - t_up))
"$PIPELINE" scale reservation=1 payment=1 > "$TEST_TMP/scale_down.txt" 2>&1
rc=$?
down_s=$((SECONDS - t_down))
cat "$TEST_TMP/scale_down.txt"
check "pipeline scale reservation=1 payment=1 succeeds" test $rc = 0
check_eq "1 reservation process remains" 1 "$(procs reservation)"
check_eq "1 payment process remains" 1 "$(procs payment)"
check "slot 1 of reservation is the one kept" test -s "$RUN/reservation.1.pid"
still=""
for p in $victims; do kill -0 "$p" 2>/dev/null && still="$still $p"; done
check_eq "every stopped process is gone" "" "$still"
during_down=$(( $(accepted_so_far) - before_down ))
check "orders kept being accepted during the scale-down ($during_down)" test "$during_down" -gt 0
check "the broker sees 1 reservation consumer" wait_for 60 consumers_are reservation 1
kill -TERM "$mon_pid" 2>/dev/null; wait "$mon_pid" 2>/dev/null
check_eq "status, watched during the run, saw 4 reservation processes at most" 4 \
  "$(jq -s 'map(.reservation) | max' "$TEST_TMP/monitor.out")"
check_eq "and 1 at the end" 1 "$(jq -s 'map(.reservation) | last' "$TEST_TMP/monitor.out")"

# --- the load ends; the pipeline settles -------------------------------------------------------
check "the load reaches $ORDERS accepted orders" wait_for 600 at_least_accepted "$ORDERS"
kill -TERM "$load_pid"
wait "$load_pid"
load_rc=$?
load_s=$((SECONDS - t_load))
cat "$TEST_TMP/loadgen.out"
check_eq "the load generator exits 0" 0 "$load_rc"
check_eq "every order sent is accepted (202)" "$(jq .sent "$TEST_TMP/loadgen.out")" "$(jq .accepted "$TEST_TMP/loadgen.out")"

want=$(accepted_so_far)
terminal() { [ "$(sql "select count(*) from orders where status in ('confirmed','cancelled')")" -ge "$want" ]; }
t_settle=$SECONDS
check "all $want distinct orders reach a terminal state" wait_for 600 terminal
idle() {
  [ "$(sql "select count(*) from outbox where published_at is null")" = 0 ] &&
  "$PIPELINE" status --json | jq -e '[.programs[] | select(.queue_depth != null) | .queue_depth] | add == 0' >/dev/null
}
check "the pipeline goes idle" wait_for 120 idle
settle_s=$((SECONDS - t_settle))

# --- the invariants ----------------------------------------------------------------------------
check_eq "duplicate Idempotency-Keys made no extra order" "$want" "$(sql "select count(*) from orders")"
check_eq "the flash sale sold exactly the scarce stock" "$HOT_STOCK" "$(sql "select sold from inventory where sku = 'HOT-1'")"
"$ROOT/scripts/check-invariants" --accepted "$TEST_TMP/accepted" --idempotency "$TEST_TMP/idem" > "$TEST_TMP/inv.txt"
rc=$?
cat "$TEST_TMP/inv.txt"
check "every invariant of docs/design.md §3 holds" test $rc = 0
for q in reservation payment notification compensation; do
  check_eq "nothing went to $q.dlq" 0 "$(queue_messages "$q.dlq")"
done

# --- the stopped processes drained and exited cleanly ------------------------------------------
# The pipeline's processes are not the test's children, so their exit status is read from their
# logs: "drained, exiting" is logged right before worker_main returns 0, and nothing after it.
for f in reservation.2 reservation.3 reservation.4 payment.2; do
  log=$RUN/logs/$f.log
  last=$(tail -1 "$log")
  check_eq "$f (pid ${victim[$f]}) logged 'drained, exiting' as its last line" \
    "drained, exiting ${victim[$f]}" "$(echo "$last" | jq -r '"\(.msg) \(.pid)"' 2>/dev/null)"
  check_eq "$f logged no error" 0 "$(grep -c '"level":"error"' "$log")"
done
check_eq "the kept reservation process has not exited" 0 "$(grep -c 'drained, exiting' "$RUN/logs/reservation.1.log")"

# --- the four-process phase shared the work ----------------------------------------------------
for s in 1 2 3 4; do
  n=$(awk -v k="reservation.$s" '$1 == k { print $2 }' "$TEST_TMP/handled")
  check "reservation.$s handled messages while 4 ran ($n)" test "${n:-0}" -gt 0
done
n=$(awk '$1 == "payment.2" { print $2 }' "$TEST_TMP/handled")
check "payment.2 handled messages while 2 ran ($n)" test "${n:-0}" -gt 0
check_eq "the process count ends at 1 for every worker" "reservation=1 payment=1 notification=1 compensation=1" \
  "$("$PIPELINE" status --json | jq -r '[.programs[] | select(.name != "intake") | "\(.name)=\(.processes)"] | join(" ")')"

"$PIPELINE" status
echo "timing: load $(jq '.seconds * 10 | round / 10' "$TEST_TMP/loadgen.out") s for $(jq .sent "$TEST_TMP/loadgen.out") orders at $RATE/s (waited ${load_s} s), scale-up to scale-down ${up_s} s, scale-down ${down_s} s, settle ${settle_s} s, total $((SECONDS - t_start)) s"
test_done
