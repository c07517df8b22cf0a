-- The saga latency values move from one indexed row each (report_rollup_latency) into the
-- histogram row of their day and bucket, as one sorted array: a refresh writes a day's ~150
-- rows instead of one index entry per confirmed order, and a percentile unnests the arrays of
-- the one bucket it falls in (index report_rollup_latency_hist_bucket), the values being the
-- same exact ones.
alter table report_rollup_latency_hist add column us bigint[];

-- Rows exist only where report_refresh, and so report_latency_bucket, ran before: the function
-- is named in a dynamic statement so that a database migrated from nothing need not have it yet.
do $$
begin
  if exists (select 1 from report_rollup_latency) then
    execute $q$
      update report_rollup_latency_hist h set us = v.us
        from (select l.day, report_latency_bucket(l.us) as bucket, array_agg(l.us order by l.us) as us
                from report_rollup_latency l group by 1, 2) v
       where v.day = h.day and v.bucket = h.bucket $q$;
  end if;
end $$;

alter table report_rollup_latency_hist alter column us set not null;
create index report_rollup_latency_hist_bucket on report_rollup_latency_hist (bucket, day);
drop table report_rollup_latency;
