-- payment_settle: records the provider's answers for the payment worker's batch of charged
-- orders, and the final answers a notification or a query brings for a pending one.
-- p_outcomes: [{"id": order id, "result": "ok" | "declined" | "pending", "ref": provider ref,
-- "error": decline reason, "pending_ms": how long a pending payment may stay pending,
-- "query_ms": when to query it first}], at most one element per order. A charged order still
-- reserved becomes paid; one cancelled meanwhile gets its payment marked for refund. A pending
-- answer leaves the payment pending, stamps when the provider said so (the first time), schedules
-- its first query and moves the order's deadline to pending_ms after that stamp.
-- Returns per element (k from 1) the event to emit (payment.succeeded, payment.failed or
-- payment.refund_requested; 'pending' or 'settled' when there is none to emit: the payment
-- waits, or a notification or query settled it first; null: no such order) and the order's
-- state before.
-- Lookups of a batch's rows say `key = any(array(...))` besides the join: the planner cannot see
-- how few rows a JSON argument holds and would otherwise scan the whole table.
create or replace function payment_settle(p_outcomes json)
returns table (k int, event text, prior text)
language plpgsql as $$
begin
  return query
  with x as (select t.k::int as k, (t.r->>'id')::uuid as id, t.r->>'result' as result,
                    t.r->>'ref' as ref, t.r->>'error' as err,
                    coalesce((t.r->>'pending_ms')::bigint, 900000) as pending_ms,
                    coalesce((t.r->>'query_ms')::bigint, 10000) as query_ms
             from json_array_elements(p_outcomes) with ordinality as t(r, k)),
  o as (select ord.id, ord.status from orders ord
        where ord.id = any(array(select x.id from x where x.result in ('ok', 'pending')))
        order by ord.id for update),
  before as (select p.order_id, p.provider_pending_at from payments p
             where p.order_id = any(array(select x.id from x where x.result = 'pending'))),
  pay as (update payments p set
            status = case when x.result = 'declined' then 'declined'
                          when x.result = 'pending' then p.status
                          when o.status = 'reserved' then 'succeeded' else 'refund_pending' end,
            provider_ref = case when x.result in ('ok', 'pending') and x.ref <> ''
                                then x.ref else p.provider_ref end,
            last_error = case when x.result = 'declined' then x.err else p.last_error end,
            provider_pending_at = case when x.result = 'pending'
                                       then coalesce(p.provider_pending_at, now())
                                       else p.provider_pending_at end,
            next_query_at = case when x.result = 'pending'
                                 then now() + make_interval(secs => x.query_ms / 1000.0) end,
            updated_at = now()
          from x left join o on o.id = x.id
          where p.order_id = x.id and p.order_id = any(array(select x.id from x))
            and (p.status = 'pending'
                 or (x.result = 'ok' and o.status is distinct from 'reserved'
                     and o.status not in ('paid', 'confirmed')))
          returning p.order_id),
  mv as (update orders ord set status = 'paid', state_deadline = now() + interval '30 seconds'
         from o join x on x.id = o.id
         where ord.id = o.id and o.status = 'reserved' and x.result = 'ok' returning ord.id),
  wait as (update orders ord set state_deadline =
             coalesce(b.provider_pending_at, now()) + make_interval(secs => x.pending_ms / 1000.0)
           from o join x on x.id = o.id left join before b on b.order_id = o.id
           where ord.id = o.id and o.status = 'reserved' and x.result = 'pending'
           returning ord.id),
  tr as (insert into order_transitions(order_id, status, reason)
         select mv.id, 'paid', null from mv on conflict do nothing)
  select x.k,
         case when x.result = 'declined' then 'payment.failed'
              when o.status is null then null
              when o.status in ('paid', 'confirmed') then 'settled'
              when o.status = 'reserved' and x.result = 'pending' then 'pending'
              when o.status = 'reserved' then 'payment.succeeded'
              else 'payment.refund_requested' end,
         o.status
  from x left join o on o.id = x.id order by x.k;
end $$;
