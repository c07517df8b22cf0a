#!/usr/bin/env bash
# The migrations and the schema's own guards: re-running the migration step changes nothing, and
# the database refuses oversold stock and order transitions outside docs/design.md §2.
source "$(dirname "$0")/lib.sh"

before=$(sql "select count(*) from schema_migrations")
out=$("$ROOT/scripts/migrate" "$DATABASE_URL" 2>&1)
check_eq "re-running migrate applies nothing" "" "$(echo "$out" | grep 'applying' || true)"
check_eq "schema_migrations unchanged" "$before" "$(sql "select count(*) from schema_migrations")"
check "every sql/ file is recorded" test "$before" -eq "$(ls "$ROOT"/sql/[0-9][0-9][0-9]_*.sql | wc -l)"

# Two migrations at once must not apply anything twice (advisory lock).
"$ROOT/scripts/migrate" "$DATABASE_URL" & p1=$!
"$ROOT/scripts/migrate" "$DATABASE_URL" & p2=$!
wait $p1 && wait $p2
check_eq "concurrent migrate runs both succeed and change nothing" "$before" "$(sql "select count(*) from schema_migrations")"

sql "insert into inventory(sku, available, stocked) values ('S', 1, 1)"
check "available can never go below zero" bash -c "! psql -X -q -v ON_ERROR_STOP=1 '$DATABASE_URL' -c \"update inventory set available = available - 2, reserved = reserved + 2 where sku = 'S'\" 2>/dev/null"
check "stock must add up to what was put in" bash -c "! psql -X -q -v ON_ERROR_STOP=1 '$DATABASE_URL' -c \"update inventory set available = 5 where sku = 'S'\" 2>/dev/null"

sql "insert into orders(id, client_id, customer_id, currency, total, payment_token, placed_at)
     values ('00000000-0000-4000-8000-000000000001', 'dev', 'c', 'EUR', 100, 't', now())"
refuse() { ! psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "update orders set status = '$1' where id = '00000000-0000-4000-8000-000000000001'" 2>/dev/null; }
check "pending -> paid is refused" refuse paid
check "pending -> confirmed is refused" refuse confirmed
sql "update orders set status = 'reserved' where id = '00000000-0000-4000-8000-000000000001'"
check_eq "pending -> reserved is applied" reserved "$(sql "select status from orders")"
check "cancelled without a reason is refused" refuse cancelled
sql "update orders set status = 'cancelled', cancel_reason = 'reservation_expired' where id = '00000000-0000-4000-8000-000000000001'"
check_eq "reserved -> cancelled with a reason is applied" cancelled "$(sql "select status from orders")"
check "cancelled is terminal" refuse confirmed
test_done
