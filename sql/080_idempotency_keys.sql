-- Idempotency-Keys and the body each was first used with. The same client, key and
-- body answer the same order; the same key with another body is refused (422
-- idempotency_key_reused) and publishes nothing. body_sha256 is the SHA-256 of the body's
-- canonical JSON (lib/idempotency.c), so key order and whitespace do not make another body.
-- Keys are per client: the primary key is (client_id, key). order_id is the order the key
-- answered (a name-based UUID of client and key, lib/order_request.c).
-- Rows older than IDEMPOTENCY_RETENTION (default 7d, as long as the consumers' inbox keeps the
-- message ids a repeated order would be dropped by) are deleted by the intake in small batches.
create table idempotency_keys (
  client_id    text not null,
  key          text not null check (length(key) between 1 and 128),
  body_sha256  bytea not null check (length(body_sha256) = 32),
  order_id     uuid not null,
  created_at   timestamptz not null default now(),
  primary key (client_id, key)
);
create index idempotency_keys_created_at on idempotency_keys (created_at);

-- The bulk import gets its own role, like every other program (sql/040_roles.sql).
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'orderpipe_enqueue') then
    create role orderpipe_enqueue login;
  end if;
  execute format('grant connect on database %I to orderpipe_enqueue', current_database());
  grant usage on schema public to orderpipe_enqueue;
end $$;

-- A claim is insert ... on conflict do update (a no-op that returns the stored row), hence
-- UPDATE; the intake also prunes, hence DELETE.
grant select, insert, update, delete on idempotency_keys to orderpipe_intake;
grant select, insert, update on idempotency_keys to orderpipe_enqueue;
