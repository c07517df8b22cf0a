-- The report functions (sql/functions/report.sql) over the whole history, to query directly.
create or replace view report_sku_sales as select * from report_sku_sales_between();
create or replace view report_daily_sales as select * from report_daily_sales_between();
create or replace view report_funnel as select * from report_funnel_between();
create or replace view report_cancel_reasons as select * from report_cancel_reasons_between();
create or replace view report_latency as select * from report_latency_between();
create or replace view report_top_skus as select * from report_top_skus_between();
create or replace view report_stockouts as select * from report_stockouts_between();
