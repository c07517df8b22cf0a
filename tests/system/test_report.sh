#!/usr/bin/env bash
# scripts/report: a known order history of 30 orders over three days (two currencies, five SKUs,
# every cancel reason, orders still in flight) is inserted directly; the CSV figures must match an
# independent SQL cross-check, JSON must be valid with every section, --from/--to must drop a day,
# the HTML page must render in headless Chromium with its four charts, and bad usage must fail.
# Then the daily rollups: after `refresh` the report (read from them) equals the report computed
# from the order tables (--live), over windows, cut days and another zone; an order changed after
# the refresh is read live, the next refresh takes its day and today only; a closed month is read
# from its monthly rollup until one of its days changes; the report runs on a read-only
# REPORT_DATABASE_URL, where a refresh fails.
source "$(dirname "$0")/lib.sh"
REPORT=$ROOT/scripts/report
SECTIONS="sku_sales daily_sales funnel cancel_reasons latency top_skus stockouts"

# --- the order history -------------------------------------------------------------------------
# n, day (0..2), final status, cancel reason, currency. Cancelled out_of_stock orders never got
# past pending; the other cancellations were reserved first.
sql "
create temp table seed (n int, day int, status text, reason text, currency text);
insert into seed values
  (1,0,'confirmed',null,'EUR'), (2,0,'confirmed',null,'EUR'), (3,0,'confirmed',null,'EUR'),
  (4,0,'cancelled','out_of_stock','EUR'), (5,0,'confirmed',null,'EUR'),
  (6,0,'cancelled','payment_declined','EUR'), (7,0,'confirmed',null,'EUR'),
  (8,0,'confirmed',null,'EUR'), (9,0,'cancelled','reservation_expired','EUR'),
  (10,0,'confirmed',null,'USD'),
  (11,1,'confirmed',null,'EUR'), (12,1,'confirmed',null,'EUR'),
  (13,1,'cancelled','out_of_stock','EUR'), (14,1,'confirmed',null,'EUR'),
  (15,1,'cancelled','payment_declined','EUR'), (16,1,'confirmed',null,'EUR'),
  (17,1,'cancelled','customer_cancelled','EUR'), (18,1,'confirmed',null,'EUR'),
  (19,1,'paid',null,'EUR'), (20,1,'confirmed',null,'USD'),
  (21,2,'confirmed',null,'EUR'), (22,2,'cancelled','out_of_stock','EUR'),
  (23,2,'confirmed',null,'EUR'), (24,2,'confirmed',null,'EUR'),
  (25,2,'cancelled','payment_declined','EUR'), (26,2,'confirmed',null,'EUR'),
  (27,2,'reserved',null,'EUR'), (28,2,'confirmed',null,'EUR'), (29,2,'pending',null,'EUR'),
  (30,2,'cancelled','out_of_stock','EUR');

insert into orders (id, client_id, customer_id, currency, total, payment_token, status,
                    cancel_reason, placed_at)
select md5('order-' || n)::uuid, 'test', 'c-' || (n % 7), currency, 1, 'tok_ok', status, reason,
       timestamptz '2024-03-01 08:00:00+00' + make_interval(days => day, mins => 37 * (n % 10))
  from seed;

-- line 1: one of four SKUs; line 2 on even orders; out_of_stock orders also asked for OOS-1.
insert into order_lines (order_id, line_no, sku, quantity, unit_price)
select md5('order-' || n)::uuid, 1, (array['A-1','B-2','C-3','D-4'])[1 + n % 4], 1 + n % 3,
       (array[1000, 250, 4999, 1500])[1 + n % 4]
  from seed
union all
select md5('order-' || n)::uuid, 2, 'E-5', 2, 300 from seed where n % 2 = 0
union all
select md5('order-' || n)::uuid, 3, 'OOS-1', 1, 700 from seed where reason = 'out_of_stock';
update orders o set total = (select sum(quantity * unit_price) from order_lines l where l.order_id = o.id);

