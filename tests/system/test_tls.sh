#!/usr/bin/env bash
# The whole saga over TLS: the intake and every worker reach RabbitMQ through
# amqps:// (the dev stack's TLS listener, verified against its private CA) and PostgreSQL with
# sslmode=verify-full. Then the broker and the database are asked whether our connections really
# are encrypted, and the refusals: a CA that did not sign the server, a name the certificate does
# not carry, amqps:// to a plain port (never a fallback to plain TCP), a database CA that did not
# sign the server; and no password in what a program prints about a URL it cannot use.
source "$(dirname "$0")/lib.sh"

[ -n "${AMQPS_URL:-}" ] && [ -n "${AMQP_CACERT:-}" ] || eval "$("$ROOT/scripts/dev-stack" env)"
CA=$AMQP_CACERT
unset AMQP_CACERT AMQP_CERT AMQP_KEY   # each URL below says which CA it trusts
check "the dev stack has a CA" test -s "$CA"

# host:port of the first TLS node, and of the first plain node
tls_hostport=$(sed -E 's#^amqps://[^@]*@([^/,]+).*#\1#' <<< "$AMQPS_URL")
plain_hostport=$(sed -E 's#^amqp://[^@]*@([^/,]+).*#\1#' <<< "$AMQP_URL")
tls_port=${tls_hostport##*:} plain_port=${plain_hostport##*:}
amqps() { # [QUERY-EXTRA] -> this test's vhost over TLS, trusting the stack's CA
  echo "amqps://guest:guest@127.0.0.1:$tls_port/$RABBITMQ_VHOST?cacertfile=$CA${1:+&$1}"
}
PLAIN_DATABASE_URL=$DATABASE_URL
sep='?'; [[ "$DATABASE_URL" == *\?* ]] && sep='&'
export DATABASE_URL="$DATABASE_URL${sep}sslmode=verify-full&sslrootcert=$CA"
export AMQP_URL; AMQP_URL=$(amqps)

check "psql reaches the database with sslmode=verify-full" \
  test "$(sql "select ssl from pg_stat_ssl where pid = pg_backend_pid()")" = t
check "the probe reaches the broker over verified TLS" orderpipe-amqp-probe declare

# --- the saga over TLS --------------------------------------------------------------------------
pipeline_env
"$ROOT/scripts/stock" set SKU-TLS 10 >/dev/null
on_exit '"$ROOT/scripts/pipeline" down >/dev/null 2>&1'
# No payment worker at first: the orders wait, reserved, so the cancel below finds one it can
# cancel (a confirmed order is final for the saga).
check "the pipeline starts with amqps:// and sslmode=verify-full" "$ROOT/scripts/pipeline" up payment=0
healthy() { curl -fs "$INTAKE_URL/healthz" >/dev/null; }
check "the intake is healthy" wait_for 30 healthy

order() { # KEY TOKEN -> order id
  curl -fsS -X POST "$INTAKE_URL/v1/orders" -H "Authorization: Bearer $ORDERPIPE_API_KEY" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: tls-$1" \
    --data-binary '{"customer_id":"c-tls","currency":"EUR","lines":[{"sku":"SKU-TLS","quantity":1,"unit_price":500}],"payment":{"token":"'"$2"'"},"notify":{"email":"a@example.com"}}' |
    jq -r .order_id
}
status_is() { [ "$(sql "select status || ':' || coalesce(cancel_reason, '') from orders where id = '$1'")" = "$2" ]; }

ok1=$(order 1 tok_ok); ok2=$(order 2 tok_ok); declined=$(order 3 tok_decline); to_cancel=$(order 4 tok_ok)
check "four orders are accepted" test -n "$ok1" -a -n "$ok2" -a -n "$declined" -a -n "$to_cancel" -a "$ok1" != null
check "the order to cancel is reserved" wait_for 60 status_is "$to_cancel" "reserved:"
check_eq "the cancel request is accepted" 202 "$(curl -s -o /dev/null -w '%{http_code}' -X POST \
  -H "Authorization: Bearer $ORDERPIPE_API_KEY" "$INTAKE_URL/v1/orders/$to_cancel/cancel")"
check "the customer's cancel cancels it" wait_for 60 status_is "$to_cancel" "cancelled:customer_cancelled"
check "the payment worker starts" "$ROOT/scripts/pipeline" scale payment=1
check "an order is confirmed" wait_for 60 status_is "$ok1" "confirmed:"
check "another order is confirmed" wait_for 60 status_is "$ok2" "confirmed:"
check "a declined payment cancels its order" wait_for 60 status_is "$declined" "cancelled:payment_declined"
notified() { [ "$(sql "select count(*) from notifications where sent_at is not null")" -ge 4 ]; }
check "every order is notified" wait_for 60 notified
check "the pipeline goes idle" wait_for 60 pipeline_idle
check_eq "the cancelled order stays cancelled, never charged" "cancelled:customer_cancelled|0" \
  "$(sql "select o.status || ':' || o.cancel_reason || '|' || count(p.*) filter (where p.status = 'succeeded')
          from orders o left join payments p on p.order_id = o.id where o.id = '$to_cancel'
          group by o.status, o.cancel_reason")"

# --- are the connections really TLS? ------------------------------------------------------------
# The intake and each worker (consumer and publisher) hold connections in this test's vhost.
conns() { # this vhost's connections: the name the program gave, TLS or not, the port
  { mgmt GET "/vhosts/$RABBITMQ_VHOST/connections" 2>/dev/null || echo '[]'; } |
    jq -c 'map({name: (.client_properties.connection_name // .user_provided_name // .name), ssl, port})'
}
# The management API lists a new connection some seconds after it opened: wait until every
# program's is there.
all_programs_listed() {
  local c p; c=$(conns)
  for p in intake reservation payment notification compensation; do
    jq -e --arg p "$p" 'any(.[]; .name | test($p))' <<< "$c" >/dev/null || return 1
  done
}
check "the broker lists our connections" wait_for 60 all_programs_listed
conns > "$TEST_TMP/conns.json"
jq -c '.[]' "$TEST_TMP/conns.json"
check_eq "every connection in our vhost is TLS (ssl: true)" 0 "$(jq '[.[] | select(.ssl != true)] | length' "$TEST_TMP/conns.json")"
check_eq "every connection in our vhost came in on the TLS port" 0 \
  "$(jq --argjson p "$tls_port" '[.[] | select(.port != $p)] | length' "$TEST_TMP/conns.json")"
for p in intake reservation payment notification compensation; do
  check "orderpipe-$p is connected to the broker" jq -e --arg p "$p" 'any(.[]; .name | test($p))' "$TEST_TMP/conns.json"
done
backends="select a.application_name, s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid)
           where a.datname = current_database() and a.backend_type = 'client backend'
             and a.pid <> pg_backend_pid() and a.application_name like 'orderpipe-%'"
sql "$backends" | sort > "$TEST_TMP/backends.txt"
cat "$TEST_TMP/backends.txt"
check "the programs hold database connections" test "$(wc -l < "$TEST_TMP/backends.txt")" -ge 5
check_eq "every one of them is TLS (pg_stat_ssl.ssl = t)" 0 "$(grep -vc '|t$' "$TEST_TMP/backends.txt")"
check_invariants "every invariant holds after the saga over TLS"
"$ROOT/scripts/pipeline" down >/dev/null 2>&1
gone() { [ "$(conns | jq 'length')" = 0 ]; }
check "no connection is left in our vhost" wait_for 30 gone

# --- refusals -----------------------------------------------------------------------------------
# Another CA, which signed nothing the servers present.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=some other CA" -keyout "$TEST_TMP/other.key" -out "$TEST_TMP/other.crt" >/dev/null 2>&1
check "a second CA is made" test -s "$TEST_TMP/other.crt"

probe() { # NAME URL -> exit status; stderr in $TEST_TMP/<NAME as a file name>.err
  AMQP_URL=$2 orderpipe-amqp-probe declare > /dev/null 2> "$TEST_TMP/${1//[^a-zA-Z]/_}.err"
}
refused() { # NAME URL PATTERN: the probe fails, says PATTERN, and left no connection behind
  probe "$1" "$2"
  local rc=$? err="$TEST_TMP/${1//[^a-zA-Z]/_}.err"
  cat "$err"
  check "$1: refused" test "$rc" -ne 0
  check "$1: the error says why" grep -q "$3" "$err"
  check "$1: the error names the node" grep -q "127.0.0.1:[0-9]*/$RABBITMQ_VHOST" "$err"
  check "$1: no password in the error" sh -c "! grep -q 'guest@' '$err'"
  check_eq "$1: no connection was opened in our vhost (no plaintext fallback)" 0 "$(conns | jq 'length')"
}
refused "wrong CA" "amqps://guest:guest@127.0.0.1:$tls_port/$RABBITMQ_VHOST?cacertfile=$TEST_TMP/other.crt" \
  "certificate was refused: self-signed certificate in certificate chain"
refused "system store only" "amqps://guest:guest@127.0.0.1:$tls_port/$RABBITMQ_VHOST" "certificate was refused"
refused "name not in the certificate" "$(amqps server_name_indication=mq.not-in-cert.invalid)" \
  "certificate was refused: hostname mismatch.*expected name 'mq.not-in-cert.invalid'"
refused "amqps:// to the plain port" "amqps://guest:guest@127.0.0.1:$plain_port/$RABBITMQ_VHOST?cacertfile=$CA" \
  "handshake failed"
check "the certificate's DNS name is accepted too" probe by-name "amqps://guest:guest@localhost:$tls_port/$RABBITMQ_VHOST?cacertfile=$CA"
check "verify=verify_none connects" probe no-verify "$(amqps verify=verify_none)"
check "... and warns that nothing was verified" grep -q "WITHOUT certificate verification" "$TEST_TMP/no_verify.err"

# A worker started with the wrong CA refuses the broker, and keeps saying why while it retries.
AMQP_URL="amqps://guest:guest@127.0.0.1:$tls_port/$RABBITMQ_VHOST?cacertfile=$TEST_TMP/other.crt" \
  start_bg bad-ca-worker orderpipe-reservation
said() { grep -q "certificate was refused" "$TEST_TMP/bad-ca-worker.log"; }
check "a worker with the wrong CA says the certificate was refused" wait_for 30 said
check_eq "... and holds no connection in our vhost" 0 "$(conns | jq 'length')"
stop_all

# PostgreSQL: a CA that did not sign the server is refused by psql and by our programs (libpq).
bad_db="${PLAIN_DATABASE_URL}${sep}sslmode=verify-full&sslrootcert=$TEST_TMP/other.crt"
check "psql refuses the database with the wrong CA" \
  sh -c "! psql -X -tA '$bad_db' -c 'select 1' 2> '$TEST_TMP/psql.err'"
check "... saying the certificate did not verify" grep -q "certificate verify failed" "$TEST_TMP/psql.err"
DATABASE_URL=$bad_db AMQP_URL=$(amqps) start_bg bad-db-worker orderpipe-reservation
said_db() { grep -q "certificate verify failed" "$TEST_TMP/bad-db-worker.log"; }
check "a worker refuses the database with the wrong CA" wait_for 30 said_db
stop_all

# --- no password in what programs print about an unusable URL -----------------------------------
secret=pw-$RANDOM$RANDOM
for url in "amqps://guest:$secret@127.0.0.1:$tls_port:x/$RABBITMQ_VHOST" \
           "amqp://guest:$secret@127.0.0.1:$plain_port/v?cacertfile=$CA" \
           "amqps://guest:$secret@127.0.0.1:$tls_port/v?cacertfile=$TEST_TMP/none.pem"; do
  AMQP_URL=$url timeout 20 orderpipe-reservation > /dev/null 2> "$TEST_TMP/malformed.err"
  rc=$?
  cat "$TEST_TMP/malformed.err"
  check "an unusable AMQP_URL stops the worker ($(tail -c 40 <<< "${url//$secret/***}"))" test "$rc" -ne 0 -a "$rc" -ne 124
  check "... and its output holds no password" sh -c "! grep -q '$secret' '$TEST_TMP/malformed.err'"
  check "... but shows the masked URL" grep -q "guest:\*\*\*@" "$TEST_TMP/malformed.err"
done
test_done
