#!/usr/bin/env bash
# scripts/check-invariants must hold on consistent data and catch each kind of violation, or the
# end-to-end tests that rely on it prove nothing.
source "$(dirname "$0")/lib.sh"
CHECK="$ROOT/scripts/check-invariants"

seed() {
  sql "insert into inventory(sku, available, reserved, sold, stocked) values ('A', 8, 0, 2, 10)"
  sql "insert into orders(id, client_id, customer_id, currency, total, payment_token, status, cancel_reason, placed_at)
       values ('00000000-0000-4000-8000-000000000001', 'dev', 'c', 'EUR', 200, 'tok_ok', 'confirmed', null, now()),
              ('00000000-0000-4000-8000-000000000002', 'dev', 'c', 'EUR', 100, 'tok_decline', 'cancelled', 'payment_declined', now())"
  sql "insert into order_lines values ('00000000-0000-4000-8000-000000000001', 1, 'A', 2, 100),
                                      ('00000000-0000-4000-8000-000000000002', 1, 'A', 1, 100)"
  sql "insert into payments(order_id, amount, currency, status, charge_key)
       values ('00000000-0000-4000-8000-000000000001', 200, 'EUR', 'succeeded', 'k1'),
              ('00000000-0000-4000-8000-000000000002', 100, 'EUR', 'declined', 'k2')"
  sql "insert into sim_provider_ledger(key, order_id, kind, amount)
       values ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000001', 'charge', 200)"
  sql "insert into notifications(order_id, event_type, channel, status)
       values ('00000000-0000-4000-8000-000000000001', 'order.confirmed', 'log', 'sent'),
              ('00000000-0000-4000-8000-000000000002', 'order.cancelled', 'log', 'sent')"
}

violates() { # INVARIANT -> true if the check fails and names that invariant as violated
  local out
  out=$("$CHECK" 2>&1) && return 1
  echo "$out" | grep -q "^invariant $1: VIOLATED"
}

seed
printf '00000000-0000-4000-8000-000000000001\n00000000-0000-4000-8000-000000000002\n' > "$TEST_TMP/acc"
check "consistent data passes" "$CHECK" --accepted "$TEST_TMP/acc"
"$CHECK" --json > "$TEST_TMP/json"
check "--json prints one JSON line with ok=true" jq -e '.ok == true and (.invariants | length) == 7' "$TEST_TMP/json"

echo 00000000-0000-4000-8000-0000000000ff >> "$TEST_TMP/acc"
check "an accepted order that never arrived violates 1" bash -c "! '$CHECK' --accepted '$TEST_TMP/acc' | grep -q 'invariant 1: holds'"

sql "alter table inventory drop constraint inventory_check"
sql "update inventory set available = 9 where sku = 'A'"
check "stock that does not add up violates 2" violates 2
sql "update inventory set available = 8 where sku = 'A'"

sql "update inventory set sold = 1, available = 9 where sku = 'A'"
check "sold differing from confirmed lines violates 3" violates 3
sql "update inventory set sold = 2, available = 8 where sku = 'A'"

sql "update payments set refunded_amount = 200 where order_id = '00000000-0000-4000-8000-000000000001'"
check "a confirmed order refunded violates 4" violates 4
sql "update payments set refunded_amount = 0 where order_id = '00000000-0000-4000-8000-000000000001'"

sql "insert into sim_provider_ledger(key, order_id, kind, amount)
     values ('x2', '00000000-0000-4000-8000-000000000002', 'charge', 100)"
check "a cancelled order charged and never refunded at the provider violates 4" violates 4
sql "delete from sim_provider_ledger where key = 'x2'"

sql "delete from notifications where order_id = '00000000-0000-4000-8000-000000000002'"
check "a terminal order without notification violates 5" violates 5
sql "insert into notifications(order_id, event_type, channel, status)
     values ('00000000-0000-4000-8000-000000000002', 'order.cancelled', 'log', 'sent')"

sql "insert into outbox(message_id, aggregate_id, routing_key, payload)
     values ('00000000-0000-4000-8000-0000000000aa', 'x', 'order.placed', '{}')"
check "an unpublished outbox row violates 6" violates 6
sql "delete from outbox"

printf 'k1 00000000-0000-4000-8000-000000000001\nk1 00000000-0000-4000-8000-000000000002\n' > "$TEST_TMP/idem"
check "one key with two order ids violates 7" bash -c "! '$CHECK' --idempotency '$TEST_TMP/idem' | grep -q 'invariant 7: holds'"

check "back to consistent data passes again" "$CHECK"

# --restored: a database caught mid-flight (a point-in-time restore) has orders on their way and
# rows not yet published or notified; the balance checks still apply.
sql "insert into orders(id, client_id, customer_id, currency, total, payment_token, status, placed_at)
     values ('00000000-0000-4000-8000-000000000003', 'dev', 'c', 'EUR', 100, 'tok_ok', 'reserved', now())"
sql "insert into order_lines values ('00000000-0000-4000-8000-000000000003', 1, 'A', 1, 100)"
sql "update inventory set available = 7, reserved = 1 where sku = 'A'"
sql "insert into reservations(order_id, sku, quantity, status, expires_at)
     values ('00000000-0000-4000-8000-000000000003', 'A', 1, 'held', now() + interval '1 minute')"
sql "insert into outbox(message_id, aggregate_id, routing_key, payload)
     values ('00000000-0000-4000-8000-0000000000ab', 'x', 'order.reserved', '{}')"
sql "delete from notifications where order_id = '00000000-0000-4000-8000-000000000002'"
check "an order in flight violates 1 at rest" violates 1
check "an unsent notification violates 5 at rest" violates 5
check "a mid-flight database passes with --restored" "$CHECK" --restored
check "--restored skips the at-rest check 6" bash -c \
  "'$CHECK' --restored --json | jq -se 'length == 1 and (.[0].invariants[\"6\"] | .ok and (.detail | startswith(\"not at rest\")))'"
# An order cancelled after its charge, its refund requested but not yet made: in flight, not at rest.
sql "update payments set status = 'refund_pending', amount = 100 where order_id = '00000000-0000-4000-8000-000000000002'"
sql "insert into sim_provider_ledger(key, order_id, kind, amount)
     values ('x3', '00000000-0000-4000-8000-000000000002', 'charge', 100)"
check "a refund still owed violates 4 at rest" violates 4
check "and is in flight with --restored" "$CHECK" --restored
sql "update payments set status = 'declined' where order_id = '00000000-0000-4000-8000-000000000002'"
check "a cancelled order charged and never refunded violates 4 with --restored too" bash -c \
  "! '$CHECK' --restored | grep -q 'invariant 4: holds'"
sql "delete from sim_provider_ledger where key = 'x3'"
sql "update inventory set available = 8 where sku = 'A'"
check "stock that does not add up violates 2 with --restored too" bash -c \
  "! '$CHECK' --restored | grep -q 'invariant 2: holds'"
sql "update inventory set available = 7 where sku = 'A'"
sql "insert into notifications(order_id, event_type, channel, status)
     values ('00000000-0000-4000-8000-000000000003', 'order.confirmed', 'log', 'sent')"
check "a notification for an order in flight violates 5 with --restored too" bash -c \
  "! '$CHECK' --restored | grep -q 'invariant 5: holds'"
test_done
