-- payment_settle: records the provider's answers for the payment worker's batch of charged
-- orders. p_outcomes: [{"id": order id, "result": "ok" | "declined", "ref": provider ref,
-- "error": decline reason}], at most one element per order. A charged order still reserved
-- becomes paid; one cancelled meanwhile gets its payment marked for refund. Returns per element
-- (k from 1) the event to emit (payment.succeeded, payment.failed or payment.refund_requested;
-- null: no such order) and the order's state before.
-- Lookups of a batch's rows say `key = any(array(...))` besides the join: the planner cannot see
-- how few rows a JSON argument holds and would otherwise scan the whole table.
create or replace function payment_settle(p_outcomes json)
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
