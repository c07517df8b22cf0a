-- Sales analytics for scripts/report (docs/design.md §4). Every aggregate is computed here; the script
-- only formats. Each function takes an optional window on orders.placed_at: p_from inclusive,
-- p_to exclusive, NULL meaning unbounded. Days are calendar days in the session's TimeZone
-- (scripts/report sets UTC unless REPORT_TZ says otherwise). Revenue is
-- sum(quantity * unit_price) over the lines of confirmed orders, in minor units, per currency.
-- The report_* views are the same figures over the whole history.

-- The orders placed in the window.
create function report_orders(p_from timestamptz default null, p_to timestamptz default null)
returns setof orders language sql stable as $$
  select * from orders o
   where (p_from is null or o.placed_at >= p_from)
     and (p_to is null or o.placed_at < p_to)
$$;

-- Per SKU and currency: units ordered over every order, units sold and revenue over confirmed ones.
create function report_sku_sales_between(p_from timestamptz default null,
                                         p_to timestamptz default null)
returns table (sku text, currency text, orders bigint, units_ordered bigint, confirmed_orders bigint,
               units_sold bigint, revenue numeric)
language sql stable as $$
  select l.sku, o.currency::text,
         count(distinct o.id),
         sum(l.quantity)::bigint,
         count(distinct o.id) filter (where o.status = 'confirmed'),
         coalesce(sum(l.quantity) filter (where o.status = 'confirmed'), 0)::bigint,
         coalesce(sum(l.quantity::numeric * l.unit_price) filter (where o.status = 'confirmed'), 0)
    from report_orders(p_from, p_to) o
    join order_lines l on l.order_id = o.id
   group by l.sku, o.currency
   order by l.sku, o.currency
$$;

-- Per day (of placed_at) and currency.
create function report_daily_sales_between(p_from timestamptz default null,
                                           p_to timestamptz default null)
returns table (day date, currency text, orders_placed bigint, orders_confirmed bigint,
               orders_cancelled bigint, units_sold bigint, revenue numeric)
language sql stable as $$
  with per_order as (
    select o.id, o.placed_at::date as day, o.currency::text as currency, o.status,
           coalesce(sum(l.quantity), 0) as units,
           coalesce(sum(l.quantity::numeric * l.unit_price), 0) as amount
      from report_orders(p_from, p_to) o
      left join order_lines l on l.order_id = o.id
     group by o.id, o.placed_at, o.currency, o.status)
  select day, currency,
         count(*),
         count(*) filter (where status = 'confirmed'),
         count(*) filter (where status = 'cancelled'),
         coalesce(sum(units) filter (where status = 'confirmed'), 0)::bigint,
         coalesce(sum(amount) filter (where status = 'confirmed'), 0)
    from per_order
   group by day, currency
   order by day, currency
$$;

-- placed -> reserved -> paid -> confirmed: how many of the window's orders reached each stage
-- (a recorded transition, or a current status at or past the stage), and the share of placed.
create function report_funnel_between(p_from timestamptz default null,
                                      p_to timestamptz default null)
returns table (step int, stage text, orders bigint, pct_of_placed numeric)
language sql stable as $$
  with o as (select * from report_orders(p_from, p_to)),
  stages(step, stage) as (values (1, 'placed'), (2, 'reserved'), (3, 'paid'), (4, 'confirmed')),
  reached as (
    select s.step, s.stage,
           (select count(*) from o
             where s.stage = 'placed'
                or exists (select 1 from order_transitions t
                            where t.order_id = o.id and t.status = s.stage)
                or (case o.status when 'reserved' then 2 when 'paid' then 3
                                  when 'confirmed' then 4 else 0 end) >= s.step) as n
      from stages s)
  select step, stage, n,
         case when first_value(n) over (order by step) > 0
              then round(100.0 * n / first_value(n) over (order by step), 1) end
    from reached
   order by step
$$;

create function report_cancel_reasons_between(p_from timestamptz default null,
                                              p_to timestamptz default null)
returns table (reason text, orders bigint, pct_of_cancelled numeric)
language sql stable as $$
  select cancel_reason, count(*),
         round(100.0 * count(*) / sum(count(*)) over (), 1)
    from report_orders(p_from, p_to)
   where status = 'cancelled'
   group by cancel_reason
   order by count(*) desc, cancel_reason
$$;

-- Saga latency of confirmed orders: the 'confirmed' transition's time minus placed_at, in ms.
create function report_latency_between(p_from timestamptz default null,
                                       p_to timestamptz default null)
returns table (confirmed_orders bigint, p50_ms numeric, p95_ms numeric, p99_ms numeric,
               max_ms numeric, mean_ms numeric)
language sql stable as $$
  with d as (
    select extract(epoch from (t.at - o.placed_at)) * 1000 as ms
      from report_orders(p_from, p_to) o
      join order_transitions t on t.order_id = o.id and t.status = 'confirmed')
  select count(*),
         round((percentile_cont(0.50) within group (order by ms))::numeric, 1),
         round((percentile_cont(0.95) within group (order by ms))::numeric, 1),
         round((percentile_cont(0.99) within group (order by ms))::numeric, 1),
         round(max(ms)::numeric, 1),
         round(avg(ms)::numeric, 1)
    from d
$$;

create function report_top_skus_between(p_from timestamptz default null,
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
create function report_stockouts_between(p_from timestamptz default null,
                                         p_to timestamptz default null)
returns table (sku text, available bigint, reserved bigint, sold bigint, out_of_stock_now boolean,
               oos_cancellations bigint)
language sql stable as $$
  with c as (
    select l.sku, count(distinct o.id) as n
      from report_orders(p_from, p_to) o
      join order_lines l on l.order_id = o.id
     where o.status = 'cancelled' and o.cancel_reason = 'out_of_stock'
     group by l.sku)
  select coalesce(i.sku, c.sku), i.available, i.reserved, i.sold,
         coalesce(i.available = 0, false), coalesce(c.n, 0)
    from inventory i
    full join c on c.sku = i.sku
   where i.available = 0 or c.n > 0
   order by coalesce(c.n, 0) desc, coalesce(i.sku, c.sku)
$$;

create view report_sku_sales as select * from report_sku_sales_between();
create view report_daily_sales as select * from report_daily_sales_between();
create view report_funnel as select * from report_funnel_between();
create view report_cancel_reasons as select * from report_cancel_reasons_between();
create view report_latency as select * from report_latency_between();
create view report_top_skus as select * from report_top_skus_between();
create view report_stockouts as select * from report_stockouts_between();
