-- Column privileges: a role reads only the columns its program's SQL reads.
-- 040_roles.sql grants SELECT on whole tables; where a role does not need every column, the
-- table-wide SELECT is revoked here and SELECT granted on the columns it needs instead:
--   - the intake (the role behind the public API) reads, for GET /v1/orders/{id}, the order's
--     public fields, its lines and its transitions, and, for backpressure, only when the outbox's
--     unpublished rows were made (count(*) needs SELECT on one column). It never reads a payment
--     token, the notify address of an order, or an outbox payload (which carries both).
--   - every role but payment and replay (which send the token to the provider) reads every orders
--     column except payment_token; reservation still writes it (INSERT is unchanged).
-- A column privilege does not cover a column added later: a migration that adds a column a role
-- must read grants it (a table-wide grant would, silently, for secrets too).

revoke select on orders, outbox from orderpipe_intake;
grant select (id, client_id, customer_id, currency, total, status, cancel_reason, placed_at,
              recorded_at, state_entered_at) on orders to orderpipe_intake;
grant select (created_at, published_at) on outbox to orderpipe_intake;

do $$
declare
  r text;
  cols text;
begin
  select string_agg(quote_ident(column_name), ', ' order by ordinal_position) into cols
    from information_schema.columns
   where table_schema = 'public' and table_name = 'orders' and column_name <> 'payment_token';
  foreach r in array array['orderpipe_reservation', 'orderpipe_notification',
                           'orderpipe_compensation'] loop
    execute format('revoke select on orders from %I', r);
    execute format('grant select (%s) on orders to %I', cols, r);
  end loop;
end $$;
