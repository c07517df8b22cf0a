-- reservation_place, same contract as in 060_reservation_place_whole_batch.sql, but it takes the
-- inventory row locks itself, after recording the batch's orders, their lines and their pending
-- transitions. Before, the caller locked every SKU of the batch first, so a second reservation
-- process waited for this whole function (mostly the recording) and then for the commit; now it
-- waits only for the reserving and the commit, and records its own orders meanwhile (flash sale
-- and per-hop figures in BENCHMARKS.md). p_paid: the orders the caller will confirm in the same
-- transaction (reservation_confirm); their held SKUs are locked in the same statement, so that a
-- transaction takes all its inventory locks at once, in SKU order, and two never deadlock.
-- Also: the batch's JSON is parsed once (jsonb) rather than once per statement, and when the
-- batch does not fit, orders the stock cannot cover even alone skip the order-by-order loop.
drop function reservation_place(json, int);
create function reservation_place(p_orders json, p_ttl int, p_paid uuid[] default '{}')
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
                       payment_token, notify, traceparent, placed_at, state_deadline)
    select (x->>'id')::uuid, x->'d'->>'client_id', x->'d'->>'idempotency_key',
           x->'d'->>'customer_id', x->'d'->>'currency', (x->'d'->>'total')::bigint,
           x->'d'->'payment'->>'token', coalesce(x->'d'->'notify', '{}'), x->>'tp',
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
