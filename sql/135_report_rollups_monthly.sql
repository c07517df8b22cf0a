-- The SKU rollup summed per calendar month (first day of the month as its key), so that a report
-- over closed months reads one row per month, SKU and currency instead of one per day. It is
-- kept equal to the sum of the month's rows in report_rollup_sku: report_refresh recomputes a
-- month whenever it stores one of its days, and a report reads it only for months whose every
-- day is rolled up and unchanged since (report_clean_parts, sql/functions/report.sql).
create table report_rollup_sku_month (
  month              date not null check (extract(day from month) = 1),
  sku                text not null,
  currency           text not null,
  orders             bigint not null,
  units_ordered      bigint not null,
  confirmed_orders   bigint not null,
  units_sold         bigint not null,
  revenue            numeric not null,
  oos_cancellations  bigint not null,
  primary key (month, sku, currency)
);

insert into report_rollup_sku_month
select date_trunc('month', day::timestamp)::date, sku, currency, sum(orders), sum(units_ordered),
       sum(confirmed_orders), sum(units_sold), sum(revenue), sum(oos_cancellations)
  from report_rollup_sku
 group by 1, 2, 3;
