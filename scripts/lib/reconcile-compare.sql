-- The comparison of scripts/reconcile, in one transaction: reads the checked settlement lines
-- (scripts/lib/settlement-lines.pl's COPY rows) on stdin, records the run and every difference
-- in reconciliation_runs / reconciliation_items, records refunds seen there on our payment rows
-- when :fix is 1, and prints the run's id. The refunds owed are items with action refund_owed,
-- which scripts/reconcile then issues. psql variables: date, channel, file, sha, fix.
\set ON_ERROR_STOP 1
begin;
create temp table settlement (kind text, line_no int, charge_key text, provider_ref text,
  amount bigint, currency text, status text, settled_at timestamptz, reason text) on commit drop;
\copy settlement from pstdin

insert into reconciliation_runs (channel, settlement_date, settlement_file, settlement_sha256, fix,
                                 lines, rejected)
select :'channel', :'date', :'file', :'sha', :fix = 1, count(*), count(*) filter (where kind = 'bad')
  from settlement
returning id as run \gset

-- The provider's side, per charge key: what it charged (null: no charge line) and refunded.
create temp table theirs on commit drop as
select charge_key, min(line_no) as line_no,
       (sum(amount) filter (where status = 'succeeded'))::bigint as charged,
       coalesce(sum(amount) filter (where status = 'refunded'), 0)::bigint as refunded,
       string_agg(distinct currency, ',' order by currency) as currencies
  from settlement where kind = 'row' group by charge_key;

-- Ours: the channel's payments created that UTC day, and any whose key is in the file.
create temp table ours on commit drop as
select p.charge_key, p.order_id, p.amount, p.currency::text as currency, p.status as payment_status,
       p.refunded_amount, o.status as order_status,
       p.created_at >= (:'date'::date)::timestamp at time zone 'utc' and
       p.created_at < (:'date'::date + 1)::timestamp at time zone 'utc' as of_the_day
  from payments p join orders o on o.id = p.order_id
 where p.channel = :'channel'
   and ((p.created_at >= (:'date'::date)::timestamp at time zone 'utc' and
         p.created_at < (:'date'::date + 1)::timestamp at time zone 'utc')
        or p.charge_key in (select charge_key from theirs));

create temp table found (kind text, charge_key text, line_no int, order_id uuid,
  order_status text, payment_status text, our_amount bigint, their_amount bigint,
  their_refunded bigint, our_currency text, their_currency text, action text not null default 'none',
  refund_amount bigint, resolved boolean not null default false, detail text) on commit drop;

insert into found (kind, line_no, detail)
select 'malformed_line', line_no, reason from settlement where kind = 'bad';

-- Both sides of a key, where both have it.
create temp view both_sides as
select o.*, t.line_no, t.charged, t.refunded, t.currencies
  from ours o join theirs t using (charge_key);

insert into found (kind, charge_key, order_id, order_status, payment_status, our_amount,
                   our_currency, detail)
select 'missing_at_provider', o.charge_key, o.order_id, o.order_status, o.payment_status, o.amount,
       o.currency, 'charged here on the day; the file has no charge for it'
  from ours o left join theirs t using (charge_key)
 where o.of_the_day and o.payment_status in ('succeeded', 'refund_pending', 'refunded')
   and t.charged is null;

insert into found (kind, charge_key, line_no, order_id, order_status, their_amount, their_refunded,
                   their_currency, action, refund_amount, resolved, detail)
select 'missing_here', t.charge_key, t.line_no, ord.id, ord.status, t.charged, t.refunded,
       t.currencies,
       case when r.charge_key is not null then 'refund_already_issued'
            when t.refunded >= t.charged or ord.status = 'confirmed' then 'none'
            else 'refund_owed' end,
       case when r.charge_key is not null then r.amount
            when t.refunded < t.charged and ord.status is distinct from 'confirmed'
            then t.charged - t.refunded end,
       r.charge_key is not null or t.refunded >= t.charged,
       case when r.charge_key is not null then 'refunded by reconciliation run ' || r.run_id
            when t.refunded >= t.charged then 'charged and refunded there'
            when ord.status = 'confirmed' then 'a confirmed order with no payment on this channel: look at it'
            when ord.id is not null then 'no payment for it here; the order is ' || ord.status
            else 'no payment and no order of ours' end
  from theirs t
  left join ours o using (charge_key)
  left join orders ord
         on ord.id = case when t.charge_key ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                          then t.charge_key::uuid end
  left join reconciliation_refunds r on r.channel = :'channel' and r.charge_key = t.charge_key
 where o.charge_key is null and t.charged is not null;

insert into found (kind, charge_key, line_no, order_id, order_status, payment_status, our_amount,
                   their_amount, our_currency, their_currency, detail)
select 'amount_mismatch', charge_key, line_no, order_id, order_status, payment_status, amount,
       charged, currency, currencies, 'charged another amount than ours'
  from both_sides
 where payment_status in ('succeeded', 'refund_pending', 'refunded') and charged <> amount;

insert into found (kind, charge_key, line_no, order_id, order_status, payment_status, our_amount,
                   their_amount, our_currency, their_currency, detail)
select 'currency_mismatch', charge_key, line_no, order_id, order_status, payment_status, amount,
       charged, currency, currencies, 'charged in another currency than ours'
  from both_sides where currencies <> currency;

insert into found (kind, charge_key, line_no, order_id, order_status, payment_status, our_amount,
                   their_amount, their_refunded, our_currency, their_currency, action,
                   refund_amount, resolved, detail)
select 'charged_for_cancelled', b.charge_key, b.line_no, b.order_id, b.order_status,
       b.payment_status, b.amount, b.charged, b.refunded, b.currency, b.currencies,
       case when r.charge_key is null then 'refund_owed' else 'refund_already_issued' end,
       coalesce(r.amount, b.charged - greatest(b.refunded, b.refunded_amount)),
       r.charge_key is not null,
       case when r.charge_key is null then 'the order is cancelled; its charge is not refunded'
            else 'refunded by reconciliation run ' || r.run_id end
  from both_sides b
  left join reconciliation_refunds r on r.channel = :'channel' and r.charge_key = b.charge_key
 where b.order_status = 'cancelled' and b.charged > greatest(b.refunded, b.refunded_amount);

insert into found (kind, charge_key, line_no, order_id, order_status, payment_status, our_amount,
                   their_amount, their_refunded, our_currency, their_currency, action,
                   refund_amount, resolved, detail)
select 'refunded_there_not_here', charge_key, line_no, order_id, order_status, payment_status,
       amount, charged, refunded, currency, currencies,
       case when :fix = 1 then 'refund_recorded' else 'none' end, refunded, :fix = 1,
       case when order_status = 'confirmed'
            then 'refunded there for a confirmed order: look at it'
            else 'refunded there; our payment says ' || refunded_amount || ' refunded' end
  from both_sides where refunded > refunded_amount;

-- --fix: the refunds seen there are recorded on our payment rows (a cancelled order's payment
-- becomes refunded; a confirmed one's keeps its status and shows the amount refunded).
update payments p
   set refunded_amount = greatest(p.refunded_amount, f.their_refunded),
       status = case when f.order_status = 'cancelled' then 'refunded' else p.status end,
       updated_at = now()
  from found f
 where :fix = 1 and f.kind = 'refunded_there_not_here' and p.charge_key = f.charge_key
   and p.channel = :'channel';

insert into reconciliation_items (run_id, item, kind, charge_key, line_no, order_id, order_status,
  payment_status, our_amount, their_amount, their_refunded, our_currency, their_currency, action,
  refund_amount, resolved, detail)
select :run, row_number() over (order by array_position(array['malformed_line',
         'missing_at_provider', 'missing_here', 'amount_mismatch', 'currency_mismatch',
         'charged_for_cancelled', 'refunded_there_not_here'], kind), line_no nulls last, charge_key),
       kind, charge_key, line_no, order_id, order_status, payment_status, our_amount, their_amount,
       their_refunded, our_currency, their_currency, action, refund_amount, resolved, detail
  from found;
commit;
\echo :run
