# Shared helpers for system tests (sourced). The harness (tests/run) has exported DATABASE_URL,
# AMQP_URL, RABBITMQ_MGMT_URL, RABBITMQ_VHOST and TEST_TMP for this test alone.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PATH="$ROOT/bin:${ORDERPIPE_BUILD_DIR:-$ROOT/build}/tests:$PATH"
TEST_TMP=${TEST_TMP:-$(mktemp -d /tmp/orderpipe-test.XXXXXX)}
_test_failures=0
_test_pids=()

ok()     { echo "ok - $*"; }
not_ok() { echo "not ok - $*"; _test_failures=$((_test_failures + 1)); }

# check "description" command...   -> ok/not ok by the command's exit status
check() { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }

# check_eq "description" expected actual
check_eq() {
  if [ "$2" == "$3" ]; then ok "$1"; else not_ok "$1 (expected '$2', got '$3')"; fi
}

# wait_for SECONDS command...  -> 0 once the command succeeds, 1 if it never did. SECONDS is a
# bound, not a guess, and never under 60: on a busy machine a program's start alone can take tens
# of seconds, and the bound is only reached when the condition never comes.
wait_for() {
  local limit=$(($1 < 60 ? 60 : $1)); shift
  local end=$((SECONDS + limit))
  while [ $SECONDS -lt $end ]; do "$@" && return 0; sleep 0.2; done
  "$@"
}

sql() { psql -X -q -tA -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "$1"; }

source "$ROOT/scripts/lib/mgmt.sh"

# Messages ready in a queue of this test's vhost, asked of the broker itself (the management
# API's figures lag by seconds).
queue_messages() {
  "$ROOT/bin/orderpipe-amqp-probe" depth "$1" 2>/dev/null || echo -1
}

# queue_has QUEUE N: QUEUE holds exactly N ready messages (a condition for wait_for).
queue_has() { [ "$(queue_messages "$1")" = "$2" ]; }

# cloud_event TYPE ID ORDERID DATA_JSON: a CloudEvent (structured mode), for a test that crafts
# the messages it publishes.
cloud_event() {
  jq -cn --arg t "$1" --arg id "$2" --arg o "$3" --argjson d "$4" \
    '{specversion:"1.0", id:$id, source:"test", type:$t, time:"2026-11-25T10:00:00Z", orderid:$o, data:$d}'
}

# Takes up to N messages off a queue and prints them as a JSON array (payload, properties).
queue_get() { # QUEUE N
  mgmt POST "/queues/$RABBITMQ_VHOST/$1/get" \
    "{\"count\":${2:-1},\"ackmode\":\"ack_requeue_false\",\"encoding\":\"auto\"}"
}

# Starts a program in the background with its stderr in $TEST_TMP/NAME.log; stopped at exit.
# Its pid is left in $bg_pid (call it directly, not in $(...), or the test forgets the process).
start_bg() { # NAME command...
  local name=$1; shift
  "$@" > "$TEST_TMP/$name.out" 2> "$TEST_TMP/$name.log" &
  bg_pid=$!
  _test_pids+=($!)
}

stop_all() {
  local p
  for p in "${_test_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${_test_pids[@]}"; do wait "$p" 2>/dev/null; done
  _test_pids=()
}

test_done() {
  stop_all
  [ "$_test_failures" -eq 0 ]
}

