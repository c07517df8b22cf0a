#!/usr/bin/env bash
# Database roles: every program connects as its own role (sql/040_roles.sql) with only
# the privileges its work needs. The whole saga runs under those roles, and each role is refused
# what is not its job.
source "$(dirname "$0")/lib.sh"
as_role() { # ROLE SQL -> exit status of running SQL as ROLE
  local url
  url=$(sed -E "s#^(postgres(ql)?://)[^@/]+@#\\1$1@#" <<< "$DATABASE_URL")
  psql -X -q -tA -v ON_ERROR_STOP=1 "$url" -c "$2" > "$TEST_TMP/role.out" 2>&1
}
refused() { # ROLE SQL
  ! as_role "$1" "$2" && grep -Eq "permission denied|must be owner" "$TEST_TMP/role.out"
}
for r in intake reservation payment notification compensation relay replay; do
  check "role orderpipe_$r exists and can log in" as_role "orderpipe_$r" "select 1"
  check "orderpipe_$r cannot delete orders" refused "orderpipe_$r" "delete from orders"
  check "orderpipe_$r cannot truncate the stock" refused "orderpipe_$r" "truncate inventory"
  check "orderpipe_$r cannot change the schema" refused "orderpipe_$r" "alter table orders add column x int"
  check "orderpipe_$r cannot create tables" refused "orderpipe_$r" "create table t_$r (x int)"
done
check "notification cannot touch stock" refused orderpipe_notification "update inventory set available = available"
check "payment cannot touch stock" refused orderpipe_payment "update inventory set available = available"
check "reservation cannot touch payments" refused orderpipe_reservation "update payments set attempts = attempts"
check "reservation cannot write the provider's books" refused orderpipe_reservation "insert into sim_provider_ledger values ('k', gen_random_uuid(), 'charge', 1)"
check "the intake cannot write orders" refused orderpipe_intake "insert into orders(id) values (gen_random_uuid())"
check "the intake reads orders" as_role orderpipe_intake "select count(*) from orders"
check "the relay cannot read orders" refused orderpipe_relay "select count(*) from orders"
check "notification cannot change orders" refused orderpipe_notification "update orders set status = status"
check "compensation cannot create orders" refused orderpipe_compensation "insert into orders(id) values (gen_random_uuid())"

# Column privileges (sql/085_column_privileges.sql): the intake reads what GET and the backlog need
# and never a payment token, an order's notify address or an outbox payload; only payment (which
# passes the token to the provider) reads payment tokens (sql/090_payment_tokens.sql).
check "the intake reads what GET /v1/orders/{id} shows" as_role orderpipe_intake \
  "select id, client_id, customer_id, currency, total, status, cancel_reason, placed_at, recorded_at, state_entered_at from orders"
check "the intake reads the outbox backlog" as_role orderpipe_intake \
  "select count(*), min(created_at) from outbox where published_at is null"
check "the intake cannot read outbox payloads" refused orderpipe_intake "select payload from outbox"
check "the intake cannot read whole outbox rows" refused orderpipe_intake "select * from outbox"
check "the intake cannot read whole order rows" refused orderpipe_intake "select * from orders"
check "the intake cannot read an order's notify address" refused orderpipe_intake "select notify from orders"
token_cols=$(sql "select table_name || '.' || column_name from information_schema.columns
                  where table_schema = 'public' and column_name like '%token%' order by 1")
check "there is a payment token column to guard" test -n "$token_cols"
for tc in $token_cols; do
  check "the intake cannot read $tc" refused orderpipe_intake "select ${tc#*.} from ${tc%.*}"
done
for r in reservation notification compensation relay replay enqueue; do
  check "orderpipe_$r cannot read payment tokens" refused "orderpipe_$r" "select payment_token from orders"
  check "orderpipe_$r cannot read recorded payment tokens" refused "orderpipe_$r" "select token from payment_tokens"
done
check "the intake records payment tokens" as_role orderpipe_intake \
  "insert into payment_tokens (order_id, token) values (gen_random_uuid(), 'tok_role_check') on conflict do nothing"
check "payment reads the recorded payment tokens" as_role orderpipe_payment "select token from payment_tokens"
check "payment deletes the tokens it no longer needs" as_role orderpipe_payment "delete from payment_tokens where token = 'tok_role_check'"
check "the intake cannot delete payment tokens" refused orderpipe_intake "delete from payment_tokens"
check "orderpipe_reservation reads the rest of an order" as_role orderpipe_reservation "select id, status, total, notify from orders"
check "payment reads the payment token it charges" as_role orderpipe_payment "select payment_token from orders"

# The saga runs end to end under these roles.
pipeline_env
seed_stock 10 1000 20
on_exit '"$ROOT/scripts/pipeline" down >/dev/null 2>&1'
check "the pipeline starts" "$ROOT/scripts/pipeline" up
db=$(sql "select current_database()")
roles() { sql "select string_agg(distinct usename, ',' order by usename) from pg_stat_activity where datname = '$db' and usename like 'orderpipe_%'"; }
connected() { [ "$(roles)" = "orderpipe_compensation,orderpipe_intake,orderpipe_notification,orderpipe_payment,orderpipe_reservation" ]; }
check "each program is connected as its own role" wait_for 10 connected
orderpipe-loadgen --orders 300 --connections 8 --skus 10 --mix ok=70,oos=5,decline=10,flaky=5,hot=10 \
  --accepted "$TEST_TMP/accepted" > "$TEST_TMP/load.json"
want=$(sort -u "$TEST_TMP/accepted" | wc -l)
terminal() { [ "$(sql "select count(*) from orders where status in ('confirmed','cancelled')")" -ge "$want" ]; }
check "all $want orders reach a terminal state under the roles" wait_for 120 terminal
check "the pipeline goes idle" wait_for 60 pipeline_idle
check "no program hit a permission error" bash -c "! grep -l 'permission denied' '$ORDERPIPE_RUN_DIR'/logs/*.log"
"$ROOT/scripts/check-invariants" --accepted "$TEST_TMP/accepted" > "$TEST_TMP/inv.txt"
rc=$?; cat "$TEST_TMP/inv.txt"
check "every invariant holds" test $rc = 0
test_done
