-- Core tables of the order saga (docs/design.md §2–§4). Amounts are integers in minor units.

create table orders (
  id                uuid primary key,
  client_id         text not null,
  idempotency_key   text,
  customer_id       text not null,
  currency          char(3) not null,
  total             bigint not null check (total > 0),
  payment_token     text not null,
  notify            jsonb not null default '{}',
  status            text not null default 'pending'
                    check (status in ('pending', 'reserved', 'paid', 'confirmed', 'cancelled')),
  cancel_reason     text check (cancel_reason in ('out_of_stock', 'payment_declined',
                                  'reservation_expired', 'customer_cancelled')),
  traceparent       text,
  placed_at         timestamptz not null,
  recorded_at       timestamptz not null default now(),
  state_entered_at  timestamptz not null default now(),
  state_deadline    timestamptz,
  check ((status = 'cancelled') = (cancel_reason is not null))
);
create index orders_open_deadline on orders (state_deadline)
  where status in ('pending', 'reserved', 'paid');
create index orders_placed_at on orders (placed_at);

-- Only the transitions of docs/design.md §2 may ever be applied: this is the backstop behind the C
-- state machine (lib/order_state.c), so a bug there cannot corrupt an order.
create function orders_guard_transition() returns trigger language plpgsql as $$
begin
  if new.status = old.status then
    return new;
  end if;
  if not ((old.status = 'pending'  and new.status in ('reserved', 'cancelled')) or
          (old.status = 'reserved' and new.status in ('paid', 'cancelled')) or
          (old.status = 'paid'     and new.status in ('confirmed', 'cancelled'))) then
    raise exception 'order %: transition % -> % refused', old.id, old.status, new.status
      using errcode = 'check_violation';
  end if;
  new.state_entered_at := now();
  return new;
end $$;
create trigger orders_guard_transition before update of status on orders
  for each row execute function orders_guard_transition();

create table order_lines (
  order_id    uuid not null references orders (id),
  line_no     int not null,
  sku         text not null,
  quantity    int not null check (quantity > 0),
  unit_price  bigint not null check (unit_price > 0),
  primary key (order_id, line_no)
);
create index order_lines_sku on order_lines (sku);

-- Every state an order entered, with when: the source of the funnel and saga latencies.
create table order_transitions (
  order_id    uuid not null references orders (id),
  status      text not null,
  reason      text,
  at          timestamptz not null default clock_timestamp(),
  primary key (order_id, status)
);

create table inventory (
  sku         text primary key,
  available   bigint not null default 0 check (available >= 0),
  reserved    bigint not null default 0 check (reserved >= 0),
  sold        bigint not null default 0 check (sold >= 0),
  stocked     bigint not null default 0,            -- all stock ever put in, for invariant 2
  updated_at  timestamptz not null default now(),
  check (available + reserved + sold = stocked)
);

create table reservations (
  order_id    uuid not null references orders (id),
  sku         text not null references inventory (sku),
  quantity    int not null check (quantity > 0),
  status      text not null default 'held' check (status in ('held', 'sold', 'released')),
  expires_at  timestamptz not null,
  created_at  timestamptz not null default now(),
  primary key (order_id, sku)
);
create index reservations_held_expiry on reservations (expires_at) where status = 'held';

create table payments (
  order_id         uuid primary key references orders (id),
  amount           bigint not null check (amount > 0),
  currency         char(3) not null,
  status           text not null check (status in ('pending', 'succeeded', 'declined',
                                                     'refund_pending', 'refunded')),
  charge_key       text not null unique,     -- idempotency key sent to the provider
  provider_ref     text,
  attempts         int not null default 0,
  refunded_amount  bigint not null default 0,
  last_error       text,
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now()
);

create table notifications (
  order_id    uuid not null references orders (id),
  event_type  text not null,
  channel     text not null,
  status      text not null check (status in ('pending', 'sent', 'failed')),
  attempts    int not null default 0,
  last_error  text,
  created_at  timestamptz not null default now(),
  sent_at     timestamptz,
  primary key (order_id, event_type)
);

-- Transactional outbox: rows are written in the business transaction and published by the relay.
create table outbox (
  id            bigserial primary key,
  message_id    uuid not null unique,
  aggregate_id  text not null,                  -- the order id: events of one order stay in order
  routing_key   text not null,
  payload       text not null,                  -- the CloudEvents JSON, published byte for byte
  headers       jsonb not null default '{}',
  created_at    timestamptz not null default now(),
  published_at  timestamptz
);
create index outbox_unpublished on outbox (id) where published_at is null;
create index outbox_unpublished_aggregate on outbox (aggregate_id, id) where published_at is null;
create index outbox_published_at on outbox (published_at) where published_at is not null;

create function outbox_notify() returns trigger language plpgsql as $$
begin
  perform pg_notify('outbox', '');
  return null;
end $$;
create trigger outbox_notify after insert on outbox
  for each statement execute function outbox_notify();

-- Inbox: the messages each consumer has handled, so a redelivery changes nothing twice.
create table inbox (
  consumer     text not null,
  message_id   text not null,
  received_at  timestamptz not null default now(),
  primary key (consumer, message_id)
);
create index inbox_received_at on inbox (received_at);
