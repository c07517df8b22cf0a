-- Outbox, inbox and order_transitions become range-partitioned by time, so that what is past its
-- retention goes by dropping whole partitions (sql/functions/partitions.sql, called by the
-- workers' housekeeping) instead of row deletes that leave dead tuples for autovacuum.
--
-- Each existing table is kept as it is, rows and indexes, and attached as the partition
-- <table>_legacy for every key up to the moment of the migration: no row is copied, and the
-- legacy partition is dropped whole once all of it is past retention, like any other. Keys
-- after it land in <table>_default until housekeeping has made the partitions ahead (it moves
-- any such rows into them).
--
-- Partition keys, and why:
--   - outbox: created_at. The relay claims by id over all partitions; a partition is dropped only
--     when none of its rows is unpublished. message_id keeps an index, not a unique one (a unique
--     index must hold the partition key): it is a fresh random v4 id per row.
--   - inbox: event_at, the CloudEvent's own `time`, which every redelivery of a message carries
--     unchanged. The primary key (consumer, message_id, event_at) therefore sends a redelivery to
--     the partition of its first delivery, where the key conflicts, whichever partitions were
--     made or dropped meanwhile (a partition keyed by when the row was written would not: a
--     redelivery after the boundary would find no conflict in the new partition). Rows of before
--     the migration have event_at '-infinity' (their time was not recorded).
--   - order_transitions: at. Its primary key gains `at`; (order_id, status) stays unique because
--     the orders trigger applies each state once (sql/triggers/orders_guard_transition.sql).
-- Safe to re-run: a table already partitioned is left alone.
set local client_min_messages = warning;  -- no NOTICE for a trigger not made yet
do $$
declare
  t record;
  obj text;
  legacy text;
  bound timestamptz;
begin
  for t in select * from (values ('outbox', 'created_at'), ('inbox', 'event_at'),
                                 ('order_transitions', 'at')) v(name, key) loop
    if (select relkind from pg_class where oid = ('public.' || t.name)::regclass) = 'p' then
      continue;
    end if;
    legacy := t.name || '_legacy';
    execute format('lock table %I in access exclusive mode', t.name);
    execute format('alter table %I rename to %I', t.name, legacy);
    if t.name = 'inbox' then
      alter table inbox_legacy add column event_at timestamptz not null default '-infinity';
      alter table inbox_legacy alter column event_at drop default;
    end if;
    -- The legacy partition holds every key written so far, however far ahead.
    execute format('select greatest(now(), max(%I) + interval ''1 microsecond'') from %I',
                   t.key, legacy) into bound;
    -- Its primary key and unique constraints give way to the parent's, which hold the key
    -- (a partition has the parent's primary key, and no other); the other constraint and
    -- index names follow the table, so that the new parent takes the names.
    for obj in select conname from pg_constraint
                where conrelid = legacy::regclass and contype in ('p', 'u') loop
      execute format('alter table %I drop constraint %I', legacy, obj);
    end loop;
    for obj in select conname from pg_constraint
                where conrelid = legacy::regclass and contype = 'f' loop
      execute format('alter table %I rename constraint %I to %I', legacy, obj,
                     replace(obj, t.name, legacy));
    end loop;
    for obj in select c.relname from pg_index i join pg_class c on c.oid = i.indexrelid
                where i.indrelid = legacy::regclass and c.relname not like legacy || '%' loop
      execute format('alter index %I rename to %I', obj, replace(obj, t.name, legacy));
    end loop;
    if t.name = 'outbox' then
      drop trigger if exists outbox_notify on outbox_legacy;
      create table outbox (
        id            bigint not null default nextval('outbox_id_seq'),
        message_id    uuid not null,
        aggregate_id  text not null,
        routing_key   text not null,
        payload       text not null,
        headers       jsonb not null default '{}',
        created_at    timestamptz not null default now(),
        published_at  timestamptz,
        primary key (id, created_at)
      ) partition by range (created_at);
      alter sequence outbox_id_seq owned by outbox.id;
      alter table outbox_legacy alter column id drop default;
    elsif t.name = 'inbox' then
      create table inbox (
        consumer     text not null,
        message_id   text not null,
        received_at  timestamptz not null default now(),
        event_at     timestamptz not null default '-infinity',
        primary key (consumer, message_id, event_at)
      ) partition by range (event_at);
    else
      create table order_transitions (
        order_id    uuid not null references orders (id),
        status      text not null,
        reason      text,
        at          timestamptz not null default clock_timestamp(),
        primary key (order_id, status, at)
      ) partition by range (at);
    end if;
    execute format('alter table %I attach partition %I for values from (minvalue) to (%L)',
                   t.name, legacy, bound);
    execute format('create table %I partition of %I default', t.name || '_default', t.name);
  end loop;
end $$;

-- Indexes on the parents, so every partition has them (the legacy ones' are attached).
create index if not exists outbox_unpublished on outbox (id) where published_at is null;
create index if not exists outbox_unpublished_aggregate on outbox (aggregate_id, id)
  where published_at is null;
create index if not exists outbox_published_at on outbox (published_at)
  where published_at is not null;
create index if not exists outbox_message_id on outbox (message_id);
create index if not exists inbox_received_at on inbox (received_at);

-- The grants of 040_roles.sql and 085_column_privileges.sql, on the new parents.
grant select, insert, delete on inbox to orderpipe_reservation, orderpipe_payment,
  orderpipe_notification, orderpipe_compensation;
grant select, insert, update, delete on outbox to orderpipe_reservation, orderpipe_payment,
  orderpipe_notification, orderpipe_compensation, orderpipe_relay;
grant select (created_at, published_at) on outbox to orderpipe_intake;
grant select, insert, update on outbox to orderpipe_replay;
grant select, insert on order_transitions to orderpipe_reservation, orderpipe_payment,
  orderpipe_compensation;
grant select on order_transitions to orderpipe_intake;
