#!/usr/bin/env bash
# scripts/migrate and the layout of sql/: numbered migrations hold tables, indexes, roles, grants
# and data changes; sql/functions, sql/views and sql/triggers hold every function, view and
# trigger, applied on every run. A fresh database, a second run, and databases first migrated by
# the layout in which migrations defined functions all end with the same schema.
source "$(dirname "$0")/lib.sh"

# The last commit whose migrations define the functions; a database migrated by it (or by an
# earlier one) upgrades with today's scripts/migrate.
OLD_LAYOUT=831363f0fd77384b37447ec0592afc966aef7e2d
BASE=${DATABASE_URL%/*}
admin() { psql -X -q -v ON_ERROR_STOP=1 "$PG_ADMIN_URL" -c "$1" >/dev/null; }
made=()
newdb() { # NAME -> an empty database owned by orderpipe, dropped at exit
  admin "drop database if exists $1 with (force)" && admin "create database $1 owner orderpipe" &&
    made+=("$1")
}
drop_made() { local d; for d in "${made[@]}"; do admin "drop database if exists $d with (force)"; done; }
on_exit drop_made

# Every function (definition, comment, privileges), view and trigger of the public schema.
routines() { # URL
  psql -X -q -tA -v ON_ERROR_STOP=1 "$1" <<'SQL'
select 'function ' || p.oid::regprocedure::text || E'\n' || pg_get_functiondef(p.oid)
       || E'\ncomment: ' || coalesce(obj_description(p.oid, 'pg_proc'), '')
       || E'\nacl: ' || coalesce(p.proacl::text, '')
  from pg_proc p where p.pronamespace = 'public'::regnamespace
union all
select 'view ' || c.oid::regclass::text || E'\n' || pg_get_viewdef(c.oid)
       || E'\nacl: ' || coalesce(c.relacl::text, '')
  from pg_class c where c.relnamespace = 'public'::regnamespace and c.relkind in ('v', 'm')
union all
select 'trigger ' || pg_get_triggerdef(t.oid)
  from pg_trigger t join pg_class c on c.oid = t.tgrelid
 where c.relnamespace = 'public'::regnamespace and not t.tgisinternal
order by 1
SQL
}
# The whole schema as pg_dump writes it (tables, constraints, grants, routines), without the
# per-run \restrict key, and without the moment each legacy partition ends (the time that
# database was migrated: sql/120_partitions.sql).
schema() {
  pg_dump -s -O "$1" | grep -v '^\\\(un\)\?restrict ' |
    sed -E "s/(_legacy FOR VALUES FROM \(MINVALUE\) TO \()'[^']*'/\1'…'/"
}
same() { # DESCRIPTION FILE_A FILE_B
  if cmp -s "$2" "$3"; then ok "$1"; else not_ok "$1"; diff "$2" "$3" | head -40; fi
}

# --- the rule: a numbered migration defines no function, view or trigger ----------------------
defining=$(grep -liE 'create[[:space:]]+(or[[:space:]]+replace[[:space:]]+)?(function|procedure|view|materialized[[:space:]]+view|trigger)' \
  "$ROOT"/sql/[0-9][0-9][0-9]_*.sql || true)
check_eq "no numbered migration creates a function, view or trigger" "" "$defining"

# --- a fresh database -----------------------------------------------------------------------
FRESH=${DATABASE_URL##*/}_fresh
newdb "$FRESH"
out=$("$ROOT/scripts/migrate" "$BASE/$FRESH" 2>&1); rc=$?
check_eq "migrate on a fresh database succeeds" 0 "$rc"
check_eq "every numbered migration is applied once" \
  "$(ls "$ROOT"/sql/[0-9][0-9][0-9]_*.sql | wc -l)" "$(echo "$out" | grep -c 'applying')"
routines "$BASE/$FRESH" > "$TEST_TMP/fresh.routines"
schema "$BASE/$FRESH" > "$TEST_TMP/fresh.schema"
check "the fresh database has reservation_place, its trigger functions and the report views" \
  grep -q '^view report_sku_sales$' "$TEST_TMP/fresh.routines"
check_eq "reservation_place has one signature" 1 \
  "$(grep -c '^function reservation_place(' "$TEST_TMP/fresh.routines")"