-- every state entered: pending at placed_at, then 20 ms per step; confirmed after 100*n ms.
insert into order_transitions (order_id, status, reason, at)
select md5('order-' || s.n)::uuid, t.status, case when t.status = 'cancelled' then s.reason end,
       o.placed_at + case t.status when 'pending' then interval '0'
                                   when 'confirmed' then make_interval(secs => s.n * 0.1)
                                   else make_interval(secs => t.k * 0.02) end
  from seed s join orders o on o.id = md5('order-' || s.n)::uuid
  cross join lateral (values (1, 'pending'), (2, 'reserved'), (3, 'paid'), (4, 'confirmed'),
                             (5, 'cancelled')) t(k, status)
 where t.status = 'pending'
    or (t.status = 'reserved' and (s.status in ('reserved', 'paid', 'confirmed')
                                    or s.reason in ('payment_declined', 'reservation_expired',
                                                    'customer_cancelled')))
    or (t.status = 'paid' and s.status in ('paid', 'confirmed'))
    or (t.status = 'confirmed' and s.status = 'confirmed')
    or (t.status = 'cancelled' and s.status = 'cancelled');

insert into inventory (sku, available, reserved, sold, stocked) values
  ('A-1', 50, 0, 10, 60), ('B-2', 0, 0, 20, 20), ('C-3', 5, 1, 4, 10),
  ('D-4', 7, 0, 3, 10), ('E-5', 100, 0, 30, 130), ('OOS-1', 0, 0, 0, 0);
" >/dev/null
check_eq "the seeded history has 30 orders" 30 "$(sql "select count(*) from orders")"

# Lines of section NAME of a CSV report, without the header row.
section() { awk -v s="# $1" '$0 == s { f = 1; getline; next } /^# / { f = 0 } f' "$2"; }
csvq() { psql -X -q --csv -t -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "$1"; }

# --- csv against an independent SQL cross-check -------------------------------------------------
check "csv report succeeds" "$REPORT" --format csv --out "$TEST_TMP/all.csv"
for s in $SECTIONS; do
  check "csv has section '# $s' with a header row" grep -qx "# $s" "$TEST_TMP/all.csv"
done
check_eq "csv: sku_sales header" "sku,currency,orders,units_ordered,confirmed_orders,units_sold,revenue" \
  "$(awk '$0 == "# sku_sales" { getline; print; exit }' "$TEST_TMP/all.csv")"

check_eq "csv: units sold and revenue per SKU and currency" \
  "$(csvq "select l.sku, o.currency, sum(l.quantity), sum(l.quantity * l.unit_price)
             from orders o join order_lines l on l.order_id = o.id
            where o.status = 'confirmed' group by 1, 2 order by 1, 2")" \
  "$(section sku_sales "$TEST_TMP/all.csv" | awk -F, '$6 > 0 { print $1 "," $2 "," $6 "," $7 }')"
check_eq "csv: units ordered per SKU (every order)" \
  "$(csvq "select l.sku, sum(l.quantity) from order_lines l group by 1 order by 1")" \
  "$(section sku_sales "$TEST_TMP/all.csv" | awk -F, '{ u[$1] += $4 } END { for (k in u) print k "," u[k] }' | sort)"
check_eq "csv: revenue per day and currency" \
  "$(csvq "select (o.placed_at at time zone 'UTC')::date, o.currency, sum(l.quantity * l.unit_price)
             from orders o join order_lines l on l.order_id = o.id
            where o.status = 'confirmed' group by 1, 2 order by 1, 2")" \
  "$(section daily_sales "$TEST_TMP/all.csv" | awk -F, '{ print $1 "," $2 "," $7 }')"
