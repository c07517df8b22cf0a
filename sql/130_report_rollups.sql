-- Daily rollups of the sales report: per calendar day, the aggregates scripts/report shows, kept
-- by `scripts/report refresh` (report_refresh, sql/functions/report_rollup.sql) so that a report
-- reads one row per day and SKU instead of every order of the history. Every table adds up
-- across days exactly: counts and sums per day, and for the saga latency the values themselves
-- (report_rollup_latency) beside a per-day histogram that says which values to read for a
-- percentile. Days are calendar days in report_rollup_state.zone; the report reads the rollups
-- only in that zone, and computes from the live tables every day that is not rolled up or that
-- changed since the last refresh (orders.state_entered_at after the watermark less the lag).

-- One row: the zone of the rolled-up days, and the watermark of the last full refresh. Every
-- change committed before the watermark's transaction started is in the rollups, except one
-- made by a transaction still open then: lag covers those (an order's state_entered_at is the
-- start of the transaction that changed it).
create table report_rollup_state (
  id            boolean primary key default true check (id),
  zone          text not null,
  watermark     timestamptz not null,
  lag           interval not null default interval '5 minutes',
  refreshed_at  timestamptz not null default now()
);

-- The days rolled up, empty days included, so that a report over a period knows which days to
-- take from the live tables.
create table report_rollup_days (
  day           date primary key,
  orders        bigint not null,
  refreshed_at  timestamptz not null
);

-- report_agg_sku: per day, SKU and currency.
create table report_rollup_sku (
  day                date not null,
  sku                text not null,
  currency           text not null,
  orders             bigint not null,
  units_ordered      bigint not null,
  confirmed_orders   bigint not null,
  units_sold         bigint not null,
  revenue            numeric not null,
  oos_cancellations  bigint not null,
  primary key (day, sku, currency)
);

-- report_agg_daily: per day and currency.
create table report_rollup_daily (
  day               date not null,
  currency          text not null,
  orders_placed     bigint not null,
  orders_confirmed  bigint not null,
  orders_cancelled  bigint not null,
  units_sold        bigint not null,
  revenue           numeric not null,
  primary key (day, currency)
);

-- report_agg_funnel: orders of the day that reached each stage.
create table report_rollup_funnel (
  day        date primary key,
  placed     bigint not null,
  reserved   bigint not null,
  paid       bigint not null,
  confirmed  bigint not null
);

create table report_rollup_cancel (
  day     date not null,
  reason  text not null,
  orders  bigint not null,
  primary key (day, reason)
);

-- Saga latency (placed -> confirmed) of each confirmed order, in microseconds: the exact values
-- a percentile is read from. Indexed by value, so a percentile reads one histogram bucket.
create table report_rollup_latency (
  day  date not null,
  us   bigint not null
);
create index report_rollup_latency_us on report_rollup_latency (us, day);
create index report_rollup_latency_day on report_rollup_latency (day);

-- The same values per day in buckets of two significant digits (report_latency_bucket), with
-- their count, sum and maximum: the rank of a percentile is found here.
create table report_rollup_latency_hist (
  day     date not null,
  bucket  bigint not null,
  n       bigint not null,
  sum_us  numeric not null,
  max_us  bigint not null,
  primary key (day, bucket)
);

-- Which orders changed after a time: a BRIN index costs a write next to nothing, and the orders
-- a refresh looks for are the newest rows of the table.
create index orders_state_entered_at_brin on orders using brin (state_entered_at)
  with (autosummarize = on);
