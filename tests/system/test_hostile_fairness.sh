#!/usr/bin/env bash
# Hostile clients against the intake's shared resources: a client that
# floods must get 429 while another client sending at a modest rate keeps being served, both when
# the flood spends the global rate and when it fills the work queues past the backpressure bound;
# idle connections and requests trickled a byte at a time are closed within the timeout while a
# normal client is served meanwhile.
source "$(dirname "$0")/lib.sh"
KA=key-flood-0123456789abcdef
KB=key-polite-0123456789abcdef
intake_alone "flood:$KA" "polite:$KB"
orderpipe-amqp-probe declare >/dev/null
BODY='{"customer_id":"c","currency":"EUR","lines":[{"sku":"SKU-0001","quantity":1,"unit_price":100}],"payment":{"token":"tok_ok"}}'

# post KEY: one order; prints "status error" and leaves the headers in $TEST_TMP/h.
post() {
  curl -s -D "$TEST_TMP/h" -o "$TEST_TMP/r" -w '%{http_code}' -m 10 -X POST "$U/v1/orders" \
    -H "Authorization: Bearer $1" -H 'Content-Type: application/json' --data-binary "$BODY" > "$TEST_TMP/code"
  echo "$(cat "$TEST_TMP/code") $(jq -r '.error // "-"' "$TEST_TMP/r" 2>/dev/null || echo not-json)"
}
up() { curl -fs "$U/healthz" >/dev/null; }
start_intake() {
  start_bg intake "$ROOT/bin/orderpipe-intake"
  intake_pid=$bg_pid
  check "the intake comes up ($1)" wait_for 20 up
}
stop_intake() { kill -TERM "$intake_pid"; wait "$intake_pid"; }
# polite_while PID: client B posts about 5 orders/s while process PID runs; its answers go to
# $TEST_TMP/polite.codes.
polite_while() {
  : > "$TEST_TMP/polite.codes"
  while kill -0 "$1" 2>/dev/null; do
    post "$KB" >> "$TEST_TMP/polite.codes"
    sleep 0.2
  done
}
# flood NAME RATE: A floods at RATE orders/s until flood_stop (the load generator runs until
# stopped, so the flood outlasts whatever the test does meanwhile, however slow the machine).
flood() {
  orderpipe-loadgen --api-key "$KA" --orders 1000000 --rate "$2" --connections 4 --skus 1 \
    > "$TEST_TMP/$1.json" &
  flood_pid=$! flood_name=$1
}
# flood_stop: ends the flood; its figures are in $TEST_TMP/NAME.json, read by flood_figure.
flood_stop() { kill -TERM "$flood_pid"; wait "$flood_pid"; cat "$TEST_TMP/$flood_name.json"; }
flood_figure() { jq "$1" "$TEST_TMP/$flood_name.json"; }
# polite_during_flood WHAT: B posts 20 orders, about 5 a second, while A floods; then the flood
# stops. B sent all 20 while the flood ran, and every one was accepted.
polite_during_flood() {
  local i
  : > "$TEST_TMP/polite.codes"
  for i in $(seq 1 20); do post "$KB" >> "$TEST_TMP/polite.codes"; sleep 0.2; done
  check "A flooded throughout B's 20 orders" kill -0 "$flood_pid"
  flood_stop
  check_eq "every one of B's orders is accepted $1" "" "$(grep -v '^202 ' "$TEST_TMP/polite.codes" | sort | uniq -c)"
}
refused_by() { # CLIENT: orderpipe_rate_limited_total for it (0 when absent)
  curl -s "http://$METRICS_LISTEN/metrics" | awk -v c="client=\"$1\"" 'index($0, "orderpipe_rate_limited_total{") == 1 && index($0, c) { n = $2 } END { print n + 0 }'
}

# --- 1. one client spends the global rate -----------------------------------------------------
# The global bucket allows 40 orders/s; client A's own limit is far above it, so A alone can spend
# it. A floods at 400/s; B asks about 5/s, under its share (20/s) of the global rate.
export INTAKE_RATE_PER_CLIENT=100000 INTAKE_BURST_PER_CLIENT=100000
export INTAKE_RATE_GLOBAL=40 INTAKE_BURST_GLOBAL=40 INTAKE_MAX_QUEUE_DEPTH=0 INTAKE_MAX_OUTBOX_ROWS=0
start_intake "global rate 40/s"
flood flood1 400
polite_during_flood "while A floods"
a429=$(flood_figure '.status["429"] // 0')
a202=$(flood_figure '.status["202"] // 0')
secs=$(flood_figure '.seconds | ceil')
check "A's flood is refused with 429 ($a429 of $(flood_figure .sent))" test "$a429" -ge 1
check "A got no more than the global rate and burst ($a202 accepted in $secs s)" \
  test "$a202" -le $((40 * (secs + 1) + 40))
# A again, while it floods once more: 429 with the reason and Retry-After. (Asked between two
# floods, the bucket may have refilled by the time the request arrives on a slow machine.)
flood flood1b 0
a_refused() { r=$(post "$KA"); [ "${r%% *}" = 429 ]; }
wait_for 60 a_refused
flood_stop >/dev/null
check_eq "A's next order is refused with the JSON reason" "429 rate_limited" "$r"
check "with Retry-After" grep -qi '^Retry-After: [1-9]' "$TEST_TMP/h"
check "A's refusals are counted for A" test "$(refused_by flood)" -ge "$a429"
check_eq "and none for B" 0 "$(refused_by polite)"
stop_intake
mgmt DELETE "/queues/$RABBITMQ_VHOST/reservation/contents" >/dev/null

