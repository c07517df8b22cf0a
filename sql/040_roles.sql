-- One database role per program, each with only the privileges its SQL needs.
-- scripts/pipeline connects each program as its role. The roles are created here when missing
-- (LOGIN; scripts/dev-stack gives each a password kept in .stack/pgpass; in production give each
-- a password or a certificate, and keep the schema owner for migrations and operators).
-- SELECT ... FOR UPDATE needs UPDATE on the table, hence UPDATE where a program only locks rows.
do $$
declare r text;
begin
  foreach r in array array['orderpipe_intake', 'orderpipe_reservation', 'orderpipe_payment',
                           'orderpipe_notification', 'orderpipe_compensation',
                           'orderpipe_relay', 'orderpipe_replay'] loop
    if not exists (select 1 from pg_roles where rolname = r) then
      execute format('create role %I login', r);
    end if;
    execute format('grant connect on database %I to %I', current_database(), r);
    execute format('grant usage on schema public to %I', r);
  end loop;
end $$;

-- Every worker: its inbox rows and its outbox (written, relayed, pruned).
grant select, insert, delete on inbox to orderpipe_reservation, orderpipe_payment,
  orderpipe_notification, orderpipe_compensation;
grant select, insert, update, delete on outbox to orderpipe_reservation, orderpipe_payment,
  orderpipe_notification, orderpipe_compensation, orderpipe_relay;
grant usage on sequence outbox_id_seq to orderpipe_reservation, orderpipe_payment,
  orderpipe_notification, orderpipe_compensation, orderpipe_replay;

-- reservation: records orders and moves stock.
grant select, insert, update on orders to orderpipe_reservation;
grant select, insert on order_lines, order_transitions to orderpipe_reservation;
grant select, update on inventory to orderpipe_reservation;
grant select, insert, update on reservations to orderpipe_reservation;

-- payment: the charge, and the order's move to paid; never stock.
grant select, update on orders to orderpipe_payment;
grant select, insert on order_transitions to orderpipe_payment;
grant select, insert, update on payments to orderpipe_payment;
grant select, insert on sim_provider_ledger to orderpipe_payment;

-- notification: only its own records and the orders it reads.
grant select on orders to orderpipe_notification;
grant select, insert, update on notifications to orderpipe_notification;

-- compensation: releases stock, refunds, cancels.
grant select, update on orders, inventory, reservations, payments to orderpipe_compensation;
grant select, insert on order_transitions to orderpipe_compensation;
grant select on order_lines to orderpipe_compensation;

-- intake: reads orders for GET, and the outbox backlog for backpressure.
grant select on orders, order_lines, order_transitions, outbox to orderpipe_intake;

-- replay redrive: reads an order's state and writes one outbox row.
grant select, update on orders to orderpipe_replay;
grant select on payments, reservations to orderpipe_replay;
grant select, insert, update on outbox to orderpipe_replay;
