# Shared steps of the fault tests (sourced by test_chaos.sh and test_cluster.sh, after lib.sh):
# a private stack of the test's own, the pipeline with the http payment provider, a killer that
# SIGKILLs random worker processes, and the settle-and-check at the end.

# chaos_stack_up [--rabbit-nodes N]: a private dev stack on random ports; exports its env.
chaos_stack_up() {
  # Disjoint ranges, free ports: PostgreSQL (3 for a formation), epmd, RabbitMQ (3 nodes x amqp/mgmt/dist), intake.
  export ORDERPIPE_STACK_DIR=$TEST_TMP/stack ORDERPIPE_PG_PORT=$(free_base 24000 25000 4 3)
  export ORDERPIPE_EPMD_PORT=$(free_base 25000 26000 1 1) ORDERPIPE_AMQP_PORT=$(free_base 26000 30000 50 25)
  STACK="$ROOT/scripts/dev-stack"
  on_exit '"$ROOT/scripts/pipeline" down >/dev/null 2>&1; "$STACK" destroy >/dev/null 2>&1'
  if ! "$STACK" up "$@" > "$TEST_TMP/stack.log" 2>&1; then
    cat "$TEST_TMP/stack.log"; not_ok "private stack starts"; exit 1
  fi
  ok "a private stack is up ($*)"
  eval "$("$STACK" env)"
  export RABBITMQ_VHOST=%2F ORDERPIPE_RUN_DIR=$TEST_TMP/run NOTIFY_LOG_FILE=$TEST_TMP/notes.log
  local port; port=$(free_base 30000 32000 2 2)
  export INTAKE_LISTEN=127.0.0.1:$port INTAKE_URL=http://127.0.0.1:$port
  export INTAKE_RATE_PER_CLIENT=100000 INTAKE_BURST_PER_CLIENT=100000 INTAKE_RATE_GLOBAL=100000
  export PAYMENT_PROVIDER=http PAYMENT_URL=http://127.0.0.1:$((port + 1)) PAYMENT_TIMEOUT_MS=500
  # Payments answered pending come back by signed notifications (some lost, some repeated) or by
  # the payment worker's queries; those that never complete are cancelled and voided.
  CHAOS_SECRET=whsec-chaos-$RANDOM$RANDOM
  export PAYMENT_CHANNEL_SECRETS="card=$CHAOS_SECRET" PAYMENT_PENDING_TIMEOUT=15s PAYMENT_QUERY_AFTER=2s
  # Retries spread over half a minute: longer than any fault lasts, short enough to drain after.
  export ORDERPIPE_RETRY_DELAYS=1000,3000,8000,20000
}

# chaos_pipeline_up WORKERS_EACH: stock, the fake provider and the pipeline.
chaos_pipeline_up() {
  CHAOS_EACH=$1
  seed_stock 40 100000 200
  start_bg provider fake-provider "${PAYMENT_URL#http://}" "$TEST_TMP/ledger.jsonl" \
    --notify-url "$INTAKE_URL/v1/payment-notifications/card" --secret "$CHAOS_SECRET"
  provider_up() {
    curl -fsS -X POST "$PAYMENT_URL/_control?pending_percent=15&lose_percent=10&dup_percent=10&notify_delay_ms=500" \
      >/dev/null 2>&1
  }
  wait_for 10 provider_up
  check "the pipeline starts" "$ROOT/scripts/pipeline" up reservation="$1" payment="$1" \
    notification="$1" compensation="$1"
}

# chaos_load ORDERS RATE: starts the load generator in the background ($load_pid).
chaos_load() {
  start_bg load orderpipe-loadgen --orders "$1" --rate "$2" --connections 16 --skus 40 \
    --mix ok=65,oos=4,decline=8,flaky=5,hot=10,dup=3,pending=3,pend_never=2 \
    --accepted "$TEST_TMP/accepted" --idempotency "$TEST_TMP/idem"
  load_pid=$bg_pid
}

