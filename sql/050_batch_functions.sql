-- Set-based saga steps: a worker hands a whole batch of messages to one function call instead of
-- a few statements per message, so a batch costs a handful of round trips and holds its stock
-- locks for milliseconds (BENCHMARKS.md). Each function does exactly what the per-message steps
-- did; called with one order it is the per-message step (the worker's fallback when a batch
-- fails). Security invoker: each program's role (040_roles.sql) needs the privileges anyway.
-- Lookups of a batch's rows say `key = any(array(...))` besides the join: the planner cannot see
-- how few rows a JSON argument holds and would otherwise scan the whole table.

-- reservation: records placed orders and reserves each one's stock, all lines or none, in batch
-- order. p_orders: [{"id": order id, "tp": traceparent, "d": order.placed data}, ...]. The
-- caller holds the batch's inventory row locks (saga_lock_skus). Returns per element (n from 1):
-- 'reserved' (with the reservations' expiry, RFC 3339), 'out_of_stock' (order cancelled), or
-- 'duplicate' (recorded before, or earlier in this batch: nothing done).
create function reservation_place(p_orders json, p_ttl int)
returns table (n int, outcome text, expires_at text)
language plpgsql as $$
declare
  v_exp timestamptz := now() + make_interval(secs => p_ttl);
  v_fresh uuid[];
  v_done int[] := '{}';
  v_seen uuid[] := '{}';
  v_reserved uuid[] := '{}';
  v_cancelled uuid[] := '{}';
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
           x->'d'->'payment'->>'token', coalesce((x->'d'->'notify')::jsonb, '{}'), x->>'tp',
           (x->'d'->>'placed_at')::timestamptz, now() + interval '30 seconds'
    from json_array_elements(p_orders) with ordinality as t(x, k) order by k
    on conflict (id) do nothing returning id)
  select coalesce(array_agg(id), '{}') into v_fresh from ins;

  for o in select (x->>'id')::uuid as id, x->'d'->'lines' as lines, k::int as k
           from json_array_elements(p_orders) with ordinality as t(x, k) order by k loop
    n := o.k;
    if not (o.id = any(v_fresh)) or o.id = any(v_seen) then
      outcome := 'duplicate';
      expires_at := null;
      return next;
      continue;
    end if;
    v_seen := v_seen || o.id;
    v_done := v_done || o.k;
    -- All lines or none: the rows are locked, so checking and then taking cannot race.
    with want as (select sku, sum(quantity)::bigint as q
                  from json_to_recordset(o.lines) as (sku text, quantity int) group by sku),
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
      v_reserved := v_reserved || o.id;
      outcome := 'reserved';
      expires_at := to_char(v_exp at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
    else
      v_cancelled := v_cancelled || o.id;
      outcome := 'out_of_stock';
      expires_at := null;
    end if;
    return next;
  end loop;

  insert into order_lines(order_id, line_no, sku, quantity, unit_price)
  select (x->>'id')::uuid, l.ord, l.sku, l.quantity, l.unit_price
  from json_array_elements(p_orders) with ordinality as t(x, k),
       rows from (json_to_recordset(x->'d'->'lines') as (sku text, quantity int, unit_price bigint))
         with ordinality as l(sku, quantity, unit_price, ord)
  where k = any(v_done);
  insert into order_transitions(order_id, status, at)
  select (x->>'id')::uuid, 'pending', (x->'d'->>'placed_at')::timestamptz
  from json_array_elements(p_orders) with ordinality as t(x, k) where k = any(v_done);
  -- The moves out of pending (the transition trigger checks them like any other).
  update orders set status = 'reserved', state_deadline = v_exp where id = any(v_reserved);
  update orders set status = 'cancelled', cancel_reason = 'out_of_stock', state_deadline = null
  where id = any(v_cancelled);
  insert into order_transitions(order_id, status, reason)
  select id, 'reserved', null from unnest(v_reserved) id
  union all
  select id, 'cancelled', 'out_of_stock' from unnest(v_cancelled) id;
end $$;

-- reservation: turns paid orders' held stock into sales and confirms them. The caller holds the
-- inventory row locks. Returns per element of p_ids (k from 1) the state the order was in
-- ('paid' for the first occurrence of each order it confirmed; any other state means nothing
-- was done; null: no such order) and what order.confirmed carries.
create function reservation_confirm(p_ids uuid[])
returns table (k int, prior text, total bigint, currency text, customer_id text, notify text)
language plpgsql as $$
declare
  v_paid uuid[];
begin
  select coalesce(array_agg(s.id), '{}') into v_paid
  from (select o.id from orders o where o.id = any(p_ids) and o.status = 'paid'
        order by o.id for update) s;
  with r as (update reservations set status = 'sold'
             where order_id = any(v_paid) and status = 'held' returning sku, quantity),
  s as (select sku, sum(quantity) as q from r group by sku)
  update inventory i set sold = i.sold + s.q, reserved = i.reserved - s.q, updated_at = now()
  from s where i.sku = s.sku and i.sku = any(array(select sku from s));
  update orders set status = 'confirmed', state_deadline = null where id = any(v_paid);
  insert into order_transitions(order_id, status, reason)
  select id, 'confirmed', null from unnest(v_paid) id on conflict do nothing;
  return query
  select x.k::int,
         case when x.id = any(v_paid) and row_number() over (partition by x.id order by x.k) = 1
              then 'paid' when x.id = any(v_paid) then 'confirmed' else o.status end,
         o.total, o.currency::text, o.customer_id, o.notify::text
  from unnest(p_ids) with ordinality as x(id, k)
  left join orders o on o.id = x.id and o.id = any(p_ids)
  order by x.k;
end $$;

-- payment: records the provider's answers for a batch of charged orders. p_outcomes:
-- [{"id": order id, "result": "ok" | "declined", "ref": provider ref, "error": decline reason}],
-- at most one element per order. A charged order still reserved becomes paid; one cancelled
-- meanwhile gets its payment marked for refund. Returns per element (k from 1) the event to emit
-- (payment.succeeded, payment.failed or payment.refund_requested; null: no such order) and the
-- order's state before.
create function payment_settle(p_outcomes json)
returns table (k int, event text, prior text)
language plpgsql as $$
begin
  return query
  with x as (select t.k::int as k, (t.r->>'id')::uuid as id, t.r->>'result' as result,
                    t.r->>'ref' as ref, t.r->>'error' as err
             from json_array_elements(p_outcomes) with ordinality as t(r, k)),
  o as (select ord.id, ord.status from orders ord
        where ord.id = any(array(select x.id from x where x.result = 'ok'))
        order by ord.id for update),
  pay as (update payments p set
            status = case when x.result = 'declined' then 'declined'
                          when o.status = 'reserved' then 'succeeded' else 'refund_pending' end,
            provider_ref = case when x.result = 'ok' then x.ref else p.provider_ref end,
            last_error = case when x.result = 'declined' then x.err else p.last_error end,
            updated_at = now()
          from x left join o on o.id = x.id
          where p.order_id = x.id and p.order_id = any(array(select x.id from x))
            and (p.status = 'pending' or (x.result = 'ok' and o.status is distinct from 'reserved'))
          returning p.order_id),
  mv as (update orders ord set status = 'paid', state_deadline = now() + interval '30 seconds'
         from o where ord.id = o.id and o.status = 'reserved' returning ord.id),
  tr as (insert into order_transitions(order_id, status, reason)
         select mv.id, 'paid', null from mv on conflict do nothing)
  select x.k,
         case when x.result = 'declined' then 'payment.failed'
              when o.status = 'reserved' then 'payment.succeeded'
              when o.status is null then null else 'payment.refund_requested' end,
         o.status
  from x left join o on o.id = x.id order by x.k;
end $$;
