-- Sales analytics for scripts/report (docs/design.md). Every aggregate is computed here; the
-- script only formats. Each report_*_between function takes an optional window on
-- orders.placed_at: p_from inclusive, p_to exclusive, NULL meaning unbounded. Days are calendar
-- days in the session's TimeZone (scripts/report sets UTC unless REPORT_TZ says otherwise).
-- Revenue is sum(quantity * unit_price) over the lines of confirmed orders, in minor units, per
-- currency. The report_* views (sql/views/report.sql) are the same figures over the whole history.
--
-- Each figure is the sum of per-day parts: the report_agg_* functions compute them from the live
-- tables over a set of time ranges, and report_refresh (sql/functions/report_rollup.sql) stores
-- them per day in the report_rollup_* tables (sql/130_report_rollups.sql). A report reads the
-- stored days that lie wholly in its window and have not changed since they were stored
-- (report_clean_days), and computes the rest of the window live (report_live_ranges), so the
-- figures are those of the live tables whichever way a day is read, and the cost follows the
-- days that are not stored. The setting orderpipe.report_rollups = off reads everything live.
-- The report_*_between functions are SQL, checked against the tables when created, so each one
-- follows those it reads; the report_agg_* ones plan their query for the time ranges they are
-- given. All of them only read, so a report runs on a hot standby.

-- The orders placed in the window.
create or replace function report_orders(p_from timestamptz default null,
                                         p_to timestamptz default null)
returns setof orders language sql stable as $$
  select * from orders o
   where (p_from is null or o.placed_at >= p_from)
     and (p_to is null or o.placed_at < p_to)
$$;

