-- Wakes the outbox relay (LISTEN outbox, lib/outbox.c) once per statement that writes outbox
-- rows, so it publishes a new event at once rather than at its next poll. The notification
-- carries nothing: the relay reads the rows.
create or replace function outbox_notify() returns trigger language plpgsql as $$
begin
  perform pg_notify('outbox', '');
  return null;
end $$;
create or replace trigger outbox_notify after insert on outbox
  for each statement execute function outbox_notify();