check_eq "csv: orders placed per day" "2024-03-01,10 2024-03-02,10 2024-03-03,10" \
  "$(section daily_sales "$TEST_TMP/all.csv" | awk -F, '{ n[$1] += $3 } END { for (d in n) print d "," n[d] }' | sort | tr '\n' ' ' | sed 's/ $//')"
check_eq "csv: funnel placed/reserved/paid/confirmed" \
  "$(csvq "select 'placed', count(*) from orders
           union all select s, (select count(distinct order_id) from order_transitions where status = s)
             from unnest(array['reserved', 'paid', 'confirmed']) s")" \
  "$(section funnel "$TEST_TMP/all.csv" | awk -F, '{ print $2 "," $3 }')"
check_eq "csv: funnel figures of the seed" "30 25 19 18" \
  "$(section funnel "$TEST_TMP/all.csv" | cut -d, -f3 | tr '\n' ' ' | sed 's/ $//')"
check_eq "csv: cancel reasons" \
  "$(csvq "select cancel_reason, count(*) from orders where status = 'cancelled' group by 1 order by 1")" \
  "$(section cancel_reasons "$TEST_TMP/all.csv" | cut -d, -f1,2 | sort)"
check_eq "csv: latency percentiles p50/p95/p99 (ms)" \
  "$(csvq "select count(*), round(percentile_cont(0.5) within group (order by ms)::numeric, 1),
                  round(percentile_cont(0.95) within group (order by ms)::numeric, 1),
                  round(percentile_cont(0.99) within group (order by ms)::numeric, 1)
             from (select extract(epoch from t.at - o.placed_at) * 1000 ms from orders o
                   join order_transitions t on t.order_id = o.id and t.status = 'confirmed') x")" \
  "$(section latency "$TEST_TMP/all.csv" | cut -d, -f1-4)"
check_eq "csv: top SKUs, ranked by revenue" \
  "$(csvq "select l.sku, o.currency, sum(l.quantity * l.unit_price) r
             from orders o join order_lines l on l.order_id = o.id
            where o.status = 'confirmed' group by 1, 2 order by r desc, 1, 2 limit 10")" \
  "$(section top_skus "$TEST_TMP/all.csv" | awk -F, '{ print $2 "," $3 "," $5 }')"
check_eq "csv: stock-outs (available = 0) with out_of_stock cancellations per SKU" \
  "$(csvq "select i.sku, count(distinct o.id) from inventory i
             left join order_lines l on l.sku = i.sku
             left join orders o on o.id = l.order_id and o.cancel_reason = 'out_of_stock'
            where i.available = 0 group by 1 order by 1")" \
  "$(section stockouts "$TEST_TMP/all.csv" | awk -F, '$5 == "t" { print $1 "," $6 }' | sort)"
check_eq "csv: OOS-1 was in all 4 out-of-stock cancellations" "4" \
  "$(section stockouts "$TEST_TMP/all.csv" | awk -F, '$1 == "OOS-1" { print $6 }')"

# --- json ---------------------------------------------------------------------------------------
check "json report succeeds" "$REPORT" --format json --out "$TEST_TMP/all.json"
check "json is valid" jq -e . "$TEST_TMP/all.json" >/dev/null
for s in $SECTIONS; do
  check "json has section $s (an array)" jq -e --arg s "$s" '.[$s] | type == "array"' "$TEST_TMP/all.json" >/dev/null
done
check_eq "json: total revenue equals the csv's" \
  "$(section sku_sales "$TEST_TMP/all.csv" | awk -F, '{ s += $7 } END { print s }')" \
  "$(jq '[.sku_sales[].revenue] | add' "$TEST_TMP/all.json")"
check_eq "json: funnel placed" 30 "$(jq '.funnel[0].orders' "$TEST_TMP/all.json")"
check "json: p50 latency equals the csv's" jq -e --argjson v "$(section latency "$TEST_TMP/all.csv" | cut -d, -f2)" \
  '.latency[0].p50_ms == $v' "$TEST_TMP/all.json" >/dev/null

