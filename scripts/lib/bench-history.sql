-- A generated order history for `scripts/bench history` (scripts/lib/bench-history): orders
-- :lo .. :hi of :orders, spread evenly over the :days calendar days (UTC) before today, with
-- their lines, transitions and payments, as the pipeline would have left them. Every figure is a
-- hash of the order's number, so a history is the same whenever it is generated. Run by the
-- superuser with session_replication_role = replica: the rows are consistent by construction,
-- and the foreign-key triggers would double the time.

-- A uniform number in [0, 1) for order n and stream k.
create or replace function pg_temp.u(n bigint, k int) returns float8
language sql immutable as $$ select (hashint8extended(n, k) & 2147483647)::float8 / 2147483648 $$;

create temp table gen on commit drop as
select n, md5('history-' || n)::uuid as id,
       date_trunc('day', now() at time zone 'UTC') at time zone 'UTC'
         - make_interval(days => :days)
         + make_interval(secs => ((n - 1) + pg_temp.u(n, 1)) * :days * 86400.0 / :orders) as placed_at,
       case when pg_temp.u(n, 8) < 0.80 then 'EUR' when pg_temp.u(n, 8) < 0.95 then 'USD' else 'GBP' end
         as currency,
       1 + floor(pg_temp.u(n, 7) * 3)::int as nlines,
       case when n > :orders - 200 then (array['pending', 'reserved', 'paid'])[1 + n % 3]
            when pg_temp.u(n, 2) < 0.03 then 'out_of_stock'
            when pg_temp.u(n, 2) < 0.07 then 'payment_declined'
            when pg_temp.u(n, 2) < 0.09 then 'reservation_expired'
            when pg_temp.u(n, 2) < 0.11 then 'customer_cancelled'
            else 'confirmed' end as fate,
       -- saga latency: log-normal, median 150 ms
       make_interval(secs => 0.150 * exp(0.6 * sqrt(3) * (pg_temp.u(n, 3) + pg_temp.u(n, 4)
                                                         + pg_temp.u(n, 5) + pg_temp.u(n, 6) - 2)))
         as latency
  from generate_series(:lo::bigint, :hi::bigint) n;

analyze gen;

create temp table gen_lines on commit drop as
select g.id, j as line_no, s, 'SKU-' || lpad(s::text, 4, '0') as sku,
       1 + floor(pg_temp.u(g.n, 20 + j) * 3)::int as quantity,
       199 + (hashint4(s) & 2147483647) % 20000 as unit_price
  from gen g, generate_series(1, g.nlines) j,
       lateral (select floor(500 * pg_temp.u(g.n, 10 + j) ^ 2)::int as s) k;

create temp table gen_totals on commit drop as
select id, sum(quantity * unit_price) as total from gen_lines group by id;
analyze gen_lines, gen_totals;

insert into order_lines (order_id, line_no, sku, quantity, unit_price)
select id, line_no, sku, quantity, unit_price from gen_lines;

insert into orders (id, client_id, customer_id, currency, total, payment_token, status,
                    cancel_reason, placed_at, recorded_at, state_entered_at)
select g.id, 'bench', 'c-' || (g.n % 100000), g.currency,
       t.total,
       'tok_history',
       case when g.fate in ('pending', 'reserved', 'paid', 'confirmed') then g.fate else 'cancelled' end,
       case when g.fate in ('pending', 'reserved', 'paid', 'confirmed') then null else g.fate end,
       g.placed_at, g.placed_at + interval '3 ms',
       g.placed_at + case g.fate when 'pending' then interval '3 ms'
                                 when 'reserved' then 0.15 * g.latency
                                 when 'paid' then 0.7 * g.latency else g.latency end
  from gen g
  join gen_totals t on t.id = g.id
 order by g.n;

insert into order_transitions (order_id, status, reason, at)
select g.id, t.status, case when t.status = 'cancelled' then g.fate end, g.placed_at + t.part * g.latency
  from gen g,
       lateral (values ('pending', 0.0), ('reserved', 0.15), ('paid', 0.7), ('confirmed', 1.0),
                       ('cancelled', 1.0)) t(status, part)
 where t.status = 'pending'
    or (t.status = 'reserved' and g.fate not in ('pending', 'out_of_stock'))
    or (t.status = 'paid' and g.fate in ('paid', 'confirmed'))
    or (t.status = 'confirmed' and g.fate = 'confirmed')
    or (t.status = 'cancelled' and g.fate in ('out_of_stock', 'payment_declined',
                                              'reservation_expired', 'customer_cancelled'));

insert into payments (order_id, amount, currency, status, charge_key, attempts, created_at, updated_at)
select g.id, t.total, g.currency, case when g.fate = 'payment_declined' then 'declined' else 'succeeded' end,
       'charge-' || g.id, 1, g.placed_at + 0.2 * g.latency, g.placed_at + 0.7 * g.latency
  from gen g join gen_totals t on t.id = g.id
 where g.fate in ('paid', 'confirmed', 'payment_declined');