# chaos_kill_one: SIGKILLs one random worker process and starts a replacement, as a supervisor
# (systemd's Restart=) would.
CHAOS_KILLS=0
chaos_kill_one() {
  local victims name pid
  mapfile -t victims < <(ls "$ORDERPIPE_RUN_DIR"/{reservation,payment,notification,compensation}.*.pid 2>/dev/null)
  [ ${#victims[@]} -gt 0 ] || return 0
  local f=${victims[RANDOM % ${#victims[@]}]}
  pid=$(cat "$f" 2>/dev/null) || return 0
  name=$(basename "$f"); name=${name%%.*}
  kill -KILL "$pid" 2>/dev/null || return 0
  CHAOS_KILLS=$((CHAOS_KILLS + 1))
  echo "# t=${SECONDS}s SIGKILL $name pid $pid"
  local i
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  "$ROOT/scripts/pipeline" scale "$name=$CHAOS_EACH" >/dev/null
}

# chaos_provider_stall SECONDS: the provider answers after the workers' timeout for a while.
chaos_provider_stall() {
  curl -fsS -X POST "$PAYMENT_URL/_control?stall_ms=1500" >/dev/null
  echo "# t=${SECONDS}s payment provider stalls for $1 s"
  sleep "$1"
  curl -fsS -X POST "$PAYMENT_URL/_control?stall_ms=0" >/dev/null
}

# chaos_settle_and_check LABEL: waits for the load and for every accepted order to end, loads the
# provider's books, and checks every invariant of docs/design.md §3.
chaos_settle_and_check() {
  wait "$load_pid"
  cat "$TEST_TMP/load.out"
  local accepted want
  accepted=$(jq .accepted "$TEST_TMP/load.out")
  want=$(sort -u "$TEST_TMP/accepted" | wc -l)
  check "orders were accepted throughout ($accepted)" test "$accepted" -gt 0
  # Replace whatever the faults left dead, so the backlog can drain.
  "$ROOT/scripts/pipeline" up reservation="$CHAOS_EACH" payment="$CHAOS_EACH" \
    notification="$CHAOS_EACH" compensation="$CHAOS_EACH" >/dev/null
  # Every order recorded, not only the accepted ones: one answered 503 while its publish was in
  # fact confirmed late is in the pipeline too, and ends by its own deadline (RESERVATION_TTL).
  terminal() {
    [ "$(sql "select count(*) from orders where status in ('confirmed','cancelled')")" -ge "$want" ] &&
      [ "$(sql "select count(*) from orders where status not in ('confirmed','cancelled')")" = 0 ]
  }
  check "all $want accepted orders, and any other recorded, reach a terminal state" wait_for 300 terminal
  check "the pipeline goes idle, retry queues included" wait_for 180 pipeline_idle
  provider_settled() { [ "$(curl -fsS -m 5 "$PAYMENT_URL/_stats" | jq .charges.pending)" = 0 ]; }
  check "no charge is left pending at the provider" wait_for 120 provider_settled
  check "payments were answered pending and completed by notification or query" \
    test "$(sql "select count(*) from payments where provider_pending_at is not null and status = 'succeeded'")" -gt 0
  check "payments that never completed were cancelled payment_timeout" \
    test "$(sql "select count(*) from orders where cancel_reason = 'payment_timeout'")" -gt 0
  sql "truncate sim_provider_ledger"
  jq -r '[.key, .order_id, .kind, .amount] | @csv' "$TEST_TMP/ledger.jsonl" > "$TEST_TMP/ledger.csv"
  psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" \
    -c "\\copy sim_provider_ledger(key, order_id, kind, amount) from '$TEST_TMP/ledger.csv' csv"
  "$ROOT/scripts/check-invariants" --accepted "$TEST_TMP/accepted" --idempotency "$TEST_TMP/idem" \
    > "$TEST_TMP/inv.txt" 2>&1
  local rc=$?
  cat "$TEST_TMP/inv.txt"
  check "every invariant of docs/design.md §3 holds after $1" test $rc = 0
  echo "# figures: orders_sent=$(jq .sent "$TEST_TMP/load.out") accepted=$accepted distinct=$want" \
       "kills=$CHAOS_KILLS duration=${SECONDS}s invariants=$([ $rc = 0 ] && echo hold || echo VIOLATED)"
}