# --- --from / --to ------------------------------------------------------------------------------
check "csv report for 2024-03-02 .. 2024-03-04 succeeds" \
  "$REPORT" --format csv --from 2024-03-02 --to 2024-03-04 --out "$TEST_TMP/d23.csv"
check_eq "window: funnel placed counts only days 2 and 3" 20 \
  "$(section funnel "$TEST_TMP/d23.csv" | awk -F, '$2 == "placed" { print $3 }')"
check_eq "window: no row for the excluded day" "" \
  "$(section daily_sales "$TEST_TMP/d23.csv" | grep '^2024-03-01' || true)"
total_all=$(section sku_sales "$TEST_TMP/all.csv" | awk -F, '{ s += $7 } END { print s }')
day1=$(section daily_sales "$TEST_TMP/all.csv" | awk -F, '$1 == "2024-03-01" { s += $7 } END { print s }')
check_eq "window: revenue is the total less day 1's" "$((total_all - day1))" \
  "$(section sku_sales "$TEST_TMP/d23.csv" | awk -F, '{ s += $7 } END { print s }')"
check_eq "window: revenue matches SQL over the same window" \
  "$(sql "select sum(l.quantity * l.unit_price) from orders o join order_lines l on l.order_id = o.id
           where o.status = 'confirmed' and o.placed_at >= '2024-03-02' and o.placed_at < '2024-03-04'")" \
  "$(section sku_sales "$TEST_TMP/d23.csv" | awk -F, '{ s += $7 } END { print s }')"
check_eq "window: cancel reasons of days 2 and 3" \
  "$(csvq "select cancel_reason, count(*) from orders where status = 'cancelled'
            and placed_at >= '2024-03-02' and placed_at < '2024-03-04' group by 1 order by 1")" \
  "$(section cancel_reasons "$TEST_TMP/d23.csv" | cut -d, -f1,2 | sort)"
check_eq "window: --to is exclusive (only day 1 before 2024-03-02)" 10 \
  "$("$REPORT" --format json --to 2024-03-02 | jq '.funnel[0].orders')"
check_eq "window: an empty window gives empty sections" "0 0" \
  "$("$REPORT" --format json --from 2030-01-01 | jq -r '"\(.sku_sales | length) \(.funnel[0].orders)"')"

# --- table --------------------------------------------------------------------------------------
"$REPORT" > "$TEST_TMP/all.txt"
check_eq "table report (the default) exits 0" 0 $?
check "table has a title per section" \
  grep -q 'Sales and revenue per SKU' "$TEST_TMP/all.txt"
check "table shows the funnel and latency" \
  bash -c "grep -q 'Funnel' '$TEST_TMP/all.txt' && grep -q 'p95_ms' '$TEST_TMP/all.txt'"

# --- html in headless Chromium ------------------------------------------------------------------
html=$TEST_TMP/report.html
check "html report succeeds" "$REPORT" --format html --out "$html"
check_eq "html has four chart wrappers" 4 "$(grep -o 'class="chart"' "$html" | wc -l)"
for id in chart-revenue-per-day chart-top-skus chart-funnel chart-cancel-reasons; do
  check "html has chart #$id" grep -q "id=\"$id\"" "$html"
done
check "html is self-contained (no src= or external href)" \
  bash -c "! grep -Eqi '(src|href)=[\"'\'']?(https?:)?//' '$html' && ! grep -qi '<script\|<link' '$html'"
check "html tables include every section" \
  bash -c "for s in $SECTIONS; do grep -q \"<h2 id=\\\"\$s\\\"\" '$html' || exit 1; done"

chrome() { HOME=$TEST_TMP timeout 120 chromium --headless --no-sandbox --disable-gpu \
             --user-data-dir="$TEST_TMP/chromium" "$@" 2>>"$TEST_TMP/chromium.log"; }
