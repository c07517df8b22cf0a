-- The ledger of the in-process payment provider (PAYMENT_PROVIDER=sim). It stands for the
-- provider's own books: one row per idempotency key, so a charge or refund repeated with the same
-- key happens once, as with a real provider. The invariant check reads it.
create table sim_provider_ledger (
  key       text primary key,
  order_id  uuid not null,
  kind      text not null check (kind in ('charge', 'refund')),
  amount    bigint not null check (amount >= 0),
  at        timestamptz not null default now()
);
create index sim_provider_ledger_order on sim_provider_ledger (order_id);