for name in $(psql -X -tA "$BASE/$FRESH" -c "select proname from pg_proc
                where pronamespace = 'public'::regnamespace order by 1"); do
  check "function $name is defined in sql/functions or sql/triggers" \
    grep -qE "^create or replace function $name\(" -r "$ROOT/sql/functions" "$ROOT/sql/triggers"
done

# --- a second run: nothing applied, nothing dropped, nothing changed -------------------------
oids() { psql -X -tA "$1" -c "select string_agg(oid::text || proname, ',' order by proname)
                               from pg_proc where pronamespace = 'public'::regnamespace"; }
before=$(oids "$BASE/$FRESH")
out=$("$ROOT/scripts/migrate" "$BASE/$FRESH" 2>&1); rc=$?
check_eq "a second migrate succeeds and prints nothing" "0:" "$rc:$out"
check_eq "a second migrate keeps every function (no drop and re-create)" "$before" "$(oids "$BASE/$FRESH")"
routines "$BASE/$FRESH" > "$TEST_TMP/again.routines"
same "a second migrate leaves the functions, views and triggers as they were" \
  "$TEST_TMP/fresh.routines" "$TEST_TMP/again.routines"

# --- upgrades from the layout in which migrations defined functions --------------------------
# Each cut stops at one of the old function signatures: 050 has reservation_place(json, int),
# 070 a reservation_place without `reason`, 085 is everything that layout had.
if git -C "$ROOT" cat-file -e "$OLD_LAYOUT^{commit}" 2>/dev/null; then
  OLD=$TEST_TMP/old
  mkdir -p "$OLD/scripts" "$OLD/sql"
  git -C "$ROOT" show "$OLD_LAYOUT:scripts/migrate" > "$OLD/scripts/migrate"
  chmod +x "$OLD/scripts/migrate"
  for cut in 050 070 085; do
    rm -f "$OLD"/sql/*.sql
    for f in $(git -C "$ROOT" ls-tree --name-only "$OLD_LAYOUT" sql/); do
      n=$(basename "$f"); [[ "$n" < "${cut}_~" ]] && git -C "$ROOT" show "$OLD_LAYOUT:$f" > "$OLD/$f"
    done
    db=${DATABASE_URL##*/}_old$cut
    newdb "$db"
    "$OLD/scripts/migrate" "$BASE/$db" >/dev/null 2>&1
    check "the old layout up to $cut migrates" test "$?" -eq 0
    if [ "$cut" = 085 ]; then # rows in the tables sql/120_partitions.sql partitions
      psql -X -q -v ON_ERROR_STOP=1 "$BASE/$db" >/dev/null <<'SQL'
insert into orders(id, client_id, customer_id, currency, total, payment_token, placed_at)
  values ('00000000-0000-4000-8000-000000000120', 'c', 'cu', 'EUR', 500, 'tok', now());
insert into order_transitions(order_id, status) values ('00000000-0000-4000-8000-000000000120', 'pending');
insert into outbox(message_id, aggregate_id, routing_key, payload)
  values ('00000000-0000-4000-8000-000000000121', '00000000-0000-4000-8000-000000000120', 'order.placed', '{}');
insert into inbox(consumer, message_id) values ('reservation', 'm-120');
SQL
    fi
    out=$("$ROOT/scripts/migrate" "$BASE/$db" 2>&1); rc=$?
    check_eq "migrate upgrades the database migrated up to $cut" 0 "$rc"
    [ "$rc" = 0 ] || echo "$out"
    if [ "$cut" = 085 ]; then
      kept=$(psql -X -tA "$BASE/$db" -c "select string_agg(t, ' ' order by t) from (
        select 'o:' || tableoid::regclass || ':' || (published_at is null) t from outbox
        union all select 'i:' || tableoid::regclass || ':' || event_at from inbox
        union all select 't:' || tableoid::regclass || ':' || status from order_transitions) x")
      check_eq "the rows of the old outbox, inbox and transitions survive, in the legacy partitions" \
        "i:inbox_legacy:-infinity o:outbox_legacy:true t:order_transitions_legacy:pending" "$kept"
      check_eq "an old-layout writer's second inbox row for the message conflicts with the first" 0 \
        "$(psql -X -tA "$BASE/$db" -c "with r as (insert into inbox(consumer, message_id)
             values ('reservation', 'm-120') on conflict do nothing returning 1) select count(*) from r")"
      check_eq "a new outbox row gets the next id of the old sequence" t \
        "$(psql -X -tA "$BASE/$db" -c "with r as (insert into outbox(message_id, aggregate_id, routing_key, payload)
             values (gen_random_uuid(), 'a', 'k', '{}') returning id)
             select id > (select min(id) from outbox) from r")"
    fi
    routines "$BASE/$db" > "$TEST_TMP/old$cut.routines"
    schema "$BASE/$db" > "$TEST_TMP/old$cut.schema"
    same "after the upgrade from $cut, pg_get_functiondef, views and triggers equal a fresh database's" \
      "$TEST_TMP/fresh.routines" "$TEST_TMP/old$cut.routines"
    same "after the upgrade from $cut, the whole schema (pg_dump -s) equals a fresh database's" \
      "$TEST_TMP/fresh.schema" "$TEST_TMP/old$cut.schema"
  done
else
  ok "upgrade checks skipped: commit $OLD_LAYOUT is not in this clone's history # SKIP"
fi
test_done