chrome --screenshot="$TEST_TMP/report.png" --window-size=1200,3000 "file://$html" >/dev/null
png_size=$(stat -c %s "$TEST_TMP/report.png" 2>/dev/null || echo 0)
check "chromium screenshot exists and is non-trivial ($png_size bytes)" test "$png_size" -gt 20000
check "screenshot is a PNG" bash -c "head -c 8 '$TEST_TMP/report.png' | od -An -c | grep -q 'P   N   G'"
chrome --dump-dom "file://$html" > "$TEST_TMP/dom.html"
check_eq "rendered DOM has four class=\"chart\" wrappers" 4 "$(grep -o 'class="chart"' "$TEST_TMP/dom.html" | wc -l)"
check "rendered DOM has an <svg> in each chart" \
  test "$(grep -o '<svg' "$TEST_TMP/dom.html" | wc -l)" -ge 4
check "rendered DOM has the chart bars' labels" grep -q 'out_of_stock' "$TEST_TMP/dom.html"
check "html for an empty window still has its four charts (saying there is no data)" \
  bash -c "'$REPORT' --format html --from 2030-01-01 > '$TEST_TMP/empty.html' &&
           [ \$(grep -o 'class=\"chart\"' '$TEST_TMP/empty.html' | wc -l) = 4 ] &&
           grep -q 'No data for this period' '$TEST_TMP/empty.html'"

# --- daily rollups -----------------------------------------------------------------------------
# The seed is history: its orders last changed in 2024, not within the refresh's lag of now.
sql "update orders set state_entered_at = placed_at + interval '1 hour'" >/dev/null
"$REPORT" refresh > "$TEST_TMP/refresh.out" 2>&1
check_eq "refresh exits 0" 0 $?
check "refresh says what it rolled up" grep -q "report refresh: [0-9]* days (2024-03-01 .. " "$TEST_TMP/refresh.out"
check_eq "every day from the first order's to today is rolled up" \
  "$(sql "select current_date - date '2024-03-01' + 1")" "$(sql "select count(*) from report_rollup_days")"
check_eq "the rolled-up days hold the 30 orders" 30 "$(sql "select sum(orders) from report_rollup_days")"
live_and_rollup_agree() { # LABEL [REPORT ARGS...]: the report from the rollups equals --live's
  local label=$1; shift
  "$REPORT" --format csv "$@" > "$TEST_TMP/rollup.csv" && "$REPORT" --format csv --live "$@" > "$TEST_TMP/live.csv"
  check "$label: the rollups' report equals the live one" cmp "$TEST_TMP/rollup.csv" "$TEST_TMP/live.csv"
}
live_and_rollup_agree "whole history"
check "whole history: the figures are those the live tables gave before any rollup" cmp "$TEST_TMP/all.csv" "$TEST_TMP/rollup.csv"
"$REPORT" --format json > "$TEST_TMP/rollup.json"
check "json from the rollups equals json from the live tables" \
  cmp <(jq -S 'del(.window)' "$TEST_TMP/rollup.json") <(jq -S 'del(.window)' "$TEST_TMP/all.json")
live_and_rollup_agree "days 2 and 3" --from 2024-03-02 --to 2024-03-04
live_and_rollup_agree "a window cutting days in half" --from '2024-03-01 10:00' --to '2024-03-03 09:00'
REPORT_TZ=Asia/Tokyo live_and_rollup_agree "another time zone (the rollups are UTC days)"

# The report reads the rollups: a figure changed there shows, and --live does not see it.
sql "update report_rollup_daily set revenue = revenue + 1000000 where day = '2024-03-01' and currency = 'USD'" >/dev/null
check_eq "a rolled-up day is read from the rollups" "$(( day1 + 1000000 ))" \
  "$("$REPORT" --format csv | section daily_sales /dev/stdin | awk -F, '$1 == "2024-03-01" { s += $7 } END { print s }')"
