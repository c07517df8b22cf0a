#!/usr/bin/env bash
# Retention by time partitions (sql/120_partitions.sql, sql/functions/partitions.sql): the
# workers' housekeeping makes the partitions of the outbox, inbox and order_transitions ahead of
# the clock and drops those past retention whole; an outbox partition that holds an unpublished
# row stays; a message delivered again after its inbox partition stopped being the current one
# is still recognised; an insert far from any partition lands in the default partition; the
# invariants hold. About two minutes: the drops wait for 30 s partitions to age.
source "$(dirname "$0")/lib.sh"
pipeline_env
export INBOX_RETENTION=30s OUTBOX_RETENTION=30s RETENTION_INTERVAL=2s
P=$ROOT/scripts/pipeline
on_exit '"$P" down >/dev/null 2>&1'
parts() { sql "select count(*) from partitions_list('$1') where name ${2:-like '%'}"; }

# --- before any worker: an unpublished outbox row keeps its partition -------------------------
# The legacy partition (everything before the migration) gets an unpublished row, as after a
# long broker outage; with a retention of 1 s it is past due, yet only the inbox's is dropped.
sql "insert into outbox(message_id, aggregate_id, routing_key, payload, created_at)
     values (gen_random_uuid(), 'o-stuck', 'test.stuck', '{}', '2000-01-01')"
legacy_aged() { [ "$(sql "select hi <= now() - interval '1 second' from partitions_list('outbox') where name = 'outbox_legacy'")" = t ]; }
check "the legacy partitions end before now" wait_for 10 legacy_aged
maintain() { sql "select dropped from partitions_maintain('$1', '30s', '180s', '1s')"; }
maintain inbox >/dev/null
maintain outbox >/dev/null
check_eq "the outbox's legacy partition, with an unpublished row, is kept" 1 "$(parts outbox "= 'outbox_legacy'")"
check_eq "the inbox's legacy partition is dropped" 0 "$(parts inbox "= 'inbox_legacy'")"
check_eq "the unpublished row is still there" 1 "$(sql "select count(*) from outbox where aggregate_id = 'o-stuck'")"
sql "update outbox set published_at = '2000-01-01 00:00:01' where aggregate_id = 'o-stuck'"
maintain outbox >/dev/null
check_eq "once published (long ago), the partition is dropped" 0 "$(parts outbox "= 'outbox_legacy'")"
# Several processes run it: while one holds the table's lock, another does nothing.
psql -X -q "$DATABASE_URL" -c "select pg_advisory_lock(7366120, hashtext('outbox'))" \
  -c "select pg_sleep(20)" >/dev/null 2>&1 &
holder=$!
held() { [ "$(sql "select count(*) from pg_locks where locktype = 'advisory' and classid = 7366120 and granted")" = 1 ]; }
check "another session holds the outbox's maintenance lock" wait_for 10 held
check_eq "meanwhile a call makes nothing, however far ahead it is asked to" "0" \
  "$(sql "select created from partitions_maintain('outbox', '30s', '10 minutes', '1s')")"
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
# The default partition takes what no partition covers: an insert never fails for want of one.
sql "insert into outbox(message_id, aggregate_id, routing_key, payload, created_at, published_at)
     values (gen_random_uuid(), 'o-far', 'test.far', '{}', now() + interval '3 days', now())"
check_eq "a row far ahead of every partition lands in the default partition" outbox_default \
  "$(sql "select tableoid::regclass from outbox where aggregate_id = 'o-far'")"

# --- housekeeping makes partitions ahead ------------------------------------------------------
"$ROOT/scripts/stock" set SKU-A 100 >/dev/null
orderpipe-amqp-probe declare >/dev/null
mgmt PUT "/queues/$RABBITMQ_VHOST/capture" '{"durable":true}' >/dev/null
mgmt POST "/bindings/$RABBITMQ_VHOST/e/orderpipe.events/q/capture" '{"routing_key":"order.placed"}' >/dev/null
check "pipeline starts" "$P" up
ahead() { # TABLE -> partitions reach 150 s ahead of now
  [ "$(sql "select coalesce(max(hi) >= now() + interval '150 seconds', false) from partitions_list('$1')")" = t ]
}
for t in outbox inbox order_transitions; do
  check "housekeeping makes the $t partitions ahead of the clock" wait_for 30 ahead $t
