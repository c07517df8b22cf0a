-- Reconciliation of a payment channel's daily settlement file with our payments
-- (scripts/reconcile, docs/operations.md "Daily reconciliation").
-- Every statement is written to be harmless when run again.

-- The channel a payment was charged on. 100_async_payments.sql adds it too; either may come first.
alter table payments add column if not exists channel text not null default 'card';
create index if not exists payments_channel_created on payments (channel, created_at);

-- One row per run of scripts/reconcile: which file (path and SHA-256) for which channel and day,
-- whether it fixed, and its figures once it finished (finished_at stays null if it died).
create table if not exists reconciliation_runs (
  id                 bigserial primary key,
  channel            text not null,
  settlement_date    date not null,
  settlement_file    text not null,
  settlement_sha256  text not null,
  fix                boolean not null,
  started_at         timestamptz not null default now(),
  finished_at        timestamptz,
  lines              int not null default 0,    -- movement lines read (the header aside)
  rejected           int not null default 0,    -- lines refused as malformed
  items              int not null default 0,    -- differences found, malformed lines included
  fixed              int not null default 0,    -- items this run's fixes resolved
  unresolved         int not null default 0
);
create index if not exists reconciliation_runs_day on reconciliation_runs (channel, settlement_date);

-- Every difference a run found, with what it did about it. The provider's side is the day's
-- file: their_amount is what it charged under the key, their_refunded what it refunded.
create table if not exists reconciliation_items (
  run_id          bigint not null references reconciliation_runs (id),
  item            int not null,
  kind            text not null check (kind in ('missing_at_provider', 'missing_here',
                                                'amount_mismatch', 'currency_mismatch',
                                                'charged_for_cancelled',
                                                'refunded_there_not_here', 'malformed_line')),
  charge_key      text,
  line_no         int,              -- the settlement file's first line of it (1 = the header)
  order_id        uuid,
  order_status    text,
  payment_status  text,
  our_amount      bigint,
  their_amount    bigint,
  their_refunded  bigint,
  our_currency    text,
  their_currency  text,
  action          text not null default 'none'
                  check (action in ('none', 'refund_owed', 'refund_issued', 'refund_already_issued',
                                    'refund_failed', 'refund_recorded')),
  refund_amount   bigint,
  resolved        boolean not null default false,
  detail          text,
  primary key (run_id, item)
);

-- The refunds reconciliation issued, one per channel and charge key: a later run finds the key
-- here and issues nothing more. The provider call itself uses Idempotency-Key
-- refund:<charge_key>, the payment worker's, so the two never refund a charge twice.
create table if not exists reconciliation_refunds (
  channel       text not null,
  charge_key    text not null,
  run_id        bigint not null references reconciliation_runs (id),
  provider_ref  text,
  amount        bigint not null check (amount >= 0),
  issued_at     timestamptz not null default now(),
  primary key (channel, charge_key)
);
