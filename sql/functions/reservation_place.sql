-- reservation_place: records a batch of placed orders and reserves each one's stock, all lines
-- or none, in batch order; the reservation worker calls it once per batch of order.placed
-- messages, and with one order when it retries a failed batch message by message.
--   p_orders  [{"id": order id, "tp": traceparent, "d": order.placed data}, ...]
--   p_ttl     the reservations' lifetime, in seconds
--   p_paid    the orders the caller confirms in the same transaction (reservation_confirm): their
--             held SKUs are locked with the batch's, so a transaction takes all its inventory
--             locks in one statement, in SKU order, and two transactions never deadlock
-- Returns per element of p_orders (n from 1) one outcome:
--   reserved      the order is recorded and holds its stock; expires_at (RFC 3339) says until when
--   out_of_stock  the order is recorded and cancelled
--   duplicate     recorded before, or earlier in this batch: nothing done
--   invalid       `reason` says why; nothing of the order is written (the worker dead-letters the
--                 message as invalid_order)
-- Security invoker, as every function here: the caller's role (sql/040_roles.sql) holds the
-- privileges its statements need.
--
-- Three functions: reservation_place checks each order with reservation_order_problem and hands
-- the valid ones to reservation_place_checked, which records and reserves them.

-- create or replace cannot change a function's argument types or its result. A database whose
-- schema predates this file's signature holds reservation_place(json, int), or a
-- reservation_place(json, int, uuid[]) without `reason`; either is dropped so that the
-- definition below is the only one and a call never matches two.
drop function if exists reservation_place(json, int);
do $$
begin
  if pg_get_function_result(to_regprocedure('reservation_place(json, int, uuid[])'))
     <> 'TABLE(n integer, outcome text, expires_at text, reason text)' then
    drop function reservation_place(json, int, uuid[]);
  end if;
end $$;

create or replace function reservation_place(p_orders json, p_ttl int,
                                             p_paid uuid[] default '{}')
returns table (n int, outcome text, expires_at text, reason text)
language plpgsql as $$
declare
  v_orders jsonb := p_orders::jsonb;
  v_problems text[];    -- per element of p_orders: why it is refused, or null
  v_totals numeric[];   -- per element: the total of its lines
  v_valid jsonb;        -- the orders that pass, each with its recomputed total
  v_pos int[];          -- v_valid's element i is p_orders' element v_pos[i]
  v_outcome text[] := '{}';
  v_expires text[] := '{}';
  r record;
begin
  select coalesce(array_agg(c.problem order by t.k), '{}'),
         coalesce(array_agg(c.total order by t.k), '{}')
  into v_problems, v_totals
  from jsonb_array_elements(v_orders) with ordinality as t(x, k),
       lateral reservation_order_problem(t.x->'d') c;

  select coalesce(jsonb_agg(jsonb_set(t.x, '{d,total}', to_jsonb(v_totals[t.k]::bigint))
                            order by t.k), '[]'),
         coalesce(array_agg(t.k::int order by t.k), '{}')
  into v_valid, v_pos
  from jsonb_array_elements(v_orders) with ordinality as t(x, k)
  where v_problems[t.k] is null;

  if jsonb_array_length(v_valid) > 0 then
    for r in select * from reservation_place_checked(v_valid::json, p_ttl, p_paid) loop
      v_outcome[v_pos[r.n]] := r.outcome;
      v_expires[v_pos[r.n]] := r.expires_at;
    end loop;
  end if;

  return query
  select k, coalesce(v_outcome[k], 'invalid'), v_expires[k], v_problems[k]
  from generate_series(1, jsonb_array_length(v_orders)) k
  order by k;
end $$;

