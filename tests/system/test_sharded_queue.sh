#!/usr/bin/env bash
# Sharded work queues (ORDERPIPE_SHARDS, lib/topology.h): reservation and notification each
# sharded over 4 quorum queues behind a consistent-hash exchange keyed by the order id, with 4
# reservation processes and 5 notification processes (the fifth a standby on shard 0). Orders go
# through the whole saga over HTTP; then bursts of events, several per order written one after
# the other in one transaction, go through the outbox relay to the sharded notification queue,
# and each order's events must be handled in the order they were written (the inbox's
# transaction times, per order, follow the outbox ids), also while one process is stalled and
# across the take-over of shard 0 by its standby. Every shard must carry messages, the unsharded work queues none, nothing may be
# dead-lettered, and every invariant of docs/design.md §3 must hold.
#   SHARD_ORDERS (default 1500) orders over HTTP; SHARD_BURST_ORDERS (300) orders in each
#   burst, SHARD_BURST_EVENTS (6) events each.
source "$(dirname "$0")/lib.sh"
ORDERS=${SHARD_ORDERS:-1500}
BURST_ORDERS=${SHARD_BURST_ORDERS:-300}
BURST_EVENTS=${SHARD_BURST_EVENTS:-6}
HOT_STOCK=100
PIPELINE="$ROOT/scripts/pipeline"
t_start=$SECONDS

pipeline_env
RUN=$ORDERPIPE_RUN_DIR
export ORDERPIPE_SHARDS=reservation=4,notification=4
export RESERVATION_TTL=${RESERVATION_TTL:-60s}
seed_stock 50 500 $HOT_STOCK

# --- configuration errors ----------------------------------------------------------------------
refused() { # EXPECTED_TEXT ENV... : the notification worker refuses to start, saying EXPECTED_TEXT
  local want=$1; shift
  env "$@" timeout 20 "$ROOT/bin/orderpipe-notification" > /dev/null 2> "$TEST_TMP/refused.txt"
  local rc=$?
  [ $rc != 0 ] && [ $rc != 124 ] && grep -q "$want" "$TEST_TMP/refused.txt"
}
check "a sharded worker without a shard refuses to start" refused "WORKER_SHARD / --shard to 0..3"
check "a shard past the count is refused" refused "WORKER_SHARD / --shard to 0..3" WORKER_SHARD=4
check "a shard for an unsharded queue is refused" refused "does not shard" \
  ORDERPIPE_SHARDS=reservation=4 WORKER_SHARD=1
check "a queue that is not a work queue is refused" refused "not a work queue" \
  ORDERPIPE_SHARDS=bogus=4 WORKER_SHARD=1
check "a shard count past 64 is refused" refused "outside 1..64" \
  ORDERPIPE_SHARDS=notification=65 WORKER_SHARD=1
intake_refused() {
  ORDERPIPE_SHARDS=notification=4,notification=2 timeout 20 "$ROOT/bin/orderpipe-intake" \
    > /dev/null 2> "$TEST_TMP/intake_refused.txt"
  [ $? = 2 ] && grep -q "names a queue twice" "$TEST_TMP/intake_refused.txt"
}
check "the intake refuses a queue named twice (exit 2)" intake_refused

# --- the pipeline, sharded ---------------------------------------------------------------------
on_exit '"$PIPELINE" down >/dev/null 2>&1'
"$PIPELINE" up notification=5 > "$TEST_TMP/up.txt" 2>&1
check "pipeline up starts (reservation at its 4 shards, notification 5)" test $? = 0
procs() { "$PIPELINE" status --json | jq -r --arg n "$1" '.programs[] | select(.name == $n) | .processes'; }
check_eq "4 reservation processes (one a shard, by default)" 4 "$(procs reservation)"
check_eq "5 notification processes" 5 "$(procs notification)"
"$PIPELINE" scale notification=3 > "$TEST_TMP/scale3.txt" 2>&1
rc=$?
check "scaling notification below its 4 shards is refused" test $rc != 0
check "saying why" grep -q "sharded over 4 queues" "$TEST_TMP/scale3.txt"
check_eq "and the 5 processes stay" 5 "$(procs notification)"
consumes() { # SLOT QUEUE: notification.SLOT logged that it started on QUEUE
  grep -q "started: queue $2, " "$RUN/logs/notification.$1.log" 2>/dev/null
}
for s in 1 2 3 4 5; do
  check "notification.$s consumes shard $(((s - 1) % 4))" \
    wait_for 60 consumes "$s" "notification.shard.$(((s - 1) % 4))"
done