# on_exit COMMAND: COMMAND (a shell string, evaluated then) runs when the test exits, however it
# exits (end, exit 1, a failed step, SIGTERM from the harness's timeout). Commands run in reverse
# order of registration, so what was set up last is undone first, and then stop_all. lib.sh owns
# the one EXIT trap; a test registers its cleanup here instead of setting a trap of its own, which
# would replace every cleanup registered before it.
_exit_cmds=()
on_exit() { _exit_cmds+=("$1"); }
_run_exit_cmds() {
  local i
  set +eu # a cleanup that names a variable the test never set must not skip the ones after it
  for ((i = ${#_exit_cmds[@]} - 1; i >= 0; i--)); do eval "${_exit_cmds[i]}"; done
  _exit_cmds=()
  stop_all
}
trap _run_exit_cmds EXIT

# True once the pipeline is idle: no unpublished outbox row, no unsent notification, and every
# queue but the dead-letter queues empty (retry tiers included: a message waiting there is work)
# with nothing delivered and unacknowledged: a worker holding deliveries while it reconnects to
# PostgreSQL has work in hand that no table shows yet.
pipeline_idle() {
  [ "$(sql "select count(*) from outbox where published_at is null")" = 0 ] || return 1
  [ "$(sql "select count(*) from notifications where sent_at is null")" = 0 ] || return 1
  local q queues
  # An API that does not answer lists no queue: that is not idle.
  queues=$(mgmt GET "/queues/$RABBITMQ_VHOST?columns=name,messages_unacknowledged") || return 1
  [ "$(jq '[.[] | select(.name | endswith(".dlq") | not) | .messages_unacknowledged // 0] | add // 0' <<< "$queues")" = 0 ] || return 1
  # Ready counts from the broker itself: the API's lag by seconds.
  for q in $(jq -r '.[].name | select(endswith(".dlq") | not)' <<< "$queues"); do
    [ "$(queue_messages "$q")" = 0 ] || return 1
  done
}

# True once the four work queues are empty with nothing unacknowledged, every outbox row is
# published and every notification sent; unlike pipeline_idle it ignores queues a test made
# itself (a catch-all tap, say).
workers_idle() {
  local q queues
  for q in reservation payment notification compensation; do [ "$(queue_messages $q)" = 0 ] || return 1; done
  queues=$(mgmt GET "/queues/$RABBITMQ_VHOST?columns=name,messages_unacknowledged") || return 1
  [ "$(jq '[.[] | select(.name == "reservation" or .name == "payment" or .name == "notification" or .name == "compensation") | .messages_unacknowledged // 0] | add // 0' <<< "$queues")" = 0 ] || return 1
  [ "$(sql "select count(*) from outbox where published_at is null")" = 0 ] &&
    [ "$(sql "select count(*) from notifications where sent_at is null")" = 0 ]
}

# free_base LOW HIGH STEP SPAN: a random port in [LOW, HIGH) on a multiple of STEP from LOW such
# that it and the SPAN-1 ports after it are not listening, for servers a test starts itself.
free_base() {
  local low=$1 high=$2 step=$3 span=$4 try base p busy used
  used=$(ss -Hltn 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
  for try in $(seq 1 50); do
    base=$((low + (RANDOM % ((high - low) / step)) * step))
    busy=0
    for p in $(seq "$base" $((base + span - 1))); do
      if grep -qx "$p" <<< "$used"; then busy=1; break; fi
    done
    if [ $busy = 0 ]; then echo "$base"; return 0; fi
  done
  echo "$base"
}

# pipeline_env: the environment scripts/pipeline runs this test's programs in — state under
# $TEST_TMP/run, notifications logged to $TEST_TMP/notifications.log, the intake on a free port
# ($intake_port; the 3 ports after it are free too, for the test's own helpers) and no rate limit
# in the way unless the test set one.
pipeline_env() {
  intake_port=$(free_base 20000 24000 4 4)
  export ORDERPIPE_RUN_DIR=$TEST_TMP/run NOTIFY_LOG_FILE=$TEST_TMP/notifications.log
  export INTAKE_LISTEN=127.0.0.1:$intake_port INTAKE_URL=http://127.0.0.1:$intake_port
  export INTAKE_RATE_PER_CLIENT=${INTAKE_RATE_PER_CLIENT:-100000}
  export INTAKE_BURST_PER_CLIENT=${INTAKE_BURST_PER_CLIENT:-100000}
  export INTAKE_RATE_GLOBAL=${INTAKE_RATE_GLOBAL:-100000}
}

# intake_alone CLIENT:KEY ...: the environment of an intake the test starts itself, serving these
# clients only: a free port in $port (the 3 after it are free too), its base URL in $U and
# INTAKE_URL, and its /metrics on the loopback admin listener, the next port.
intake_alone() {
  port=$(free_base 20000 24000 4 4)
  U=http://127.0.0.1:$port
  export INTAKE_LISTEN=127.0.0.1:$port INTAKE_URL=$U METRICS_LISTEN=127.0.0.1:$((port + 1))
  export ORDERPIPE_API_KEYS; ORDERPIPE_API_KEYS=$(IFS=,; echo "$*")
  unset ORDERPIPE_API_KEYS_FILE
}

# place_order SKU KEY: one order of one SKU (500 a unit, paid with tok_ok, notified by e-mail)
# over HTTP, with idempotency key KEY; fails unless the intake accepts it.
place_order() {
  curl -fsS -o /dev/null -X POST "$INTAKE_URL/v1/orders" -H "Authorization: Bearer $ORDERPIPE_API_KEY" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: $2" \
    --data-binary '{"customer_id":"c-1","currency":"EUR","lines":[{"sku":"'"$1"'","quantity":1,"unit_price":500}],"payment":{"token":"tok_ok"},"notify":{"email":"a@example.com"}}'
}

# check_invariants DESCRIPTION: scripts/check-invariants (its report in the test's output) passes.
check_invariants() {
  "$ROOT/scripts/check-invariants" > "$TEST_TMP/inv.txt"
  local rc=$?
  cat "$TEST_TMP/inv.txt"
  check "$1" test $rc = 0
}

# seed_stock SKUS QTY HOT: the catalogue the load generator's --mix expects — SKU-0001 ..
# SKU-<SKUS> with QTY each, the flash-sale SKU HOT-1 with HOT, and SKU-OOS with none.
seed_stock() {
  local i
  for i in $(seq -f '%04g' 1 "$1"); do "$ROOT/scripts/stock" set "SKU-$i" "$2" >/dev/null; done
  "$ROOT/scripts/stock" set HOT-1 "$3" >/dev/null
  "$ROOT/scripts/stock" set SKU-OOS 0 >/dev/null
}

# metrics_port NAME: the port of the /metrics (admin) listener the first NAME process that
# scripts/pipeline started logged at start-up (METRICS_LISTEN defaults to any free port).
metrics_port() {
  grep -ho 'serving /metrics and /healthz on port [0-9]*' "$ORDERPIPE_RUN_DIR/logs/$1.1.log" 2>/dev/null |
    tail -1 | grep -o '[0-9]*$'
}
