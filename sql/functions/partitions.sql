-- Time partitions of outbox, inbox and order_transitions (sql/120_partitions.sql): the ranges
-- each table has, and their upkeep, which every worker's housekeeping calls (lib/partitions.c).

-- The range partitions of `tbl`, oldest first, with their bounds (a MINVALUE bound is
-- '-infinity'); the default partition is not listed.
create or replace function partitions_list(tbl text)
  returns table (name text, lo timestamptz, hi timestamptz)
  language sql stable set search_path = public, pg_temp as $$
  select c.relname::text,
         case when b[1] = 'MINVALUE' then '-infinity' else trim(both '''' from b[1]) end::timestamptz,
         case when b[2] = 'MAXVALUE' then 'infinity' else trim(both '''' from b[2]) end::timestamptz
    from pg_inherits i
    join pg_class c on c.oid = i.inhrelid,
    lateral regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \((.*)\) TO \((.*)\)') b
   where i.inhparent = tbl::regclass and b is not null
   order by 3
$$;

-- Makes the partitions of `tbl` (outbox, inbox or order_transitions) that cover now() + ahead,
-- each `width` wide, and drops those whose every key is older than `retention` (none when NULL):
-- an outbox partition only once every row in it was published before that. Rows the default
-- partition holds in a new partition's range are moved into it; rows in the default partition
-- past retention are deleted, `batch` at most.
--
-- Several processes call it at once: one does the work (an advisory lock; the others return
-- zeros). DDL on a partitioned table locks its parent, so each step waits at most a moment for
-- its lock and, when it cannot have it, is left for the next call: the hot path is never
-- queued behind a waiting DROP. SECURITY DEFINER: the workers' roles own no table; this is the
-- only DDL they can cause.
create or replace function partitions_maintain(tbl text, width interval, ahead interval,
                                               retention interval, batch int default 1000,
                                               out created int, out dropped int, out deleted bigint)
  language plpgsql security definer set search_path = public, pg_temp as $$
declare
  key text;
  age_col text;
  p record;
  lo timestamptz;
  hi timestamptz;
  cutoff timestamptz;
  part text;
  busy boolean;
begin
  created := 0; dropped := 0; deleted := 0;
  key := case tbl when 'outbox' then 'created_at' when 'inbox' then 'event_at'
                  when 'order_transitions' then 'at' end;
  if key is null or width is null or width < interval '1 second' or ahead is null then
    raise exception 'partitions_maintain(%, %, %): not a partitioned table or a bad width',
      tbl, width, ahead using errcode = 'invalid_parameter_value';
  end if;
  if not pg_try_advisory_xact_lock(7366120, hashtext(tbl)) then
    return;
  end if;
  perform set_config('lock_timeout', '100ms', true);
  -- Ahead: from the last partition's end, or from now when that lies behind (what came between
  -- is in the default partition), to now + ahead.
  select max(l.hi) into hi from partitions_list(tbl) l;
  lo := greatest(coalesce(hi, '-infinity'), date_bin(width, now(), timestamptz 'epoch'));
  while lo < now() + ahead loop
    hi := date_bin(width, lo, timestamptz 'epoch') + width;  -- the bins stay aligned
    part := tbl || '_p' || to_char(lo at time zone 'UTC', 'YYYYMMDD"t"HH24MISS');
    begin
      execute format('create table %I (like %I including defaults)', part, tbl);
      execute format('with m as (delete from %I where %I >= $1 and %I < $2 returning *) '
                     'insert into %I select * from m', tbl || '_default', key, key, part)
        using lo, hi;
      execute format('alter table %I attach partition %I for values from (%L) to (%L)',
                     tbl, part, lo, hi);
      created := created + 1;
    exception when lock_not_available then
      return;
    end;
    lo := hi;
  end loop;
  if retention is null then
    return;
  end if;
  cutoff := now() - retention;
  for p in select * from partitions_list(tbl) l where l.hi <= cutoff loop
    if tbl = 'outbox' then
      execute format('select exists (select 1 from %I where published_at is null) or '
                     'exists (select 1 from %I where published_at >= $1)', p.name, p.name)
        using cutoff into busy;
      continue when busy;
    end if;
    begin
      execute format('drop table %I', p.name);
      dropped := dropped + 1;
    exception when lock_not_available then
      return;
    end;
  end loop;
  -- The default partition holds what came while no partition was ahead, and keys no partition
  -- covers (an event's time far off): it is pruned by age, as rows.
  age_col := case tbl when 'outbox' then 'published_at' when 'inbox' then 'received_at'
                      else 'at' end;
  execute format('delete from %I where ctid = any(array(select ctid from %I where %I < $1 '
                 'limit $2))', tbl || '_default', tbl || '_default', age_col)
    using cutoff, batch;
  get diagnostics deleted = row_count;
end $$;

revoke all on function partitions_maintain(text, interval, interval, interval, int) from public;
grant execute on function partitions_maintain(text, interval, interval, interval, int)
  to orderpipe_reservation, orderpipe_payment, orderpipe_notification, orderpipe_compensation;
