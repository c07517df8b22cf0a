-- report_refresh: stores the report's per-day parts (report_agg_*, sql/functions/report.sql) in
-- the report_rollup_* tables (sql/130_report_rollups.sql), for scripts/report refresh. Runs on
-- the primary, in one transaction at REPEATABLE READ (so every table is of the same snapshot),
-- one refresh at a time.
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
returns table (day date, orders bigint) language plpgsql as $$
declare
  v_zone text := current_setting('TimeZone');
  v_state report_rollup_state;
  v_today date := now()::date;
  v_first date;
  v_days date[];
  v_ranges tstzmultirange;
begin
  if current_setting('transaction_isolation') <> 'repeatable read' then
    raise exception 'report_refresh runs at repeatable read (one snapshot for every table)'
      using errcode = 'invalid_transaction_state';
  end if;
  perform pg_advisory_xact_lock(7366130);
  select * into v_state from report_rollup_state;
  if found and v_state.zone <> v_zone then
    truncate report_rollup_days, report_rollup_sku, report_rollup_daily, report_rollup_funnel,
             report_rollup_cancel, report_rollup_latency, report_rollup_latency_hist;
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

  select range_agg(tstzrange(d::timestamptz, (d + 1)::timestamptz, '[)')) into v_ranges
    from unnest(v_days) d;

  delete from report_rollup_sku r where r.day = any (v_days);
  delete from report_rollup_daily r where r.day = any (v_days);
  delete from report_rollup_funnel r where r.day = any (v_days);
  delete from report_rollup_cancel r where r.day = any (v_days);
  delete from report_rollup_latency r where r.day = any (v_days);
  delete from report_rollup_latency_hist r where r.day = any (v_days);

  insert into report_rollup_sku select * from report_agg_sku(v_ranges);
  insert into report_rollup_daily select * from report_agg_daily(v_ranges);
  insert into report_rollup_funnel select * from report_agg_funnel(v_ranges);
  insert into report_rollup_cancel select * from report_agg_cancel(v_ranges);
  insert into report_rollup_latency select * from report_agg_latency(v_ranges);
  insert into report_rollup_latency_hist
  select l.day, report_latency_bucket(l.us), count(*), sum(l.us), max(l.us)
    from report_rollup_latency l where l.day = any (v_days)
   group by 1, 2;

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
