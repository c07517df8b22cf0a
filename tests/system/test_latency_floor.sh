#!/usr/bin/env bash
# orderpipe-latency-floor, the benchmarks' reference for latency: it runs the saga's durable steps
# (three quorum-queue hops, four commits) for a few orders against the real servers, prints its
# figures as one JSON line, consumes every message it publishes, leaves no table behind, skips a
# stale message a crashed run left in its queue, and refuses bad arguments and missing servers.
source "$(dirname "$0")/lib.sh"

orderpipe-latency-floor --orders 20 > "$TEST_TMP/floor.json" 2> "$TEST_TMP/floor.err"
check_eq "a run of 20 orders exits 0" 0 "$?"
f=$TEST_TMP/floor.json
check_eq "it measured 20 chains" 20 "$(jq .orders "$f")"
check_eq "of 3 hops and 4 commits each" "3 4" "$(jq -r '"\(.hops) \(.commits)"' "$f")"
check "its percentiles are positive and ordered (p50 <= p95 <= p99 <= max)" \
  jq -e '.chain_ms | .p50 > 0 and .p50 <= .p95 and .p95 <= .p99 and .p99 <= .max' "$f"
check "a chain's median is at least half of three median hops, and hops and commits take time" \
  jq -e '.chain_ms.p50 >= 3 * .hop_ms.p50 * 0.5 and .hop_ms.p50 > 0 and .commit_ms.p50 > 0' "$f"
check_eq "every message it published was consumed" 0 "$(queue_messages orderpipe.latency-floor)"
check_eq "its probe table is dropped" "" "$(sql "select to_regclass('latency_floor_probe')")"

# A message an interrupted run left behind carries another id: acked and skipped.
orderpipe-amqp-probe publish orderpipe.latency-floor stale --exchange '' --message-id stale-1 >/dev/null
check_eq "a stale message waits in the queue" 1 "$(queue_messages orderpipe.latency-floor)"
check "a run with a stale message in its queue succeeds" orderpipe-latency-floor --orders 3
check_eq "and takes the stale message out" 0 "$(queue_messages orderpipe.latency-floor)"

out=$TEST_TMP/out
orderpipe-latency-floor --help > "$out" 2>&1
check_eq "--help exits 0" 0 "$?"
check "--help names the environment it needs" grep -q "DATABASE_URL" "$out"
orderpipe-latency-floor --orders 3 extra > "$out" 2>&1
check_eq "an extra argument is refused with status 2" 2 "$?"
check "and named" grep -q "unexpected argument 'extra'" "$out"
AMQP_URL=amqp://guest:guest@127.0.0.1:1/ orderpipe-latency-floor --orders 1 > "$out" 2>&1
check_eq "a broker that does not answer: status 1" 1 "$?"
check "with the publisher's connection error" grep -q "latency-floor: publisher: " "$out"
orderpipe-latency-floor --orders 0 > "$out" 2>&1
check_eq "--orders 0 is refused with status 2" 2 "$?"
check "and says so" grep -q "bad arguments" "$out"
DATABASE_URL= orderpipe-latency-floor --orders 1 > "$out" 2>&1
check_eq "no DATABASE_URL: status 2" 2 "$?"
check "and says which variables it needs" grep -q "AMQP_URL and DATABASE_URL are required" "$out"
DATABASE_URL=postgresql://127.0.0.1:1/none orderpipe-latency-floor --orders 1 > "$out" 2>&1
check_eq "a database that does not answer: status 1" 1 "$?"
check "with the connection error" grep -q "latency-floor: .*127.0.0.1" "$out"
check_eq "and its probe table is not left behind" "" "$(sql "select to_regclass('latency_floor_probe')")"
check_eq "and nothing published meanwhile" 0 "$(queue_messages orderpipe.latency-floor)"
test_done