done
check_eq "outbox partitions are 30 s wide" "00:00:30" \
  "$(sql "select hi - lo from partitions_list('outbox') where lo > now() order by lo limit 1")"
check_eq "transitions, kept for ever, get a day each" "1 day" \
  "$(sql "select hi - lo from partitions_list('order_transitions') where lo > now() order by lo limit 1")"

# --- orders flow; their partitions are dropped once past retention ----------------------------
: > "$TEST_TMP/accepted"
for i in 1 2 3 4 5; do
  place_order SKU-A "partitions-$i-$RANDOM" && echo ok >> "$TEST_TMP/accepted"
done
confirmed() { [ "$(sql "select count(*) from orders where status = 'confirmed'")" = 5 ]; }
check "5 orders are confirmed" wait_for 60 confirmed
check "the pipeline settles" wait_for 60 workers_idle
transitions=$(sql "select count(*) from order_transitions")
outbox_part=$(sql "select distinct tableoid::regclass from outbox where aggregate_id <> 'o-far' order by 1 limit 1")
inbox_part=$(sql "select distinct tableoid::regclass from inbox order by 1 limit 1")
echo "# the orders' events are in $outbox_part, their inbox rows in $inbox_part"
check "the outbox rows are in a time partition" grep -q '^outbox_p' <<< "$outbox_part"
check "the inbox rows are in a time partition (their events' time)" grep -q '^inbox_p' <<< "$inbox_part"

# A message delivered again once its inbox partition is no longer the current one.
placed=$(queue_get capture 1 | jq -c '.[0]')
check "an order.placed was captured" test -n "$placed"
key_partition=$(sql "select tableoid::regclass from inbox where consumer = 'reservation'
                      and message_id = '$(jq -r '.payload | fromjson | .id' <<< "$placed")'")
moved_on() { [ "$(sql "select count(*) from partitions_list('inbox') where name = '$key_partition' and hi < now()")" = 1 ]; }
check "time moves past the end of its inbox partition" wait_for 45 moved_on
before=$(sql "select count(*) || ' ' || sum(available) || ' ' || sum(reserved) || ' ' || sum(sold) from inventory")
before_orders=$(sql "select count(*) from orders")
orderpipe-amqp-probe publish order.placed "$(jq -r .payload <<< "$placed")" \
  --message-id "$(jq -r '.properties.message_id // empty' <<< "$placed")" >/dev/null
ignored() { grep -q '"order.placed already handled: redelivery ignored"' "$ORDERPIPE_RUN_DIR"/logs/*.log; }
check "the redelivery across the boundary is recognised and ignored" wait_for 30 ignored
check "the pipeline settles" wait_for 60 workers_idle
check_eq "nothing changed: orders" "$before_orders" "$(sql "select count(*) from orders")"
check_eq "nothing changed: stock" "$before" \
  "$(sql "select count(*) || ' ' || sum(available) || ' ' || sum(reserved) || ' ' || sum(sold) from inventory")"
check_eq "one inbox row for the message" 1 "$(sql "select count(*) from inbox where consumer = 'reservation'
  and message_id = '$(jq -r '.payload | fromjson | .id' <<< "$placed")'")"

gone() { [ "$(sql "select count(*) from partitions_list('$1') where name = '$2'")" = 0 ]; }
check "housekeeping drops the outbox partition past retention" wait_for 120 gone outbox "$outbox_part"
check "housekeeping drops the inbox partition past retention" wait_for 60 gone inbox "$inbox_part"
check_eq "transitions are kept (TRANSITION_RETENTION unset)" "$transitions" "$(sql "select count(*) from order_transitions")"
check_eq "no outbox row is left unpublished" 0 "$(sql "select count(*) from outbox where published_at is null")"
check "the workers logged the drops" grep -q 'pruned [1-9][0-9]* partitions' "$ORDERPIPE_RUN_DIR"/logs/*.log
"$P" down >/dev/null
mgmt DELETE "/queues/$RABBITMQ_VHOST/capture" >/dev/null
check_invariants "the invariants hold"
test_done