check_eq "--live reads the order tables" "$day1" \
  "$("$REPORT" --format csv --live | section daily_sales /dev/stdin | awk -F, '$1 == "2024-03-01" { s += $7 } END { print s }')"
check "refresh --day rebuilds that day" "$REPORT" refresh --day 2024-03-01
live_and_rollup_agree "after refresh --day"
# A confirmation days away from its order's placed_at (a slow saga, or clocks apart) lies outside
# the time range a refresh reads confirmations from first: the refresh finds it all the same.
sql "update order_transitions set at = at + interval '3 days'
      where order_id = md5('order-1')::uuid and status = 'confirmed';
     update order_transitions set at = at - interval '2 days'
      where order_id = md5('order-3')::uuid and status = 'confirmed'" >/dev/null
check "refresh --day with confirmations days away from their orders" \
  "$REPORT" refresh --day 2024-03-01
live_and_rollup_agree "confirmations days away from their orders"

# An order changed after the refresh: its day is read live until the next refresh, which
# refreshes that day and today only.
sql "update orders set status = 'paid' where id = md5('order-27')::uuid;
     insert into order_transitions (order_id, status) values (md5('order-27')::uuid, 'paid')" >/dev/null
live_and_rollup_agree "an order paid since the refresh"
check_eq "the funnel counts the new payment" "30 25 20 18" \
  "$(section funnel "$TEST_TMP/rollup.csv" | cut -d, -f3 | tr '\n' ' ' | sed 's/ $//')"
"$REPORT" refresh > "$TEST_TMP/refresh2.out" 2>&1
check "the next refresh refreshes the changed day and today: 2 days" \
  grep -q "report refresh: 2 days (2024-03-03 .. $(sql "select current_date")), " "$TEST_TMP/refresh2.out"
check_eq "the rollups now hold the payment" 20 \
  "$(sql "select sum(paid) from report_rollup_funnel")"
live_and_rollup_agree "after the incremental refresh"

# The monthly level: March 2024 is a closed month whose every day is rolled up and unchanged, so
# the SKU sections read its rows of report_rollup_sku_month, kept the sum of its days' rows.
# (A change within the refresh's lag keeps its day read live: the changes are made older.)
age_changes() { sql "update orders set state_entered_at = placed_at + interval '1 hour'" >/dev/null; }
age_changes
month_sums="select sum(orders), sum(units_ordered), sum(confirmed_orders), sum(units_sold),
                   sum(revenue), sum(oos_cancellations)"
check_eq "the month's SKU rows are the sum of its days'" \
  "$(sql "$month_sums from report_rollup_sku where day between '2024-03-01' and '2024-03-31'")" \
  "$(sql "$month_sums from report_rollup_sku_month where month = '2024-03-01'")"
check_eq "a report over the whole history reads March 2024 as one month" t \
  "$(PGTZ=UTC sql "select date '2024-03-01' = any (months) from report_clean_parts()")"
msku=$(sql "select sku from report_rollup_sku_month where currency = 'EUR' order by sku limit 1")
sku_revenue() { section sku_sales /dev/stdin | awk -F, -v k="$msku" '$1 == k && $2 == "EUR" { print $7 }'; }
rev=$("$REPORT" --format csv | sku_revenue)
sql "update report_rollup_sku_month set revenue = revenue + 1000000
      where month = '2024-03-01' and sku = '$msku' and currency = 'EUR'" >/dev/null
check_eq "a closed month's SKU figures are read from its monthly row" "$(( rev + 1000000 ))" \
  "$("$REPORT" --format csv | sku_revenue)"
sql "update report_rollup_sku_month set revenue = revenue - 1000000
      where month = '2024-03-01' and sku = '$msku' and currency = 'EUR'" >/dev/null
# An order of that month confirmed since the refresh: its day is read live, the month's other
# days from their daily rows, until the next refresh brings the month's rows up to date.
sql "update orders set status = 'confirmed' where id = md5('order-19')::uuid;
     insert into order_transitions (order_id, status) values (md5('order-19')::uuid, 'confirmed')" >/dev/null
