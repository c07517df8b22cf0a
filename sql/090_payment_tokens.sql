-- Payment tokens, kept out of the events: only the payment step charges with one, so the
-- producers (the intake, the bulk import) record it here, by order id, before they publish the
-- order.placed that carries everything else, and the payment worker reads it back. The event
-- itself, which every queue bound to its key receives, has no payment field.
-- orders.payment_token stays for rows recorded before (and for tests that record orders by
-- hand); new orders leave it null.
create table payment_tokens (
  order_id    uuid primary key,
  token       text not null,
  created_at  timestamptz not null default now()
);

alter table orders alter column payment_token drop not null;

-- The producers only insert (ON CONFLICT DO NOTHING needs no more): none of them reads a token
-- back, and the public API's role least of all.
grant insert on payment_tokens to orderpipe_intake, orderpipe_enqueue;
grant select on payment_tokens to orderpipe_payment;

-- The replay redrive rebuilds stock.reserved without a token now: it reads every orders column
-- but payment_token, like reservation, notification and compensation (085_column_privileges.sql).
do $$
declare cols text;
begin
  select string_agg(quote_ident(column_name), ', ' order by ordinal_position) into cols
    from information_schema.columns
   where table_schema = 'public' and table_name = 'orders' and column_name <> 'payment_token';
  revoke select on orders from orderpipe_replay;
  execute format('grant select (%s) on orders to orderpipe_replay', cols);
end $$;