-- The report_agg_* functions read the order tables, or the tables named by p_orders, p_lines and
-- p_transitions with the same columns: report_refresh stages a batch of days' orders, lines and
-- transitions in temporary tables once, and every aggregate reads them there.
--
-- The report_agg_* functions plan with random_page_cost 1.1 (an SSD's): with the default 4 the
-- planner would rather read every order line of a large history than probe the primary key for
-- each order of one day.
--
-- The SQL condition "o.placed_at is in one of the ranges" (an unbounded end is open), with the
-- bounds as literals: the report_agg_* functions plan their query for the ranges at hand (an
-- index scan for a few days, a sequential scan for the whole history).
create or replace function report_ranges_sql(p_ranges tstzmultirange)
returns text language sql stable as $$
  select coalesce(string_agg(format('(o.placed_at >= %L and o.placed_at < %L)',
                                    coalesce(lower(r), '-infinity'), coalesce(upper(r), 'infinity')),
                             ' or '), 'false')
    from unnest(p_ranges) r
$$;

-- The days of the window to read from the rollups: rolled up in this session's zone, wholly in
-- the window, and with no order placed that day changed since the watermark less the lag.
create or replace function report_clean_days(p_from timestamptz default null,
                                             p_to timestamptz default null)
returns date[] language sql stable as $$
  select coalesce(array_agg(d.day order by d.day), '{}')
    from report_rollup_days d
    join report_rollup_state s on s.zone = current_setting('TimeZone')
   where coalesce(current_setting('orderpipe.report_rollups', true), 'on') <> 'off'
     and (p_from is null or d.day::timestamptz >= p_from)
     and (p_to is null or (d.day + 1)::timestamptz <= p_to)
     and d.day not in (select o.placed_at::date from orders o
                        where o.state_entered_at >= (select watermark - lag from report_rollup_state))
$$;

-- The window less the clean days: what a report computes from the live tables.
create or replace function report_live_ranges(p_from timestamptz, p_to timestamptz,
                                              p_clean date[])
returns tstzmultirange language sql stable as $$
  select tstzmultirange(tstzrange(p_from, p_to, '[)'))
         - coalesce((select range_agg(tstzrange(d::timestamptz, (d + 1)::timestamptz, '[)'))
                       from unnest(p_clean) d), '{}')
$$;

-- The histogram bucket of a latency in microseconds: its two leading digits (all negative values,
-- from clocks apart, share one bucket). Buckets only order the values; the values are exact.
-- Not declared strict (NULL gives NULL all the same), so that the planner inlines it instead of
-- calling it once per value.
create or replace function report_latency_bucket(p_us bigint)
returns bigint language sql immutable parallel safe as $$
  select case when p_us < 0 then -9223372036854775807
              when p_us < 100 then p_us
              else p_us - p_us % (10::bigint ^ (length(p_us::text) - 2))::bigint end
$$;

-- Per day, SKU and currency (see report_sku_sales_between), and the orders cancelled
-- out_of_stock that had the SKU.
drop function if exists report_agg_sku(tstzmultirange);
create or replace function report_agg_sku(p_ranges tstzmultirange, p_orders text default 'orders',
  p_lines text default 'order_lines', p_transitions text default 'order_transitions')
returns table (day date, sku text, currency text, orders bigint, units_ordered bigint,
               confirmed_orders bigint, units_sold bigint, revenue numeric,
               oos_cancellations bigint)
language plpgsql stable set random_page_cost = 1.1 as $f$
begin
  return query execute format($q$
    with per_order as (
      select o.placed_at::date as day, l.sku, o.currency::text as currency, o.status,
             o.cancel_reason, sum(l.quantity) as units,
             sum(l.quantity::numeric * l.unit_price) as amount
        from %I o
        join %I l on l.order_id = o.id
       where %s
       group by o.id, 1, 2, 3, o.status, o.cancel_reason)
    select day, sku, currency, count(*), sum(units)::bigint,
           count(*) filter (where status = 'confirmed'),
           coalesce(sum(units) filter (where status = 'confirmed'), 0)::bigint,
           coalesce(sum(amount) filter (where status = 'confirmed'), 0),
           count(*) filter (where status = 'cancelled' and cancel_reason = 'out_of_stock')
      from per_order
     group by 1, 2, 3 $q$, p_orders, p_lines, report_ranges_sql(p_ranges));
end $f$;

-- Per day (of placed_at) and currency.
drop function if exists report_agg_daily(tstzmultirange);
create or replace function report_agg_daily(p_ranges tstzmultirange, p_orders text default 'orders',
  p_lines text default 'order_lines', p_transitions text default 'order_transitions')
returns table (day date, currency text, orders_placed bigint, orders_confirmed bigint,
               orders_cancelled bigint, units_sold bigint, revenue numeric)
language plpgsql stable set random_page_cost = 1.1 as $f$
begin
  return query execute format($q$
    with o as (
      select o.id, o.placed_at::date as day, o.currency::text as currency, o.status
        from %I o where %s),
    placed as (
      select day, currency, count(*) as n,
             count(*) filter (where status = 'confirmed') as confirmed,
             count(*) filter (where status = 'cancelled') as cancelled
        from o group by day, currency),
    sold as (
      select o.day, o.currency, sum(l.quantity) as units,
             sum(l.quantity::numeric * l.unit_price) as amount
        from o join %I l on l.order_id = o.id
       where o.status = 'confirmed'
       group by o.day, o.currency)
    select day, currency, p.n, p.confirmed, p.cancelled,
           coalesce(s.units, 0)::bigint, coalesce(s.amount, 0)
      from placed p left join sold s using (day, currency)
     $q$, p_orders, report_ranges_sql(p_ranges), p_lines);
end $f$;

-- Per day, how many orders reached each stage: a recorded transition, or a current status at or
-- past the stage.
drop function if exists report_agg_funnel(tstzmultirange);
create or replace function report_agg_funnel(p_ranges tstzmultirange, p_orders text default 'orders',
  p_lines text default 'order_lines', p_transitions text default 'order_transitions')
returns table (day date, placed bigint, reserved bigint, paid bigint, confirmed bigint)
language plpgsql stable set random_page_cost = 1.1 as $f$
begin
  return query execute format($q$
    select o.placed_at::date, count(*),
           count(*) filter (where o.status in ('reserved', 'paid', 'confirmed') or tr.order_id is not null),
           count(*) filter (where o.status in ('paid', 'confirmed') or tp.order_id is not null),
           count(*) filter (where o.status = 'confirmed' or tc.order_id is not null)
      from %1$I o
      left join %2$I tr on tr.order_id = o.id and tr.status = 'reserved'
      left join %2$I tp on tp.order_id = o.id and tp.status = 'paid'
      left join %2$I tc on tc.order_id = o.id and tc.status = 'confirmed'
     where %3$s
     group by 1 $q$, p_orders, p_transitions, report_ranges_sql(p_ranges));
end $f$;

drop function if exists report_agg_cancel(tstzmultirange);
create or replace function report_agg_cancel(p_ranges tstzmultirange, p_orders text default 'orders',
  p_lines text default 'order_lines', p_transitions text default 'order_transitions')
returns table (day date, reason text, orders bigint)
language plpgsql stable set random_page_cost = 1.1 as $f$
begin
  return query execute format($q$
    select o.placed_at::date, o.cancel_reason, count(*)
      from %I o
     where o.status = 'cancelled' and (%s)
     group by 1, 2 $q$, p_orders, report_ranges_sql(p_ranges));
end $f$;

-- Saga latency of each confirmed order: the 'confirmed' transition's time less placed_at, in
-- microseconds (the timestamps' resolution, so the value is exact).
drop function if exists report_agg_latency(tstzmultirange);
create or replace function report_agg_latency(p_ranges tstzmultirange, p_orders text default 'orders',
  p_lines text default 'order_lines', p_transitions text default 'order_transitions')
returns table (day date, us bigint)
language plpgsql stable set random_page_cost = 1.1 as $f$
begin
  return query execute format($q$
    select o.placed_at::date, (extract(epoch from (t.at - o.placed_at)) * 1000000)::bigint
      from %I o
      join %I t on t.order_id = o.id and t.status = 'confirmed'
     where %s $q$, p_orders, p_transitions, report_ranges_sql(p_ranges));
end $f$;

-- The clean days of the window (report_clean_days) as the SKU sections read them: the months
-- whose every day is clean, from report_rollup_sku_month, and the other clean days.
create or replace function report_clean_parts(p_from timestamptz default null,
                                              p_to timestamptz default null,
                                              out clean date[], out months date[], out days date[])
language sql stable as $$
  with all_clean as (select report_clean_days(p_from, p_to) as days),
  c as (select d, date_trunc('month', d::timestamp)::date as m
          from all_clean, unnest(all_clean.days) d),
  full_months as (
    select m from c group by m
    having count(*) = (m + interval '1 month')::date - m)
  select (select days from all_clean),
         coalesce((select array_agg(m order by m) from full_months), '{}'),
         coalesce((select array_agg(d order by d) from c
                    where m not in (select m from full_months)), '{}')
$$;

-- Per SKU and currency, the report_agg_sku figures summed over the window: closed months and
-- days from the rollups, the rest live. Read once per SKU section.
create or replace function report_sku_totals(p_from timestamptz default null,
                                             p_to timestamptz default null)
returns table (sku text, currency text, orders bigint, units_ordered bigint,
               confirmed_orders bigint, units_sold bigint, revenue numeric,
               oos_cancellations bigint)
language sql stable as $$
  with c as (select * from report_clean_parts(p_from, p_to)),
  parts as (
    select r.sku, r.currency, r.orders, r.units_ordered, r.confirmed_orders, r.units_sold,
           r.revenue, r.oos_cancellations
      from report_rollup_sku_month r where r.month in (select unnest(months) from c)
    union all
    select r.sku, r.currency, r.orders, r.units_ordered, r.confirmed_orders, r.units_sold,
           r.revenue, r.oos_cancellations
      from report_rollup_sku r where r.day in (select unnest(days) from c)
    union all
    select a.sku, a.currency, a.orders, a.units_ordered, a.confirmed_orders, a.units_sold,
           a.revenue, a.oos_cancellations
      from report_agg_sku(report_live_ranges(p_from, p_to, (select clean from c))) a)
  select sku, currency, sum(orders)::bigint, sum(units_ordered)::bigint,
         sum(confirmed_orders)::bigint, sum(units_sold)::bigint, sum(revenue),
         sum(oos_cancellations)::bigint
    from parts
   group by sku, currency
$$;

-- Per SKU and currency: units ordered over every order, units sold and revenue over confirmed ones.
create or replace function report_sku_sales_between(p_from timestamptz default null,
                                         p_to timestamptz default null)
returns table (sku text, currency text, orders bigint, units_ordered bigint, confirmed_orders bigint,
               units_sold bigint, revenue numeric)
language sql stable as $$
  select sku, currency, orders, units_ordered, confirmed_orders, units_sold, revenue
    from report_sku_totals(p_from, p_to)
   order by sku, currency
$$;

-- Per day (of placed_at) and currency.
create or replace function report_daily_sales_between(p_from timestamptz default null,
                                           p_to timestamptz default null)
returns table (day date, currency text, orders_placed bigint, orders_confirmed bigint,
               orders_cancelled bigint, units_sold bigint, revenue numeric)
language sql stable as $$
  with c as (select report_clean_days(p_from, p_to) as days)
  select * from (
    select r.day, r.currency, r.orders_placed, r.orders_confirmed, r.orders_cancelled,
           r.units_sold, r.revenue
      from report_rollup_daily r where r.day in (select unnest(days) from c)
    union all
    select * from report_agg_daily(report_live_ranges(p_from, p_to, (select days from c)))) d
   order by day, currency
$$;

-- placed -> reserved -> paid -> confirmed: how many of the window's orders reached each stage
-- (a recorded transition, or a current status at or past the stage), and the share of placed.
create or replace function report_funnel_between(p_from timestamptz default null,
                                      p_to timestamptz default null)
returns table (step int, stage text, orders bigint, pct_of_placed numeric)
language sql stable as $$
  with c as (select report_clean_days(p_from, p_to) as days),
  f as (
    select coalesce(sum(placed), 0)::bigint as placed, coalesce(sum(reserved), 0)::bigint as reserved,
           coalesce(sum(paid), 0)::bigint as paid, coalesce(sum(confirmed), 0)::bigint as confirmed
      from (select r.placed, r.reserved, r.paid, r.confirmed
              from report_rollup_funnel r where r.day in (select unnest(days) from c)
            union all
            select a.placed, a.reserved, a.paid, a.confirmed
              from report_agg_funnel(report_live_ranges(p_from, p_to, (select days from c))) a) x),
  reached(step, stage, n) as (
    select 1, 'placed', placed from f union all select 2, 'reserved', reserved from f
    union all select 3, 'paid', paid from f union all select 4, 'confirmed', confirmed from f)
  select step, stage, n,
         case when first_value(n) over (order by step) > 0
              then round(100.0 * n / first_value(n) over (order by step), 1) end
    from reached
   order by step
$$;

create or replace function report_cancel_reasons_between(p_from timestamptz default null,
                                              p_to timestamptz default null)
returns table (reason text, orders bigint, pct_of_cancelled numeric)
language sql stable as $$
  with c as (select report_clean_days(p_from, p_to) as days)
  select reason, sum(orders)::bigint,
         round(100.0 * sum(orders) / sum(sum(orders)) over (), 1)
    from (select r.reason, r.orders from report_rollup_cancel r where r.day in (select unnest(days) from c)
          union all
          select a.reason, a.orders
            from report_agg_cancel(report_live_ranges(p_from, p_to, (select days from c))) a) x
   group by reason
   order by sum(orders) desc, reason
$$;

-- Saga latency of confirmed orders: the 'confirmed' transition's time minus placed_at, in ms.
-- The percentiles are percentile_cont's, over the exact values: the merged histogram gives the
-- bucket and rank of each value percentile_cont interpolates between, and only that bucket's
-- values are read (the arrays report_rollup_latency_hist.us of that bucket, by index
-- report_rollup_latency_hist_bucket), the interpolation being percentile_cont's own, in float8,
-- on the same values.
create or replace function report_latency_between(p_from timestamptz default null,
                                       p_to timestamptz default null)
returns table (confirmed_orders bigint, p50_ms numeric, p95_ms numeric, p99_ms numeric,
               max_ms numeric, mean_ms numeric)
language sql stable as $$
  with c as (select report_clean_days(p_from, p_to) as days),
  live as (
    select a.us, report_latency_bucket(a.us) as bucket
      from report_agg_latency(report_live_ranges(p_from, p_to, (select days from c))) a),
  hist as (
    select bucket, sum(n)::bigint as n, sum(sum_us) as sum_us, max(max_us) as max_us
      from (select h.bucket, h.n, h.sum_us, h.max_us
              from report_rollup_latency_hist h where h.day in (select unnest(days) from c)
            union all
            select bucket, count(*), sum(us), max(us) from live group by bucket) x
     group by bucket),
  cum as (
    select bucket, n, sum(n) over (order by bucket) - n as below from hist),
  tot as (select coalesce(sum(n), 0)::bigint as n, sum(sum_us) as sum_us, max(max_us) as max_us
            from hist),
  q as (select u.k, u.p, u.p * (tot.n - 1) as pos
          from tot, unnest(array[0.50, 0.95, 0.99]::float8[]) with ordinality u(p, k)
         where tot.n > 0),
  v as (
    select q.k, q.pos, e.lo,
           ((select x.us
               from (select unnest(h.us) as us from report_rollup_latency_hist h
                      where h.bucket = cum.bucket and h.day in (select unnest(days) from c)
                     union all
                     select l.us from live l where l.bucket = cum.bucket) x
              order by x.us offset e.rank - cum.below limit 1)::numeric / 1000)::float8 as ms
      from q
     cross join lateral (values (true, floor(q.pos)::bigint), (false, ceil(q.pos)::bigint)) e(lo, rank)
      join cum on e.rank >= cum.below and e.rank < cum.below + cum.n),
  pct as (
    select lo.k, lo.ms + (hi.ms - lo.ms) * (lo.pos - floor(lo.pos)) as ms
      from v lo join v hi on hi.k = lo.k and not hi.lo
     where lo.lo)
  select tot.n,
         (select round(ms::numeric, 1) from pct where k = 1),
         (select round(ms::numeric, 1) from pct where k = 2),
         (select round(ms::numeric, 1) from pct where k = 3),
         round(tot.max_us::numeric / 1000, 1),
         round(tot.sum_us / 1000 / nullif(tot.n, 0), 1)
    from tot
$$;

create or replace function report_top_skus_between(p_from timestamptz default null,
                                        p_to timestamptz default null, p_limit int default 10)
returns table (rank bigint, sku text, currency text, units_sold bigint, revenue numeric)
language sql stable as $$
  select row_number() over (order by revenue desc, units_sold desc, sku, currency),
         sku, currency, units_sold, revenue
    from report_sku_sales_between(p_from, p_to)
   where revenue > 0
   order by revenue desc, units_sold desc, sku, currency
   limit p_limit
$$;

-- SKUs out of stock now (available = 0), and SKUs whose lines were in orders cancelled
-- out_of_stock in the window, with how many such orders.
create or replace function report_stockouts_between(p_from timestamptz default null,
                                         p_to timestamptz default null)
returns table (sku text, available bigint, reserved bigint, sold bigint, out_of_stock_now boolean,
               oos_cancellations bigint)
language sql stable as $$
  with c as (
    select t.sku, sum(t.oos_cancellations)::bigint as n
      from report_sku_totals(p_from, p_to) t
     group by t.sku)
  select coalesce(i.sku, c.sku), i.available, i.reserved, i.sold,
         coalesce(i.available = 0, false), coalesce(c.n, 0)
    from inventory i
    full join c on c.sku = i.sku
   where i.available = 0 or c.n > 0
   order by coalesce(c.n, 0) desc, coalesce(i.sku, c.sku)
$$;
