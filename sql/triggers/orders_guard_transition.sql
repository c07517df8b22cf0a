-- Only the transitions of docs/design.md §2 are ever applied to an order: this is the backstop
-- behind the C state machine (lib/order_state.c), so a bug there cannot corrupt an order. It
-- also stamps when the order entered its state (state_entered_at).
create or replace function orders_guard_transition() returns trigger language plpgsql as $$
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
create or replace trigger orders_guard_transition before update of status on orders
  for each row execute function orders_guard_transition();
