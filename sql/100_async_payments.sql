-- Asynchronous payments: channels, pending charges, provider notifications (docs/design.md,
-- "Payments"). A provider may answer a charge "pending": the payment stays pending, remembers
-- when the provider said so and when to query it next, and the result comes later by a
-- notification (payment.notified) or by an active query. An order whose payment never completes
-- is cancelled with payment_timeout and its charge voided.
-- Every statement is written to be harmless when run again.

-- The payment method of an order names the channel (provider) that charges it.
alter table orders add column if not exists payment_method text not null default 'card';
alter table payments add column if not exists channel text not null default 'card';
alter table payments add column if not exists provider_pending_at timestamptz;
alter table payments add column if not exists next_query_at timestamptz;
alter table payments add column if not exists queries int not null default 0;

alter table orders drop constraint if exists orders_cancel_reason_check;
alter table orders add constraint orders_cancel_reason_check
  check (cancel_reason in ('out_of_stock', 'payment_declined', 'payment_timeout',
                           'reservation_expired', 'customer_cancelled'));

-- voided: a pending charge cancelled at the provider, never settled (no money moved).
alter table payments drop constraint if exists payments_status_check;
alter table payments add constraint payments_status_check
  check (status in ('pending', 'succeeded', 'declined', 'refund_pending', 'refunded', 'voided'));

-- The payment worker's query tick: pending-at-provider payments due for a query.
create index if not exists payments_query_due on payments (next_query_at)
  where status = 'pending' and provider_pending_at is not null;

-- Every payment.notified the payment worker consumed, with what it did (outcome) and why
-- (detail). A provider's event id is unique per channel: a repeat finds its row and changes
-- nothing. `mismatch` rows (order, charge key, amount or currency differ from our payment) are
-- for an operator to look at.
create table if not exists payment_notifications (
  channel      text not null,
  event_id     text not null,
  order_id     uuid,
  charge_key   text,
  provider_ref text,
  status       text,
  amount       bigint,
  currency     text,
  received_at  timestamptz not null default now(),
  outcome      text not null check (outcome in ('applied', 'duplicate', 'mismatch',
                                                'already_final', 'unknown_order',
                                                'late_refunded')),
  detail       text,
  primary key (channel, event_id)
);
create index if not exists payment_notifications_outcome on payment_notifications (outcome, received_at);

-- The in-process provider's pending charges (PAYMENT_PROVIDER=sim): a charge it answered
-- pending waits here until a query finds it complete (it is then booked in sim_provider_ledger)
-- or a void cancels it.
create table if not exists sim_provider_pending (
  key       text primary key,
  order_id  uuid not null,
  amount    bigint not null,
  token     text not null,
  status    text not null default 'pending' check (status in ('pending', 'succeeded', 'voided')),
  at        timestamptz not null default now()
);

grant select, insert on payment_notifications to orderpipe_payment;
grant select, insert, update on sim_provider_pending to orderpipe_payment;

-- A column privilege does not cover a column added later (085_column_privileges.sql): the roles
-- that read orders column by column read the payment method too (it is no secret).
grant select (payment_method) on orders to orderpipe_reservation, orderpipe_notification,
  orderpipe_compensation, orderpipe_replay;
