#!/usr/bin/env bash
# reservation_place (sql/functions/reservation_place.sql), called as the reservation worker
# calls it: a batch the stock covers whole is reserved in one step, a batch it does not is
# decided order by order in batch order, all lines or none; duplicates and unknown SKUs; the stock
# adds up; the function takes its inventory locks after recording the orders, with those of the
# caller's paid orders.
source "$(dirname "$0")/lib.sh"

order() { # ID LINES_JSON -> one element of p_orders
  jq -cn --arg id "$1" --argjson lines "$2" '{id: $id, tp: null,
    d: {client_id: "dev", idempotency_key: null, customer_id: "c-1", currency: "EUR",
        total: ([$lines[] | .quantity * .unit_price] | add // 0),
        notify: {}, placed_at: "2026-11-25T10:00:00Z", lines: $lines}}'
}
line() { jq -cn --arg s "$1" --argjson q "$2" '{sku: $s, quantity: $q, unit_price: 50}'; }
place() { # ORDER_JSON... -> the outcomes in batch order, "n outcome has_expiry|..."
  local orders; orders=$(printf '%s\n' "$@" | jq -cs .)
  psql -X -q -tA -F ' ' -v ON_ERROR_STOP=1 "$DATABASE_URL" -v orders="$orders" <<'SQL' |
begin;
\o /dev/null
select sku from inventory order by sku for update;
\o
select n, outcome, expires_at is not null from reservation_place(:'orders'::json, 600) order by n;
commit;
SQL
  grep -E '^[0-9]+ ' | paste -sd '|'
}
id() { printf '00000000-0000-4000-8000-%012d' "$1"; }
stock_of() { sql "select available || '/' || reserved || '/' || sold from inventory where sku = '$1'"; }

sql "insert into inventory(sku, available, stocked) values ('A', 100, 100), ('B', 100, 100), ('L', 5, 5)" >/dev/null

# --- the stock covers the whole batch: one step ---
sql "insert into orders(id, client_id, customer_id, currency, total, payment_token, placed_at)
     values ('$(id 9)', 'dev', 'c', 'EUR', 1, 't', now())" >/dev/null
out=$(place "$(order "$(id 1)" "[$(line A 2), $(line A 3)]")" \
  "$(order "$(id 2)" "[$(line A 1), $(line B 4)]")" "$(order "$(id 3)" "[$(line B 1)]")" \
  "$(order "$(id 1)" "[$(line A 2)]")" "$(order "$(id 9)" "[$(line A 1)]")")
check_eq "a batch that fits: each order reserved, with an expiry; repeats are duplicates" \
  "1 reserved t|2 reserved t|3 reserved t|4 duplicate f|5 duplicate f" "$out"
check_eq "A: 6 taken (2+3 and 1)" "94/6/0" "$(stock_of A)"
check_eq "B: 5 taken (4 and 1)" "95/5/0" "$(stock_of B)"
check_eq "one reservation per order and SKU, its lines summed" \
  "$(id 1) A 5|$(id 2) A 1|$(id 2) B 4|$(id 3) B 1" \
  "$(sql "select order_id || ' ' || sku || ' ' || quantity from reservations order by 1" | paste -sd '|')"
check_eq "the three orders are reserved, with pending and reserved transitions" "3 6" \
  "$(sql "select count(*) filter (where status = 'reserved') || ' ' || (select count(*) from order_transitions) from orders where id <> '$(id 9)'")"
check_eq "their lines are recorded, the duplicates' not" 5 "$(sql "select count(*) from order_lines")"

# --- the stock does not cover the batch: batch order decides, all lines or none ---
out=$(place "$(order "$(id 11)" "[$(line L 3)]")" "$(order "$(id 12)" "[$(line A 1), $(line L 3)]")" \
  "$(order "$(id 13)" "[$(line L 2)]")" "$(order "$(id 14)" "[$(line NOPE 1)]")" \
  "$(order "$(id 15)" "[$(line B 1), $(line L 6)]")")
check_eq "a batch that does not fit: first come first served, the rest out of stock" \
  "1 reserved t|2 out_of_stock f|3 reserved t|4 out_of_stock f|5 out_of_stock f" "$out"