-- Why an order (order.placed's data) cannot be recorded, or null when it can; and its total
-- recomputed from its lines. An order is refused when:
--   - its lines are not an array of 1..100 objects;
--   - a line's sku is not a string of 1..64 characters;
--   - a line's quantity is not an integer in 1..1000, or its unit_price one in 1..100000000
--     (JSON numbers written with a fraction or an exponent, even 2.0, are not integers);
--   - its total is not an integer, or differs from the sum of quantity * unit_price, or that sum
--     is past 10^15 (the schemas' bound; a bigint holds 9.2 * 10^18).
-- The bounds are those of schemas/order.request.json and schemas/order.placed.json.
-- The payment worker charges the recorded total, so the total is the lines' whatever calls the
-- function: an event crafted on the broker, or an intake bug, cannot record another. The sum is
-- taken as numeric, which no event can overflow, and then range-checked. The checks run before
-- any inventory lock is taken, so they add to a batch's latency, not to its lock hold time. They
-- are a plpgsql loop: a set-based form is no faster, and the planner, which estimates 100 rows
-- per JSON array, hands it to the JIT, whose compiling then costs more than the checks.
create or replace function reservation_order_problem(p_data jsonb,
                                                     out problem text, out total numeric)
language plpgsql immutable as $$
declare
  v_lines jsonb := p_data->'lines';
  v_line jsonb;
  v_i int := 0;
  v_q numeric;
  v_p numeric;
begin
  total := 0;
  if jsonb_typeof(v_lines) is distinct from 'array' or jsonb_array_length(v_lines) not between 1 and 100 then
    problem := 'lines: must be an array of 1 to 100 lines';
    return;
  end if;
  for v_line in select value from jsonb_array_elements(v_lines) loop
    v_i := v_i + 1;
    if jsonb_typeof(v_line) is distinct from 'object' then
      problem := format('lines[%s]: must be an object', v_i - 1);
      return;
    end if;
    if jsonb_typeof(v_line->'sku') is distinct from 'string'
       or char_length(v_line->>'sku') not between 1 and 64 then
      problem := format('lines[%s].sku: must be a string of 1 to 64 characters', v_i - 1);
      return;
    end if;
    if jsonb_typeof(v_line->'quantity') is distinct from 'number'
       or (v_line->>'quantity') !~ '^-?[0-9]{1,20}$' then
      problem := format('lines[%s].quantity: must be an integer', v_i - 1);
      return;
    end if;
    v_q := (v_line->>'quantity')::numeric;
    if v_q not between 1 and 1000 then
      problem := format('lines[%s].quantity: %s is not in 1..1000', v_i - 1, v_q);
      return;
    end if;
    if jsonb_typeof(v_line->'unit_price') is distinct from 'number'
       or (v_line->>'unit_price') !~ '^-?[0-9]{1,20}$' then
      problem := format('lines[%s].unit_price: must be an integer', v_i - 1);
      return;
    end if;
    v_p := (v_line->>'unit_price')::numeric;
    if v_p not between 1 and 100000000 then
      problem := format('lines[%s].unit_price: %s is not in 1..100000000', v_i - 1, v_p);
      return;
    end if;
    total := total + v_q * v_p;
  end loop;
  if total > 1000000000000000 then
    problem := format('total: the lines add up to %s, past 10^15', total);
    return;
  end if;
  if jsonb_typeof(p_data->'total') is distinct from 'number'
     or (p_data->>'total') !~ '^-?[0-9]{1,40}$' then
    problem := 'total: must be an integer';
    return;
  end if;
  if (p_data->>'total')::numeric <> total then
    problem := format('total: %s does not match its lines, which add up to %s',
                      left(p_data->>'total', 40), total);
    return;
  end if;
end $$;

-- Records checked orders and reserves their stock; call reservation_place, which checks them.
-- It takes the inventory row locks itself, after recording the batch's orders, their lines and
-- their pending transitions: another reservation process waits only for the reserving and the
-- commit, and records its own orders meanwhile.
-- When the stock on hand covers every fresh order of the batch together, all of them are
-- reserved with one inventory update and one reservations insert: the orders' order does not
-- matter then (each gets all its lines), so the outcome is the one the per-order loop gives. The
-- loop decides batches the stock cannot cover whole (a SKU running out), where batch order
-- decides who gets the last units; an order the stock cannot cover even alone skips it.
-- Lookups of a batch's rows say `key = any(array(...))` besides the join: the planner cannot see
-- how few rows a JSON argument holds and would otherwise scan the whole table.
create or replace function reservation_place_checked(p_orders json, p_ttl int,
                                                     p_paid uuid[] default '{}')
returns table (n int, outcome text, expires_at text)
language plpgsql as $$
declare
  v_orders jsonb := p_orders::jsonb;  -- parsed once: each json_array_elements(json) parses again
  v_hopeless int[];      -- positions of fresh orders the stock on hand cannot cover
  v_exp timestamptz := now() + make_interval(secs => p_ttl);
  v_exp_text text := to_char(v_exp at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
  v_fresh uuid[];
  v_done int[];          -- positions of the first occurrence of each newly recorded order
  v_reserved_k int[] := '{}';
  v_reserved uuid[] := '{}';
  v_cancelled uuid[] := '{}';
  v_fits boolean;
  v_ok boolean;
  o record;
begin
  -- An order that exists already is a duplicate; a concurrent insert of the same id makes this
  -- wait for its commit and then see the conflict.
  with ins as (
    insert into orders(id, client_id, idempotency_key, customer_id, currency, total,
                       payment_token, payment_method, notify, traceparent, placed_at,
                       state_deadline)
    select (x->>'id')::uuid, x->'d'->>'client_id', x->'d'->>'idempotency_key',
           x->'d'->>'customer_id', x->'d'->>'currency', (x->'d'->>'total')::bigint,
           x->'d'->'payment'->>'token', coalesce(x->'d'->>'payment_method', 'card'),
           coalesce(x->'d'->'notify', '{}'), x->>'tp',
           (x->'d'->>'placed_at')::timestamptz, now() + interval '30 seconds'
    from jsonb_array_elements(v_orders) with ordinality as t(x, k) order by k
    on conflict (id) do nothing returning id)
  select coalesce(array_agg(id), '{}') into v_fresh from ins;

  select coalesce(array_agg(f.k order by f.k), '{}') into v_done
  from (select distinct on (id) k
        from (select (x->>'id')::uuid as id, k::int as k
              from jsonb_array_elements(v_orders) with ordinality as t(x, k)) s
        where id = any(v_fresh) order by id, k) f;

  insert into order_lines(order_id, line_no, sku, quantity, unit_price)
  select (x->>'id')::uuid, l.ord, l.sku, l.quantity, l.unit_price
  from jsonb_array_elements(v_orders) with ordinality as t(x, k),
       rows from (jsonb_to_recordset(x->'d'->'lines') as (sku text, quantity int, unit_price bigint))
         with ordinality as l(sku, quantity, unit_price, ord)
  where k = any(v_done);
  insert into order_transitions(order_id, status, at)
  select (x->>'id')::uuid, 'pending', (x->'d'->>'placed_at')::timestamptz
  from jsonb_array_elements(v_orders) with ordinality as t(x, k) where k = any(v_done);

  -- Only now the inventory rows: the fresh orders' SKUs and those the caller's paid orders hold,
  -- in one statement in SKU order, so that two batches never deadlock and another process's
  -- batch waits only for the reserving below, not for the recording above.
  perform 1 from inventory i
  where i.sku in (select l.sku
                  from jsonb_array_elements(v_orders) with ordinality as t(x, k),
                       jsonb_to_recordset(x->'d'->'lines') as l(sku text, quantity int)
                  where k = any(v_done)
                  union
                  select r.sku from reservations r
                  where r.order_id = any(p_paid) and r.status = 'held')
  order by i.sku for update;

  -- The batch's demand per SKU against what is available (a SKU with no row does not fit).
  with lines as (select l.sku, l.quantity
                 from jsonb_array_elements(v_orders) with ordinality as t(x, k),
                      jsonb_to_recordset(x->'d'->'lines') as l(sku text, quantity int)
                 where k = any(v_done)),
  want as (select sku, sum(quantity)::bigint as q from lines group by sku)
  select coalesce(bool_and(i.available is not null and i.available >= w.q), true) into v_fits
  from want w left join inventory i on i.sku = w.sku and i.sku = any(array(select sku from want));

  if v_fits then
    with lines as (select (x->>'id')::uuid as id, l.sku, l.quantity
                   from jsonb_array_elements(v_orders) with ordinality as t(x, k),
                        jsonb_to_recordset(x->'d'->'lines') as l(sku text, quantity int)
                   where k = any(v_done)),
    want as (select sku, sum(quantity)::bigint as q from lines group by sku),
    upd as (update inventory i set available = i.available - w.q, reserved = i.reserved + w.q,
              updated_at = now()
            from want w
            where i.sku = w.sku and i.sku = any(array(select sku from want)))
    insert into reservations(order_id, sku, quantity, expires_at)
    select id, sku, sum(quantity), v_exp from lines group by id, sku;
    v_reserved_k := v_done;
    select coalesce(array_agg((x->>'id')::uuid), '{}') into v_reserved
    from jsonb_array_elements(v_orders) with ordinality as t(x, k) where k = any(v_done);
  else
    -- Stock only goes down in the loop below, so an order that one SKU cannot cover now (a sold
    -- out flash sale: every order after the last unit) is refused without its turn in it.
    select coalesce(array_agg(distinct d.k), '{}') into v_hopeless
    from (select t.k::int as k, l.sku, sum(l.quantity)::bigint as q
          from jsonb_array_elements(v_orders) with ordinality as t(x, k),
               jsonb_to_recordset(x->'d'->'lines') as l(sku text, quantity int)
          where t.k = any(v_done) group by t.k, l.sku) d
    left join inventory i on i.sku = d.sku
    where i.available is null or i.available < d.q;
    select coalesce(array_agg((x->>'id')::uuid), '{}') into v_cancelled
    from jsonb_array_elements(v_orders) with ordinality as t(x, k) where k = any(v_hopeless);
    for o in select (x->>'id')::uuid as id, x->'d'->'lines' as lines, k::int as k
             from jsonb_array_elements(v_orders) with ordinality as t(x, k)
             where k = any(v_done) and k <> all(v_hopeless) order by k loop
      -- All lines or none.
      with want as (select sku, sum(quantity)::bigint as q
                    from jsonb_to_recordset(o.lines) as (sku text, quantity int) group by sku),
      ok as (select count(*) = (select count(*) from want) as all_lines
             from want w join inventory i on i.sku = w.sku and i.available >= w.q
             where i.sku = any(array(select sku from want))),
      upd as (update inventory i set available = i.available - w.q, reserved = i.reserved + w.q,
                updated_at = now()
              from want w, ok
              where ok.all_lines and i.sku = w.sku and i.sku = any(array(select sku from want))
              returning i.sku, w.q),
      res as (insert into reservations(order_id, sku, quantity, expires_at)
              select o.id, sku, q, v_exp from upd)
      select all_lines into v_ok from ok;
      if v_ok then
        v_reserved_k := v_reserved_k || o.k;
        v_reserved := v_reserved || o.id;
      else
        v_cancelled := v_cancelled || o.id;
      end if;
    end loop;
  end if;

  -- The moves out of pending (the transition trigger checks them like any other).
  update orders set status = 'reserved', state_deadline = v_exp where id = any(v_reserved);
  update orders set status = 'cancelled', cancel_reason = 'out_of_stock', state_deadline = null
  where id = any(v_cancelled);
  insert into order_transitions(order_id, status, reason)
  select id, 'reserved', null from unnest(v_reserved) id
  union all
  select id, 'cancelled', 'out_of_stock' from unnest(v_cancelled) id;

  return query
  select k::int,
         case when k = any(v_reserved_k) then 'reserved'
              when k = any(v_done) then 'out_of_stock' else 'duplicate' end,
         case when k = any(v_reserved_k) then v_exp_text end
  from generate_series(1, jsonb_array_length(v_orders)) k
  order by k;
end $$;

comment on function reservation_place_checked(json, int, uuid[]) is
  'records and reserves orders reservation_place has checked: call reservation_place';