# --- 2. one client fills the queues past the backpressure bound --------------------------------
# No worker runs, so every accepted order stays queued. The bound is 100 ready messages; A floods
# at 300/s. Once the bound trips, A (the client filling the queues) is refused while B, asking far
# less, is still served (B adds 20 orders: under twice the bound, where every client is refused).
export INTAKE_RATE_GLOBAL=100000 INTAKE_BURST_GLOBAL=100000
export INTAKE_MAX_QUEUE_DEPTH=100 INTAKE_BACKPRESSURE_INTERVAL_MS=50
start_intake "queue bound 100"
flood flood2 300
overloaded() { [ "$(post "$KA")" = "429 overloaded" ]; }
check "A is refused once the queue passes the bound" wait_for 60 overloaded
check "with Retry-After" grep -qi '^Retry-After: 1' "$TEST_TMP/h"
polite_during_flood "past the bound"
a429=$(flood_figure '.status["429"] // 0')
check "A's flood is refused with 429 ($a429 of $(flood_figure .sent))" test "$a429" -ge 1
q=$(queue_messages reservation)
check "the queue stays under twice the bound ($q)" test "$q" -ge 100 -a "$q" -le 200
check "A's refusals are counted for A" test "$(refused_by flood)" -ge "$a429"
check_eq "and none for B" 0 "$(refused_by polite)"
stop_intake
check_eq "the intake exits 0 on SIGTERM" 0 "$?"

# --- 3. idle and trickling connections ---------------------------------------------------------
# INTAKE_TIMEOUT=2: a connection with nothing arriving for 2 s is closed by libevent; a request
# whose headers and body have not all arrived 2 s after its first byte is cut, however steadily
# it trickles (a byte every 0.5 s would never trip an idle timeout). At most 20 connections:
# past that, the oldest idle ones are closed to make room.
export INTAKE_TIMEOUT=2 INTAKE_MAX_CONNECTIONS=20 INTAKE_MAX_QUEUE_DEPTH=0
export PAYMENT_CHANNEL_SECRETS=card=whsec-fairness
start_intake "timeout 2 s, 20 connections"
# slow MODE COUNT: COUNT connections that each hold the intake in their way (idle: send nothing;
# header: a request line then its headers a byte every 0.5 s; body: whole headers then a body of
# 500 bytes a byte every 0.5 s; notify-body: the same to the payment notification endpoint, which
# no API key guards) for up to 15 s; prints, per connection, the seconds until the
# intake closed it, or "open".
cat > "$TEST_TMP/slow.py" <<'PY'
import select, socket, sys, threading, time
host, port, mode, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
path = b"/v1/payment-notifications/card" if mode.startswith("notify") else b"/v1/orders"
head = b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
if mode == "header":
    first, rest = b"POST /v1/orders HTTP/1.1\r\n", b"X-Slow: " + b"a" * 100
elif mode in ("body", "notify-body"):
    first, rest = head + b"Content-Length: 500\r\n\r\n", b"{" * 500
else:
    first, rest = b"", b""
results = [None] * count
def one(i):
    s = socket.create_connection((host, port))
    t0 = time.monotonic()
    s.sendall(first)
    sent = 0
    while time.monotonic() - t0 < 15:
        r, _, _ = select.select([s], [], [], 0.5)
        try:
            if r and not s.recv(4096):
                break
            if rest and sent < len(rest):
                s.send(rest[sent:sent + 1])
                sent += 1
        except OSError:
            break
    else:
        results[i] = "open"
        return
    results[i] = "%.1f" % (time.monotonic() - t0)
threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
for t in threads: t.start()
for t in threads: t.join()
print("\n".join(results))
PY
slow() { python3 "$TEST_TMP/slow.py" 127.0.0.1 "$port" "$1" "$2" > "$TEST_TMP/slow.$1"; }
# served_while PID: B's orders while PID runs, into $TEST_TMP/polite.codes (at least 3 of them).
served_while() {
  polite_while "$1"
  while [ "$(wc -l < "$TEST_TMP/polite.codes")" -lt 3 ]; do post "$KB" >> "$TEST_TMP/polite.codes"; done
}
connected() { [ "$(ss -Htn state established "( sport = :$port )" | wc -l)" -ge "$1" ]; }
# within FILE: every connection was closed, and within 6 s (the timeout, 2 s, and room for a
# busy machine; a connection never closed would stay open the whole 15 s).
within() { [ -s "$1" ] && awk '$1 == "open" || $1 > 6 { bad = 1 } END { exit bad }' "$1"; }
for mode in idle header body notify-body; do
  n=30; [ $mode = idle ] || n=10
  slow $mode $n & slow_pid=$!
  check "the $mode connections are open" wait_for 10 connected 10
  served_while "$slow_pid"
  wait "$slow_pid"
  echo "$mode: $(sort -n "$TEST_TMP/slow.$mode" | uniq -c | tr '\n' ' ')"
  check "every $mode connection is closed within the timeout" within "$TEST_TMP/slow.$mode"
  check_eq "B is served meanwhile ($mode)" "" "$(grep -v '^202 ' "$TEST_TMP/polite.codes" | sort | uniq -c)"
done
check "trickled requests are cut, and the log says why" \
  grep -q "its request did not arrive within the timeout" "$TEST_TMP/intake.log"
check "idle connections past the limit make room" \
  grep -q "idle while the intake is at its connection limit" "$TEST_TMP/intake.log"
check_eq "the intake still serves afterwards" "202 -" "$(post "$KB")"
stop_intake
check_eq "the intake exits 0 on SIGTERM" 0 "$?"

test_done
