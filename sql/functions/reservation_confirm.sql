-- reservation_confirm: turns paid orders' held stock into sales and confirms the orders, for the
-- reservation worker's batch of payment.succeeded messages. The caller holds the inventory row
-- locks (reservation_place's p_paid or saga_lock_skus). Returns per element of p_ids (k from 1)
-- the state the order was in ('paid' for the first occurrence of each order it confirmed; any
-- other state means nothing was done; null: no such order) and what order.confirmed carries.
-- Lookups of a batch's rows say `key = any(array(...))` besides the join: the planner cannot see
-- how few rows an array argument holds and would otherwise scan the whole table.
create or replace function reservation_confirm(p_ids uuid[])
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