check_eq "a month with a day changed since the refresh is not read as a month" f \
  "$(PGTZ=UTC sql "select date '2024-03-01' = any (months) from report_clean_parts()")"
live_and_rollup_agree "an order of a closed month confirmed since the refresh"
"$REPORT" refresh > /dev/null
age_changes
check_eq "the refresh brings the month's SKU rows to the sum of its days' again" \
  "$(sql "$month_sums from report_rollup_sku where day between '2024-03-01' and '2024-03-31'")" \
  "$(sql "$month_sums from report_rollup_sku_month where month = '2024-03-01'")"
check_eq "and the month is read as one again" t "$(PGTZ=UTC sql "select date '2024-03-01' = any (months) from report_clean_parts()")"
live_and_rollup_agree "the month after its refresh"

# A read-only connection, as a standby gives, named by REPORT_DATABASE_URL: the report only reads.
sep='?'; case "$DATABASE_URL" in *\?*) sep='&' ;; esac
ro_url="$DATABASE_URL${sep}target_session_attrs=prefer-standby&options=-c%20default_transaction_read_only%3Don"
REPORT_DATABASE_URL=$ro_url DATABASE_URL=postgresql://nobody@127.0.0.1:1/nothing \
  "$REPORT" --format csv > "$TEST_TMP/ro.csv" 2> "$TEST_TMP/ro.err"
check_eq "the report runs on a read-only REPORT_DATABASE_URL" 0 $?
check "and gives the same figures" cmp "$TEST_TMP/ro.csv" "$TEST_TMP/rollup.csv"
REPORT_DATABASE_URL=$ro_url "$REPORT" --format html --out "$TEST_TMP/ro.html" 2> "$TEST_TMP/ro.err"
check_eq "so does the html report" 0 $?
DATABASE_URL=$ro_url "$REPORT" refresh > /dev/null 2> "$TEST_TMP/ro-refresh.err"
check_eq "refresh on a read-only connection fails with status 1" 1 $?
check "saying why" grep -q "read-only" "$TEST_TMP/ro-refresh.err"
"$REPORT" refresh --day notadate > /dev/null 2> "$TEST_TMP/badday.err"
check_eq "refresh --day with no date is refused with status 2" 2 $?
"$REPORT" refresh --since 2024-03-01 --day 2024-03-02 > /dev/null 2>&1
check_eq "refresh --since with --day is refused with status 2" 2 $?

# --- errors -------------------------------------------------------------------------------------
"$REPORT" --format xml > "$TEST_TMP/bad.out" 2> "$TEST_TMP/bad.err"
rc=$?
check "unknown --format exits non-zero" test $rc -ne 0
check "unknown --format says so on stderr" grep -q "unknown format 'xml'" "$TEST_TMP/bad.err"
check "unknown --format prints nothing on stdout" test ! -s "$TEST_TMP/bad.out"
"$REPORT" --from yesterdayish > /dev/null 2> "$TEST_TMP/badfrom.err"
check "a --from that is not a date exits non-zero" test $? -ne 0
check "a --from that is not a date says so" grep -q -- '--from/--to' "$TEST_TMP/badfrom.err"
DATABASE_URL=postgresql://nobody@127.0.0.1:1/nothing "$REPORT" --format csv --out "$TEST_TMP/nodb.csv" \
  > /dev/null 2> "$TEST_TMP/nodb.err"
check "a bad DATABASE_URL exits non-zero" test $? -ne 0
check "a bad DATABASE_URL says it cannot connect" grep -q 'cannot connect' "$TEST_TMP/nodb.err"
check "a failed report leaves no --out file" test ! -e "$TEST_TMP/nodb.csv"
check "--help exits 0 and describes --format" bash -c "'$REPORT' --help | grep -q -- '--format'"
test_done