check_eq "L sold out exactly, never below zero" "0/5/0" "$(stock_of L)"
check_eq "the refused order took none of its other line (A unchanged)" "94/6/0" "$(stock_of A)"
check_eq "nor did the one L could never cover (B unchanged)" "95/5/0" "$(stock_of B)"
check_eq "refused orders are cancelled out_of_stock" \
  "$(id 12) out_of_stock|$(id 14) out_of_stock|$(id 15) out_of_stock" \
  "$(sql "select id || ' ' || cancel_reason from orders where status = 'cancelled' order by 1" | paste -sd '|')"
check_eq "no reservation for a refused order" 0 \
  "$(sql "select count(*) from reservations where order_id in ('$(id 12)', '$(id 14)', '$(id 15)')")"
check_eq "stock adds up on every SKU" 0 \
  "$(sql "select count(*) from inventory where available + reserved + sold <> stocked")"
check_eq "reserved stock equals the held reservations" 0 \
  "$(sql "select count(*) from inventory i where reserved <> (select coalesce(sum(quantity), 0) from reservations r where r.sku = i.sku and status = 'held')")"

# --- the function takes its inventory locks itself: after recording, and those of p_paid ---
hold_sku() { # SKU: another session holds its inventory row until release_holder
  PGAPPNAME=place-holder psql -X -q "$DATABASE_URL" -c "begin" \
    -c "select sku from inventory where sku = '$1' for update" -c "select pg_sleep(60)" \
    >/dev/null 2>&1 &
  holder=$!
  wait_for 10 sleeping place-holder
}
release_holder() {
  sql "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'place-holder'" >/dev/null
  wait "$holder" 2>/dev/null; holder=
}
on_exit '[ -n "${holder:-}" ] && release_holder'
session_is() { # APPNAME CONDITION: its session's pg_stat_activity row meets CONDITION
  [ "$(sql "select count(*) from pg_stat_activity where application_name = '$1' and $2")" = 1 ]
}
sleeping() { session_is "$1" "wait_event = 'PgSleep'"; }       # it holds its lock
waits_for_lock() { session_is "$1" "wait_event_type = 'Lock'"; }
place_bg() { # ORDERS_JSON PAID_UUID_ARRAY: reservation_place in the background, outcomes to a file
  PGAPPNAME=place-caller psql -X -q -tA -F ' ' -v ON_ERROR_STOP=1 "$DATABASE_URL" \
    -c "select n, outcome from reservation_place('$1'::json, 600, '$2'::uuid[]) order by n" \
    > "$TEST_TMP/place.out" 2>&1 &
  caller=$!
}
caller_holds() { # RELATION: the waiting caller's transaction has written into it
  sql "select count(*) from pg_locks l join pg_class c on c.oid = l.relation
       join pg_stat_activity a on a.pid = l.pid
       where a.application_name = 'place-caller' and c.relname = '$1' and l.mode = 'RowExclusiveLock'"
}

hold_sku A
place_bg "[$(order "$(id 21)" "[$(line A 1)]")]" '{}'
check "a batch on a SKU another transaction holds waits for its lock" wait_for 10 waits_for_lock place-caller
check_eq "while it waits, it has recorded its orders" 1 "$(caller_holds orders)"
check_eq "and their lines" 1 "$(caller_holds order_lines)"
check_eq "and their pending transitions" 1 "$(caller_holds order_transitions)"
check_eq "but reserved nothing yet" 0 "$(caller_holds reservations)"
release_holder
wait "$caller"
check_eq "once the lock is free it reserves" "1 reserved" "$(cat "$TEST_TMP/place.out")"

# Order 1 holds A; a batch whose paid order is 1 locks A too (all its locks in one statement).
hold_sku A
place_bg "[$(order "$(id 22)" "[$(line B 1)]")]" "{$(id 1)}"
check "a batch whose paid orders hold a locked SKU waits for it too" wait_for 10 waits_for_lock place-caller
release_holder
wait "$caller"
check_eq "and then reserves its own" "1 reserved" "$(cat "$TEST_TMP/place.out")"
hold_sku A
out=$(psql -X -q -tA -F ' ' "$DATABASE_URL" -c "set lock_timeout = '3s'" \
  -c "select n, outcome from reservation_place('[$(order "$(id 23)" "[$(line B 1)]")]'::json, 600) order by n" 2>&1)
check_eq "without paid orders the same batch does not touch A" "1 reserved" "$out"
release_holder
test_done
