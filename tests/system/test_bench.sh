#!/usr/bin/env bash
# scripts/bench itself, small: an e2e run of 200 orders and the references end in one JSON line
# each, with the invariants, the CPU each process group used per order (the load generator
# included, though it has exited by the bench's second reading), how busy the cores were, the
# latency floor and the broker's CPU per message. An unknown kind is refused with the usage.
# The bench uses its own database and vhost (orderpipe_bench, bench) on the dev stack. Then the
# report's: a history of 20000 orders, and the report benchmark on it, whose report from the
# rollups must equal the report from the order tables.
source "$(dirname "$0")/lib.sh"
B=$ROOT/scripts/bench

"$B" e2e --orders 200 --procs 1 > "$TEST_TMP/e2e.out" 2> "$TEST_TMP/e2e.err"
check_eq "an e2e run of 200 orders exits 0" 0 "$?"
tail -1 "$TEST_TMP/e2e.out" > "$TEST_TMP/e2e.json"
e=$TEST_TMP/e2e.json
check "it ends in one JSON line of kind e2e" jq -e '.bench == "e2e"' "$e"
check "its invariants hold" jq -e '.ok == true and (.invariants | length) == 7' "$e"
check_eq "all 200 orders completed" 200 "$(jq .throughput.completed "$e")"
check "PostgreSQL, RabbitMQ, the workers and the intake used CPU" \
  jq -e '.cpu.ms_per_order | .postgres > 0 and .rabbitmq > 0 and .reservation > 0 and .payment > 0 and .intake > 0' "$e"
check "the exited load generator is counted" jq -e '.cpu.ms_per_order.loadgen > 0' "$e"
check "the cores were busy some of the time, and no more than all of it" \
  jq -e '.cpu.busy_fraction > 0 and .cpu.busy_fraction <= 1' "$e"
check_eq "the machine's cores are counted" "$(nproc)" "$(jq .cpu.cores "$e")"
check "each worker's peak memory is recorded" jq -e '.rss_kb["reservation.1"] > 0 and .rss_kb["payment.1"] > 0' "$e"

"$B" refs > "$TEST_TMP/refs.out" 2> "$TEST_TMP/refs.err"
check_eq "the references run exits 0" 0 "$?"
tail -1 "$TEST_TMP/refs.out" > "$TEST_TMP/refs.json"
r=$TEST_TMP/refs.json
check "they are ok" jq -e '.bench == "refs" and .ok == true' "$r"
check "with the broker's rates and PostgreSQL's commit rate" \
  jq -e '.broker_publish_confirm.rate > 0 and .broker_consume.rate > 0 and .pg_commits_per_s > 0' "$r"
check "with RabbitMQ's CPU per message" \
  jq -e '.broker_cpu_ms_per_message | .publish_confirm > 0 and .consume_ack > 0' "$r"
check "with the latency floor of 300 chains" \
  jq -e '.latency_floor | .orders == 300 and .chain_ms.p50 > 0 and .chain_ms.p50 <= .chain_ms.p99' "$r"

# The report's benchmark on a small generated history, in a database of its own.
export BENCH_HISTORY_DB=orderpipe_history_test
"$B" history --orders 20000 --days 10 > "$TEST_TMP/history.out" 2> "$TEST_TMP/history.err"
check_eq "a history of 20000 orders is generated" 0 "$?"
h=$TEST_TMP/history.json
tail -1 "$TEST_TMP/history.out" > "$h"
check "it ends in one JSON line of kind history, ok" jq -e '.bench == "history" and .ok == true and .orders == 20000' "$h"
check "with lines, transitions and payments" \
  jq -e '.lines >= .orders and .transitions > 2 * .orders and .payments > .orders / 2' "$h"
hist_url=$(eval "$("$ROOT/scripts/dev-stack" env)"; echo "${DATABASE_URL%/*}/$BENCH_HISTORY_DB")
admin_url=$(eval "$("$ROOT/scripts/dev-stack" env)"; echo "$PG_ADMIN_URL")
check_eq "the orders span the 10 days before today" 10 "$(PGTZ=UTC psql -X -tA "$hist_url" \
  -c "select count(distinct placed_at::date) from orders where placed_at < current_date")"
"$B" report --runs 1 --no-refs > "$TEST_TMP/report.out" 2> "$TEST_TMP/report.err"
check_eq "the report benchmark runs on it" 0 "$?"
tail -1 "$TEST_TMP/report.out" > "$TEST_TMP/report.json"
check "it ends in one JSON line of kind report" jq -e '.bench == "report" and .orders == 20000' "$TEST_TMP/report.json"
check "the report from the rollups equals the report from the order tables" \
  jq -e '.rollups_equal_live == true' "$TEST_TMP/report.json"
check "with the first refresh, the full report, a day's refresh and the live report timed" \
  jq -e '.first_refresh_ms > 0 and .report_full_ms > 0 and .refresh_day_ms > 0 and .report_live_ms > 0' "$TEST_TMP/report.json"
psql -X -q "$admin_url" -c "drop database if exists $BENCH_HISTORY_DB with (force)" > /dev/null
unset BENCH_HISTORY_DB

"$B" bogus > "$TEST_TMP/bogus.out" 2>&1
check_eq "an unknown kind is refused with status 2" 2 "$?"
check "with the usage" grep -q "scripts/bench e2e" "$TEST_TMP/bogus.out"
test_done