# The topology as the broker sees it.
mgmt GET "/queues/$RABBITMQ_VHOST?columns=name,type,arguments" > "$TEST_TMP/queues.json"
for w in reservation notification; do
  check_eq "$w's exchange is x-consistent-hash on the correlation_id" \
    '{"arguments":{"hash-property":"correlation_id"},"durable":true,"type":"x-consistent-hash"}' \
    "$(mgmt GET "/exchanges/$RABBITMQ_VHOST/orderpipe.$w.shards" | jq -cS '{type, durable, arguments}')"
  for i in 0 1 2 3; do
    check_eq "$w.shard.$i is a quorum queue with a single active consumer" '["quorum",true]' \
      "$(jq -c --arg n "$w.shard.$i" '.[] | select(.name == $n) | [.type, .arguments["x-single-active-consumer"]]' "$TEST_TMP/queues.json")"
    check_eq "$w.shard.$i.retry.1 dead-letters back to its shard" "\"$w.shard.$i\"" \
      "$(jq -c --arg n "$w.shard.$i.retry.1" '.[] | select(.name == $n) | .arguments["x-dead-letter-routing-key"]' "$TEST_TMP/queues.json")"
  done
  check_eq "the work queue $w is bound to nothing but the default exchange" '[""]' \
    "$(mgmt GET "/queues/$RABBITMQ_VHOST/$w/bindings" | jq -c '[.[].source] | unique')"
done
check_eq "the topic exchange routes notification's keys to its shards' exchange" \
  "order.cancelled,order.confirmed" \
  "$(mgmt GET "/exchanges/$RABBITMQ_VHOST/orderpipe.events/bindings/source" |
     jq -r '[.[] | select(.destination == "orderpipe.notification.shards") | .routing_key] | sort | join(",")')"

# --- orders through the whole saga -------------------------------------------------------------
"$ROOT/bin/orderpipe-loadgen" --orders "$ORDERS" --connections 32 --skus 50 \
  --mix ok=70,oos=5,decline=10,hot=15 \
  --accepted "$TEST_TMP/accepted" > "$TEST_TMP/load.json"
cat "$TEST_TMP/load.json"
check_eq "every order is accepted (202)" "$ORDERS" "$(jq .accepted "$TEST_TMP/load.json")"
want=$(sort -u "$TEST_TMP/accepted" | wc -l)
notified() { [ "$(sql "select count(*) from notifications where sent_at is not null")" -ge "$want" ]; }
check "all $want orders reach a terminal state and are notified" wait_for 300 notified
check "the pipeline goes idle, shards and retry tiers included" wait_for 120 pipeline_idle

# --- bursts of events per order through the outbox --------------------------------------------
# BURST_EVENTS copies of each order's own notification event (a new id each), written in one
# transaction, round robin over the orders, so one order's events are interleaved with the
# others' in the outbox. The relay publishes them in that order per order.
burst() { # TAG: the burst's rows are tagged in their headers, for the checks
  sql "with o as (select distinct on (aggregate_id) aggregate_id, routing_key, payload::jsonb as p,
                  headers from outbox where routing_key in ('order.confirmed', 'order.cancelled')
                  and not headers ? 'burst' order by aggregate_id, id limit $BURST_ORDERS),
            n as (select o.*, k, gen_random_uuid() as mid from o, generate_series(1, $BURST_EVENTS) k)
       insert into outbox (message_id, aggregate_id, routing_key, payload, headers)
       select mid, aggregate_id, routing_key, jsonb_set(p, '{id}', to_jsonb(mid::text))::text,
              headers || jsonb_build_object('burst', '$1')
       from n order by k, aggregate_id" > /dev/null
}
burst_handled() { # TAG: every event of the burst is in the notification worker's inbox
  [ "$(sql "select count(*) from outbox o join inbox i on i.consumer = 'notification'
             and i.message_id = o.message_id::text where o.headers->>'burst' = '$1'")" = \
    "$((BURST_ORDERS * BURST_EVENTS))" ]
}
# Events of one order handled in a transaction that started before the one that handled an
# event written earlier: out of order.
out_of_order() { # TAG
  sql "select count(*) from (select i.received_at < lag(i.received_at) over
         (partition by o.aggregate_id order by o.id) as back
       from outbox o join inbox i on i.consumer = 'notification' and i.message_id = o.message_id::text
       where o.headers->>'burst' = '$1') x where back"
}
orders_in() { sql "select count(distinct aggregate_id) from outbox where headers->>'burst' = '$1'"; }
handled_by() { # SLOT: messages notification.SLOT has handled, from its /metrics
  local p
  p=$(grep -o 'on port [0-9]*' "$RUN/logs/notification.$1.log" | tail -1 | grep -o '[0-9]*$')
  [ -n "$p" ] || { echo 0; return; }
  curl -fsS -m 5 "http://127.0.0.1:$p/metrics" 2>/dev/null |
    awk '/^orderpipe_messages_handled_total[{ ]/ { s += $NF } END { printf "%d\n", s }'
}

