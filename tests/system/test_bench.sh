#!/usr/bin/env bash
# scripts/bench itself, small: an e2e run of 200 orders and the references end in one JSON line
# each, with the invariants, the CPU each process group used per order (the load generator
# included, though it has exited by the bench's second reading), how busy the cores were, the
# latency floor and the broker's CPU per message. An unknown kind is refused with the usage.
# The bench uses its own database and vhost (orderpipe_bench, bench) on the dev stack.
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

"$B" bogus > "$TEST_TMP/bogus.out" 2>&1
check_eq "an unknown kind is refused with status 2" 2 "$?"
check "with the usage" grep -q "scripts/bench e2e" "$TEST_TMP/bogus.out"
test_done
