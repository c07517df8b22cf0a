-- Which transitions happened in a time range: report_stage reads a day's 'confirmed'
-- transitions by their time, as a range of the table (rows go in in time order), instead of
-- probing the primary key once per order. A BRIN index costs a write next to nothing; ranges of
-- 32 pages keep a day's read near the day's own pages (the rows are in time order only roughly).
create index if not exists order_transitions_at_brin on order_transitions using brin (at)
  with (pages_per_range = 32, autosummarize = on);