handled_of() { # TAG: how many of the burst's events are handled
  sql "select count(*) from outbox o join inbox i on i.consumer = 'notification'
       and i.message_id = o.message_id::text where o.headers->>'burst' = '$1'"
}
at_least_handled() { [ "$(handled_of "$1")" -ge "$2" ]; }
# The first burst meets a stalled process (a long pause, a slow disk): notification.3, shard 2's
# only consumer, is stopped while the others handle half the burst. Its shard's events wait for
# it; with competing consumers on one queue, it would hold a share of every order's events while
# the others handled their successors.
stalled_pid=$(cat "$RUN/notification.3.pid")
kill -STOP "$stalled_pid"
on_exit 'kill -CONT '"$stalled_pid"' 2>/dev/null'
burst one
check_eq "the first burst covers $BURST_ORDERS orders" "$BURST_ORDERS" "$(orders_in one)"
check "half the first burst is handled while notification.3 is stopped" \
  wait_for 300 at_least_handled one $((BURST_ORDERS * BURST_EVENTS / 2))
echo "handled while notification.3 was stopped: $(handled_of one)"
kill -CONT "$stalled_pid"
check "the first burst ($((BURST_ORDERS * BURST_EVENTS)) events) is handled" wait_for 300 burst_handled one
check_eq "each order's events of the first burst were handled in the order written" 0 "$(out_of_order one)"
for s in 2 3 4; do
  n=$(handled_by "$s")
  check "notification.$s, alone on shard $((s - 1)), handled messages ($n)" test "${n:-0}" -gt 0
done
# Shard 0 has two consumers, notification.1 and .5: whichever subscribed first is the active one
# and handled everything; the other waits.
h1=$(handled_by 1) h5=$(handled_by 5)
if [ "$h5" -gt 0 ]; then active=5 standby=1; else active=1 standby=5; fi
check "one consumer of shard 0 handled messages, the other none ($h1 and $h5)"   test $((h1 > 0 ? 1 : 0)) != $((h5 > 0 ? 1 : 0))

# The active consumer of shard 0 drains and stops; the standby takes over.
active_pid=$(cat "$RUN/notification.$active.pid")
kill -TERM "$active_pid"
stopped() { ! kill -0 "$active_pid" 2>/dev/null; }
check "notification.$active drains and stops" wait_for 60 stopped
burst two
check "the second burst is handled" wait_for 300 burst_handled two
check_eq "each order's events of the second burst were handled in the order written" 0 "$(out_of_order two)"
n=$(handled_by $standby)
check "notification.$standby took shard 0 over and handled messages ($n)" test "${n:-0}" -gt 0
check "the pipeline goes idle again" wait_for 120 pipeline_idle

# --- the spread over the shards ---------------------------------------------------------------
# The management API's counters lag by a few seconds.
published() { # QUEUE: messages published into it so far
  mgmt GET "/queues/$RABBITMQ_VHOST/$1" | jq --arg n "$1" 'if .name == $n then .message_stats.publish // 0 else -1 end'
}
all_shards_used() {
  local w i
  for w in reservation notification; do
    for i in 0 1 2 3; do [ "$(published "$w.shard.$i")" -gt 0 ] || return 1; done
  done
}
check "every shard of both queues received messages" wait_for 60 all_shards_used
for w in reservation notification; do
  counts=$(for i in 0 1 2 3; do published "$w.shard.$i"; done | tr '\n' ' ')
  echo "$w: messages published per shard: $counts"
  # A fair hash of uniformly random order ids puts a quarter in each: none below a tenth.
  total=$(echo $counts | tr ' ' '+' | bc)
  min=$(echo $counts | tr ' ' '\n' | sort -n | head -1)
  check "$w's shards are evenly used (smallest $min of $total)" test $((min * 10)) -ge "$total"
  check_eq "the work queue $w itself received nothing" 0 "$(published "$w")"
done

# --- the invariants ----------------------------------------------------------------------------
check_eq "the flash sale sold exactly the scarce stock" "$HOT_STOCK" "$(sql "select sold from inventory where sku = 'HOT-1'")"
"$ROOT/scripts/check-invariants" --accepted "$TEST_TMP/accepted" > "$TEST_TMP/inv.txt"
rc=$?
cat "$TEST_TMP/inv.txt"
check "every invariant of docs/design.md §3 holds" test $rc = 0
for q in reservation payment notification compensation; do
  check_eq "nothing went to $q.dlq" 0 "$(queue_messages "$q.dlq")"
done
for s in 1 2 3 4 5; do
  check_eq "notification.$s logged no error" 0 "$(grep -c '"level":"error"' "$RUN/logs/notification.$s.log")"
done
"$PIPELINE" status
echo "timing: total $((SECONDS - t_start)) s"
test_done
