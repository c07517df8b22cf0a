#!/usr/bin/env bash
# The outbox relay against the real servers: two relays at once publish every row once
# and in order per order; a relay that dies before publishing, after publishing but before
# marking, or by SIGKILL at a random moment loses no row.
source "$(dirname "$0")/lib.sh"
RELAY="$ROOT/bin/orderpipe-outbox-relay"
"$ROOT/bin/orderpipe-amqp-probe" declare || { not_ok "declare topology"; exit 1; }

# Rows for `aggs` orders with `per` events each, type order.confirmed (-> the notification queue).
write_rows() { # FIRST_AGG AGGS PER
  sql "insert into outbox(message_id, aggregate_id, routing_key, payload)
       select gen_random_uuid(), 'agg-' || a, 'order.confirmed',
              json_build_object('orderid', 'agg-' || a, 'seq', s)::text
       from generate_series($1, $1 + $2 - 1) a, generate_series(1, $3) s
       order by s, a" >/dev/null
}
drain_queue() { # -> every message of the notification queue, as "aggregate seq message_id" lines
  local out=$TEST_TMP/drained; : > "$out"
  while :; do
    local got; got=$(queue_get notification 2000)
    [ "$(echo "$got" | jq length)" -gt 0 ] || break
    echo "$got" | jq -r '.[] | (.payload | fromjson) as $p | "\($p.orderid) \($p.seq) \(.properties.message_id)"' >> "$out"
  done
  cat "$out"
}
unmarked() { sql "select count(*) from outbox where published_at is null"; }

# --- two relays, writers running concurrently ---
start_bg relay1 "$RELAY" --batch 100
start_bg relay2 "$RELAY" --batch 100
for w in 0 1 2 3 4; do (for k in 0 1 2 3 4; do write_rows $((w * 100 + k * 20)) 20 10; done) & done
wait_writers() { [ "$(sql "select count(*) from outbox")" -ge 5000 ]; }
wait_for 60 wait_writers
all_published() { [ "$(unmarked)" = 0 ]; }
check "two relays publish and mark all 5,000 rows" wait_for 60 all_published
stop_all
drain_queue > "$TEST_TMP/two"
check_eq "5,000 messages arrived" 5000 "$(wc -l < "$TEST_TMP/two")"
check_eq "no message id twice" 5000 "$(awk '{print $3}' "$TEST_TMP/two" | sort -u | wc -l)"
check "events of each order arrived in the order written" \
  awk '{ if (($1 in last) && $2 <= last[$1]) bad = 1; last[$1] = $2 } END { exit bad }' "$TEST_TMP/two"
sql "delete from outbox" >/dev/null

# --- crash before publishing: nothing went out, nothing is lost ---
write_rows 1000 10 10
OUTBOX_RELAY_CRASH=before_publish "$RELAY" --once 2>/dev/null; rc=$?
check_eq "the relay died before publishing" 137 "$rc"
check_eq "nothing was published" 0 "$(queue_messages notification)"
check_eq "all 100 rows still unpublished" 100 "$(unmarked)"
"$RELAY" --once 2>/dev/null
check_eq "a fresh relay publishes them all" 0 "$(unmarked)"
drain_queue > "$TEST_TMP/before"
check_eq "each exactly once" "100 100" "$(wc -l < "$TEST_TMP/before") $(awk '{print $3}' "$TEST_TMP/before" | sort -u | wc -l)"
sql "delete from outbox" >/dev/null

# --- crash after publishing, before marking: published again (the inbox absorbs that) ---
write_rows 2000 10 10
OUTBOX_RELAY_CRASH=after_publish "$RELAY" --once 2>/dev/null; rc=$?
check_eq "the relay died after its confirms, before marking" 137 "$rc"
check_eq "the rows are still unmarked" 100 "$(unmarked)"
"$RELAY" --once 2>/dev/null
check_eq "a fresh relay marks them all" 0 "$(unmarked)"
drain_queue > "$TEST_TMP/after"
check_eq "every row arrived (at least once)" 100 "$(awk '{print $3}' "$TEST_TMP/after" | sort -u | wc -l)"
# The crashed relay's claim held only the first unpublished event of each order (10 rows).
check_eq "the crashed relay's batch went out twice, nothing else did" 110 "$(wc -l < "$TEST_TMP/after")"
sql "delete from outbox" >/dev/null

# --- SIGKILL at a random moment while publishing 20,000 rows ---
write_rows 3000 2000 10
start_bg killed "$RELAY" --batch 50; pid=$bg_pid
sleep 0.$((RANDOM % 5 + 2))
kill -KILL "$pid"; wait "$pid" 2>/dev/null
# Its server session still holds the rows it claimed until PostgreSQL sees the socket close; a
# fresh relay skips locked rows (and the later events of their orders), so wait for that first.
relay_session_gone() {
  [ "$(sql "select count(*) from pg_stat_activity where datname = current_database()
            and application_name = 'orderpipe-outbox-relay'")" = 0 ]
}
check "the killed relay's database session ended" wait_for 30 relay_session_gone
"$RELAY" --once 2>/dev/null
check_eq "after SIGKILL and a fresh relay, every row is marked" 0 "$(unmarked)"
drain_queue > "$TEST_TMP/kill"
check_eq "every one of the 20,000 rows arrived" 20000 "$(awk '{print $3}' "$TEST_TMP/kill" | sort -u | wc -l)"

# --- a new connection (a failover, a restarted server) LISTENs again ---
# A poll interval far beyond the test: only a NOTIFY wakes this relay.
start_bg listener "$RELAY" --poll-ms 900000; pid=$bg_pid
relay_pid() { sql "select pid from pg_stat_activity where datname = current_database()
                   and application_name = 'orderpipe-outbox-relay' order by backend_start limit 1"; }
relay_connected() { [ -n "$(relay_pid)" ]; }
wait_for 30 relay_connected
woken() { write_rows "$1" 1 1; all_published_now() { [ "$(unmarked)" = 0 ]; }; wait_for 30 all_published_now; }
check "a NOTIFY wakes the idle relay" woken 9000
old=$(relay_pid)
sql "select pg_terminate_backend($old)" >/dev/null
reconnected() { local p; p=$(relay_pid); [ -n "$p" ] && [ "$p" != "$old" ]; }
check "the relay reconnects after its session was terminated" wait_for 30 reconnected
check "a NOTIFY wakes it on its new connection" woken 9001
kill -TERM "$pid"; wait "$pid" 2>/dev/null

# --- pruning deletes only what is old and published ---
sql "update outbox set published_at = now() - interval '2 days' where id in (select id from outbox limit 100)" >/dev/null
sql "insert into outbox(message_id, aggregate_id, routing_key, payload) values (gen_random_uuid(), 'x', 'order.confirmed', '{}')" >/dev/null
before=$(sql "select count(*) from outbox")
sql "delete from outbox where id = any(array(select id from outbox where published_at < now() - interval '1 day' limit 1000))" >/dev/null
check_eq "prune removed the 100 old published rows only" $((before - 100)) "$(sql "select count(*) from outbox")"
check_eq "the unpublished row survived" 1 "$(unmarked)"
test_done
