-- report_refresh: stores the report's per-day parts (report_agg_*, sql/functions/report.sql) in
-- the report_rollup_* tables (sql/130_report_rollups.sql), for scripts/report refresh. Runs on
-- the primary, in one transaction at REPEATABLE READ (so every table is of the same snapshot),
-- one refresh at a time. It works a month at a time: the month's days to refresh have their
-- orders, lines and transitions read once into temporary tables (report_stage), which every
-- aggregate then reads, and the month's rows of report_rollup_sku_month take the change.
--
--   report_refresh()             every day not rolled up yet from the first order's day to
--                                today, today (still open), and every day with an order changed
--                                since the watermark less the lag; then moves the watermark
--   report_refresh(p_since => D) the same, and every day from D to today
--   report_refresh(p_day => D)   day D alone; the watermark stays
--
-- Days are calendar days in the session's TimeZone; rollups kept in another zone are dropped
-- first (a report reads them only in their own zone). Returns each day refreshed, with its count
-- of orders.
create or replace function report_refresh(p_since date default null, p_day date default null)
returns table (day date, orders bigint) language plpgsql
set random_page_cost = 1.1 set work_mem = '64MB' as $$
declare
  v_zone text := current_setting('TimeZone');
  v_state report_rollup_state;
  v_today date := now()::date;
  v_first date;
  v_days date[];
  v_month date;
  v_batch date[];
  v_ranges tstzmultirange;
begin
  if current_setting('transaction_isolation') <> 'repeatable read' then
    raise exception 'report_refresh runs at repeatable read (one snapshot for every table)'
      using errcode = 'invalid_transaction_state';
  end if;
  perform pg_advisory_xact_lock(7366130);
  select * into v_state from report_rollup_state;
  if found and v_state.zone <> v_zone then
    truncate report_rollup_days, report_rollup_sku, report_rollup_sku_month, report_rollup_daily,
             report_rollup_funnel, report_rollup_cancel, report_rollup_latency_hist;
    delete from report_rollup_state;
    v_state := null;
  end if;

  if p_day is not null then
    v_days := array[p_day];
  else
    select coalesce(min(o.placed_at)::date, v_today) into v_first from orders o;
    select array_agg(distinct x.d order by x.d) into v_days from (
      select g::date as d
        from generate_series(least(v_first, coalesce(p_since, v_first), v_today), v_today,
                             interval '1 day') g
       where g::date >= coalesce(p_since, 'infinity'::date) or g::date = v_today
          or not exists (select 1 from report_rollup_days r where r.day = g::date)
      union
      select o.placed_at::date from orders o
       where v_state.watermark is not null
         and o.state_entered_at >= v_state.watermark - v_state.lag) x;
  end if;

  for v_month, v_batch in
    select date_trunc('month', d::timestamp)::date, array_agg(d order by d)
      from unnest(v_days) d group by 1 order by 1
  loop
    select range_agg(tstzrange(d::timestamptz, (d + 1)::timestamptz, '[)')) into v_ranges
      from unnest(v_batch) d;
    perform report_stage(v_ranges);

    perform report_rollup_sku_month_add(v_month, v_batch, -1);
    delete from report_rollup_sku r where r.day = any (v_batch);
    delete from report_rollup_daily r where r.day = any (v_batch);
    delete from report_rollup_funnel r where r.day = any (v_batch);
    delete from report_rollup_cancel r where r.day = any (v_batch);
    delete from report_rollup_latency_hist r where r.day = any (v_batch);

    insert into report_rollup_sku
    select * from report_agg_sku(v_ranges, 'report_stage_orders', 'report_stage_lines');
    insert into report_rollup_daily
    select * from report_agg_daily(v_ranges, 'report_stage_orders', 'report_stage_lines');
    insert into report_rollup_funnel
    select * from report_agg_funnel(v_ranges, 'report_stage_orders',
                                    p_transitions => 'report_stage_transitions');
    insert into report_rollup_cancel select * from report_agg_cancel(v_ranges, 'report_stage_orders');
    insert into report_rollup_latency_hist
    select a.day, a.bucket, count(*), sum(a.us), max(a.us), array_agg(a.us order by a.us)
      from (select l.day, l.us, report_latency_bucket(l.us) as bucket
              from report_agg_latency(v_ranges, 'report_stage_orders',
                                      p_transitions => 'report_stage_transitions') l) a
     group by 1, 2;

    perform report_rollup_sku_month_add(v_month, v_batch, 1);
    delete from report_rollup_sku_month m where m.month = v_month and m.orders = 0;
  end loop;

  insert into report_rollup_days as r (day, orders, refreshed_at)
  select d, coalesce(f.placed, 0), now()
    from unnest(v_days) d left join report_rollup_funnel f on f.day = d
  on conflict on constraint report_rollup_days_pkey
    do update set orders = excluded.orders, refreshed_at = excluded.refreshed_at;

  if p_day is null or v_state is null then
    -- A lone day's refresh sees every change to that day, but not to the others: it sets the
    -- watermark only when there was none, so that it says something of the day it stored.
    insert into report_rollup_state as s (zone, watermark, refreshed_at)
    values (v_zone, now(), clock_timestamp())
    on conflict on constraint report_rollup_state_pkey
      do update set watermark = excluded.watermark, refreshed_at = excluded.refreshed_at
      where p_day is null;
  end if;

  return query select r.day, r.orders from report_rollup_days r
                where r.day = any (v_days) order by r.day;
