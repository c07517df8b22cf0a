#!/usr/bin/env bash
# The soak, short. First scripts/slope on made-up series: it fits the slope stated, leaves the
# warm-up out, fails a steady growth of 2.6 kB/s and passes noise and a single step. Then
# `scripts/bench soak` runs 3 minutes of a mixed load (placements, declines, out-of-stock,
# duplicates, cancellations, dead letters replayed) at 50 orders/s, sampled every 10 s: every
# series (each process's RSS and descriptors, connections, table sizes, queues, the broker's
# memory) stays within its bound after a minute's warm-up, and the invariants hold. A process
# whose memory grows 1.1 kB/s or more fails it (128 kB over the 2 minutes fitted): rabbitmq-c's
# frame pool left unrecycled on the confirm path (lib/broker.c, broker_release) is 1.6-2.6 kB/s
# at this rate (BENCHMARKS.md, "Soak").
# The bench uses its own database and vhost (orderpipe_soaktest, soaktest) on the dev stack.
source "$(dirname "$0")/lib.sh"
S=$ROOT/scripts/slope
jqe() { jq -e "$@" > /dev/null; }

# --- the fit, on made-up series -------------------------------------------------------------
# t = 0..180 s every 10 s; a deterministic jitter of +-20 (kB), as RSS samples have.
awk 'BEGIN {
  for (t = 0; t <= 180; t += 10) {
    j = ((t * 7919) % 41) - 20
    printf "%d line %d\n", t, 1000 + 2 * t
    printf "%d rss_kb.leaky %d\n", t, 13300 + 2.6 * t + j
    printf "%d rss_kb.noisy %d\n", t, 13800 + j
    printf "%d rss_kb.step %d\n", t, 13100 + (t >= 120 ? 200 : 0) + j
    printf "%d rss_kb.warm %d\n", t, (t < 60 ? 12000 + 20 * t : 13200) + j
    printf "%d bytes.order_transitions %d\n", t, 500000 + 50 * 400 * t
    printf "%d fds.x 13\n", t
  }
  print "0 fds.once 13"
}' > "$TEST_TMP/made.samples"
"$S" -v warmup=60 -v rate=50 "$TEST_TMP/made.samples" > "$TEST_TMP/made.json"
cat "$TEST_TMP/made.json"
series() { jq -c --arg s "$1" 'select(.series == $s)' "$TEST_TMP/made.json"; }
check "a straight line's slope is its own (2/s, 172800/day)" \
  jqe '.slope_per_s == 2 and .slope_per_day == 172800 and .n == 13 and .window_s == 120 and .growth == 240' <<< "$(series line)"
check "a growth of 2.6 kB/s (an unrecycled frame pool) fails" jqe '.ok == false' <<< "$(series rss_kb.leaky)"
check "jitter of +-20 kB passes" jqe '.ok == true' <<< "$(series rss_kb.noisy)"
check "a single step of 200 kB passes" jqe '.ok == true and .growth > 128' <<< "$(series rss_kb.step)"
check "the warm-up is left out" jqe '.ok == true and .n == 13' <<< "$(series rss_kb.warm)"
check "the order history is bounded per order (400 B < 1 kB)" \
  jqe '.ok == true and .fitted_per_order == 400' <<< "$(series bytes.order_transitions)"
check "a flat series passes" jqe '.ok == true and .slope_per_s == 0' <<< "$(series fds.x)"
check "a series without enough samples fails" jqe '.ok == false and .slope_per_s == null' <<< "$(series fds.once)"

# --- 3 minutes of load --------------------------------------------------------------------------
port=$(free_base 24000 28000 4 4)
# The intake's backpressure watcher asks the broker every work queue's depth ten times as often
# as by default: each reply is a frame decoded on the RPC path, so a pool that is not recycled
# there grows by kilobytes a second (1.8-1.9 kB/s with two dozen processes queueing for two
# cores), well past the bound. The confirms alone do not show it reliably: on a busy machine
# the broker acknowledges many publishes in one frame, and the intake grew only 0.6 kB/s.
INTAKE_BACKPRESSURE_INTERVAL_MS=50 \
ORDERPIPE_INTAKE_PORT=$port INTAKE_LISTEN=127.0.0.1:$port BENCH_NAME=soaktest \
  "$ROOT/scripts/bench" soak --minutes 3 --interval 10 --warmup 60 --rate 50 \
  --samples "$TEST_TMP/soak.samples" > "$TEST_TMP/soak.out" 2> "$TEST_TMP/soak.err"
check_eq "the soak exits 0" 0 "$?"
tail -1 "$TEST_TMP/soak.out" > "$TEST_TMP/soak.json"
j=$TEST_TMP/soak.json
jq -c '.series | to_entries[] | {series: .key, n: .value.n, growth: .value.growth,
  halves: .value.slope_halves, per_order: .value.fitted_per_order, ok: .value.ok}' "$j"
jq -c 'del(.series)' "$j"
check "it ends in one JSON line of kind soak" jqe '.bench == "soak" and .minutes == 3 and .rate == 50' "$j"
check "its invariants hold" jqe '(.invariants | length) == 7 and all(.invariants[]; .ok)' "$j"
check "orders were accepted throughout (at least 80 % of 9000)" jqe '.http.accepted >= 7200' "$j"
check "orders were cancelled" jqe '.cancels["202"] > 0' "$j"
check "dead letters were made and replayed" jqe '.dead_letters_injected == 3 and .replays > 0' "$j"
for p in intake.1 reservation.1 payment.1 notification.1 compensation.1; do
  check "$p: RSS and descriptors sampled after the warm-up" \
    jqe --arg p "$p" '.series["rss_kb." + $p].n >= 10 and .series["fds." + $p].n >= 10' "$j"
done
check "connections, tables, queues and the broker's memory are sampled" jqe '.series |
  has("pg_connections") and has("broker.connections") and has("bytes.outbox") and has("bytes.inbox")
  and has("bytes.order_transitions") and has("bytes.idempotency_keys") and has("broker.queued")
  and has("broker.dead_letters") and has("broker.mem_bytes") and has("broker.client_mem_bytes")' "$j"
if [ -e "$ROOT/bin/.flavour-build-san" ]; then
  # ASan holds freed memory in its quarantine and grows its shadow and stack depot as it goes:
  # resident memory climbs by design there. Everything else is judged as usual.
  ok "sanitizer build: resident memory is not judged"
  check "every other series stayed within its bound (failed: $(jq -c .failed "$j"))" \
    jqe '[.failed[] | select(startswith("rss_kb.") | not)] | length == 0' "$j"
  check "the invariants hold" jqe 'all(.invariants[]; .ok)' "$j"
else
  check "every process's RSS stayed flat" jqe '[.series | to_entries[] | select(.key | startswith("rss_kb.")) | .value.ok] | length >= 9 and all' "$j"
  check "every series stayed within its bound (failed: $(jq -c .failed "$j"))" jqe '.flat == true and .ok == true' "$j"
fi
test_done