end $$;

-- report_stage(ranges): the orders placed in the ranges, their lines and their transitions to
-- reserved, paid and confirmed, in the temporary tables report_stage_orders, report_stage_lines
-- and report_stage_transitions (dropped at commit), each read once, and analysed so that the
-- aggregates over them are planned for their size. The orders are read by orders_placed_at, the
-- lines by one scan of order_lines_pkey over the orders' ids in key order.
--
-- The transitions: an order confirmed has been reserved and paid, and enters each state once
-- (sql/triggers/orders_guard_transition.sql), so the aggregates need of it only its 'confirmed'
-- transition (for the latency). Those are read by time, around the orders' placed_at (index
-- order_transitions_at_brin: a range of the table, not a probe per order); every other order,
-- and a confirmed one whose transition lies outside that time, has its transitions read by the
-- primary key. The time only makes the read cheaper: whatever it is, each order gets the same
-- rows.
create or replace function report_stage(p_ranges tstzmultirange)
returns void language plpgsql set random_page_cost = 1.1 as $f$
declare
  v_from timestamptz;
  v_to timestamptz;
begin
  if to_regclass('pg_temp.report_stage_orders') is null then
    create temp table report_stage_orders (
      id uuid, placed_at timestamptz, currency char(3), status text, cancel_reason text
    ) on commit drop;
    create temp table report_stage_lines (
      order_id uuid, sku text, quantity integer, unit_price bigint
    ) on commit drop;
    create temp table report_stage_transitions (
      order_id uuid, status text, at timestamptz
    ) on commit drop;
  else
    truncate report_stage_orders, report_stage_lines, report_stage_transitions;
  end if;
  execute format($q$
    insert into report_stage_orders
    select o.id, o.placed_at, o.currency, o.status, o.cancel_reason from orders o where %s $q$,
    report_ranges_sql(p_ranges));
  analyze report_stage_orders;

  insert into report_stage_lines
  select l.order_id, l.sku, l.quantity, l.unit_price
    from order_lines l
   where l.order_id = any (array(select o.id from report_stage_orders o order by o.id));

  select min(o.placed_at) - interval '1 hour', max(o.placed_at) + interval '1 hour'
    into v_from, v_to from report_stage_orders o;
  -- Materialised, so that the planner reads the time range once rather than probe per order.
  execute format($q$
    insert into report_stage_transitions
    with w as materialized (
      select t.order_id, t.status, t.at from order_transitions t
       where t.status = 'confirmed' and t.at >= %L and t.at < %L)
    select w.order_id, w.status, w.at
      from w join report_stage_orders o on o.id = w.order_id
     where o.status = 'confirmed' $q$,
    v_from, v_to);
  insert into report_stage_transitions
  select t.order_id, t.status, t.at
    from order_transitions t
   where t.status in ('reserved', 'paid', 'confirmed')
     and t.order_id = any (array(
           select o.id from report_stage_orders o
            where o.status <> 'confirmed'
               or not exists (select 1 from report_stage_transitions s where s.order_id = o.id)
            order by o.id));
  analyze report_stage_lines, report_stage_transitions;
end $f$;

-- Adds p_sign times the SKU rows of the days p_days (all in p_month) to the month's rows: a
-- refresh takes the days' old rows out before it replaces them, and puts the new ones in, so a
-- month's row stays the sum of its days without reading the month's other days. A row left
-- with no orders had no line that month: the caller deletes it.
create or replace function report_rollup_sku_month_add(p_month date, p_days date[], p_sign int)
returns void language sql as $$
  insert into report_rollup_sku_month as m
  select p_month, r.sku, r.currency, p_sign * sum(r.orders), p_sign * sum(r.units_ordered),
         p_sign * sum(r.confirmed_orders), p_sign * sum(r.units_sold), p_sign * sum(r.revenue),
         p_sign * sum(r.oos_cancellations)
    from report_rollup_sku r
   where r.day = any (p_days)
   group by r.sku, r.currency
  on conflict on constraint report_rollup_sku_month_pkey do update
    set orders = m.orders + excluded.orders,
        units_ordered = m.units_ordered + excluded.units_ordered,
        confirmed_orders = m.confirmed_orders + excluded.confirmed_orders,
        units_sold = m.units_sold + excluded.units_sold,
        revenue = m.revenue + excluded.revenue,
        oos_cancellations = m.oos_cancellations + excluded.oos_cancellations
$$;
