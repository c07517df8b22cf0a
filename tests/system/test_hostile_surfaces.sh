#!/usr/bin/env bash
# Secrets and surfaces: what a client of the public port, a local user or a
# reader of process lists and logs gets. /metrics (client ids, volumes) is only on the intake's
# loopback admin listener; PostgreSQL refuses connections without a password (scram-sha-256, from
# the pgpass file, never in argv, a URL or a log); the intake's role reads no payment token and no
# outbox payload; the files holding secrets are 0600.
source "$(dirname "$0")/lib.sh"

pipeline_env
K=$ORDERPIPE_API_KEY
on_exit '"$ROOT/scripts/pipeline" down >/dev/null 2>&1'
"$ROOT/scripts/stock" set SKU-H1 100 >/dev/null
check "the pipeline starts" "$ROOT/scripts/pipeline" up > "$TEST_TMP/up.txt"
LOGS=$ORDERPIPE_RUN_DIR/logs

# --- /metrics is not on the public port -----------------------------------------------------------
code=$(curl -s -o "$TEST_TMP/pub.json" -w '%{http_code}' -m 5 "$INTAKE_URL/metrics")
check_eq "GET /metrics on the public port is 404" 404 "$code"
check_eq "with the JSON error not_found" not_found "$(jq -r .error "$TEST_TMP/pub.json" 2>/dev/null)"
check "and no metric in it" bash -c "! grep -q orderpipe_ '$TEST_TMP/pub.json'"
check_eq "/healthz stays on the public port" 200 "$(curl -s -o /dev/null -w '%{http_code}' -m 5 "$INTAKE_URL/healthz")"
code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -H "Authorization: Bearer $K" "$INTAKE_URL/metrics")
check_eq "an API key does not open /metrics on the public port either" 404 "$code"

# --- ... but on the admin listener, on loopback ---------------------------------------------------
has_port() { [ -n "$(metrics_port intake)" ]; }
check "the intake logs its metrics port" wait_for 10 has_port
mport=$(metrics_port intake)
check "the metrics port is not the public port" test "$mport" != "${INTAKE_LISTEN##*:}"
bound=$(ss -Hltn "sport = :$mport" 2>/dev/null | awk '{print $4}' | sort -u | tr '\n' ' ')
check_eq "the admin listener is bound to loopback only" "127.0.0.1:$mport " "$bound"
place_order SKU-H1 h-1 || true
curl -fsS -m 5 "http://127.0.0.1:$mport/metrics" > "$TEST_TMP/admin.metrics"
check "GET /metrics on the admin listener works" grep -q '^orderpipe_http_requests_total{route="post_order",status="202"} [1-9]' "$TEST_TMP/admin.metrics"
check_eq "/healthz on the admin listener too" 200 "$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://127.0.0.1:$mport/healthz")"
code=$(curl -s -o "$TEST_TMP/adm404.json" -w '%{http_code}' -m 5 "http://127.0.0.1:$mport/v1/orders")
check_eq "the admin listener serves no API" 404 "$code"
check_eq "(with a JSON error)" not_found "$(jq -r .error "$TEST_TMP/adm404.json" 2>/dev/null)"

# --- PostgreSQL: password authentication ------------------------------------------------------------
check "the dev stack exports a password file" test -n "${PGPASSFILE:-}" -a -f "${PGPASSFILE:-/nonexistent}"
check "DATABASE_URL carries no password" bash -c "! grep -Eq '://[^/@]*:[^/@]*@' <<< '$DATABASE_URL'"
refused_nopass() { # URL: a connection without the password file (nor PGPASSWORD) is refused
  ! PGPASSFILE=/dev/null PGPASSWORD= psql -X -w -tA "$1" -c 'select 1' > "$TEST_TMP/nopass.out" 2>&1 &&
    grep -q 'password' "$TEST_TMP/nopass.out"
}
check "psql as the owner without the password file is refused" refused_nopass "$DATABASE_URL"
check "psql as the superuser postgres without the password file is refused" \
  refused_nopass "${PG_ADMIN_URL:-postgresql://postgres@127.0.0.1/postgres}"
intake_url=$(sed -E "s#^(postgres(ql)?://)[^@/]+@#\\1orderpipe_intake@#" <<< "$DATABASE_URL")
check "a program role without the password file is refused" refused_nopass "$intake_url"
! PGPASSFILE=/dev/null PGPASSWORD=wrong-password psql -X -w -tA "$DATABASE_URL" -c 'select 1' > "$TEST_TMP/wrong.out" 2>&1
check "a wrong password is refused" test $? = 0
check "(password authentication failed)" grep -q 'password authentication failed' "$TEST_TMP/wrong.out"
check_eq "no pg_hba rule trusts anyone: every rule is scram-sha-256" "" \
  "$(sql "select string_agg(distinct auth_method, ',') from pg_hba_file_rules where auth_method <> 'scram-sha-256'")"
check_eq "every login role has a SCRAM password" "" \
  "$(sql "select string_agg(rolname, ',') from pg_authid where rolcanlogin and coalesce(rolpassword, '') not like 'SCRAM-SHA-256\$%'")"

# --- no password in argv, the environment's URLs or the logs ----------------------------------------
secrets=$TEST_TMP/secrets
cut -d: -f5 "$PGPASSFILE" | grep . | sort -u > "$secrets"
cut -d: -f2- "$ORDERPIPE_API_KEYS_FILE" 2>/dev/null | grep . >> "$secrets"
check "there are passwords to look for" test "$(wc -l < "$secrets")" -ge 3
for p in intake reservation payment notification compensation; do
  pid=$(cat "$ORDERPIPE_RUN_DIR/$p.1.pid" 2>/dev/null)
  check "$p runs" kill -0 "${pid:-0}"
  url=$(tr '\0' '\n' < "/proc/${pid:-0}/environ" 2>/dev/null | sed -n 's/^DATABASE_URL=//p')
  check "$p connects as its own role with a URL without a password" \
    grep -Eq "^postgres(ql)?://orderpipe_$p@[^:/]+:[0-9]+/" <<< "$url"
done
ps -eo args > "$TEST_TMP/ps.txt"
check "ps lists the pipeline's programs (the scan sees them)" grep -q 'orderpipe-reservation' "$TEST_TMP/ps.txt"
check "no password or API key in any process's argv (ps -eo args)" bash -c "! grep -qF -f '$secrets' '$TEST_TMP/ps.txt'"
# Wait for the order placed above, then look at every log of the run (and the server's).
recorded() { [ "$(sql "select count(*) from orders where status in ('confirmed','cancelled')")" -ge 1 ]; }
check "an order goes through under the roles" wait_for 60 recorded
srvlog=$(dirname "$PGPASSFILE")/pg/server.log
check "no password or API key in any program's log" bash -c "! grep -rqF -f '$secrets' '$LOGS' '$TEST_TMP/up.txt'"
if [ -r "$srvlog" ]; then
  check "no password in the PostgreSQL server log" bash -c "! grep -qF -f '$secrets' '$srvlog'"
fi

# --- the intake's role reads no payment token and no outbox payload ---------------------------------
as_intake() { psql -X -q -tA -v ON_ERROR_STOP=1 "$intake_url" -c "$1" > "$TEST_TMP/intake_role.out" 2>&1; }
denied() { ! as_intake "$1" && grep -q 'permission denied' "$TEST_TMP/intake_role.out"; }
check "the intake role cannot read outbox.payload" denied "select payload from outbox"
check "the intake role cannot read orders.payment_token" denied "select payment_token from orders"
check "the intake role still reads its backlog count" as_intake "select count(*) from outbox where published_at is null"
id=$(sql "select id from orders limit 1")
code=$(curl -s -o "$TEST_TMP/get.json" -w '%{http_code}' -m 5 -H "Authorization: Bearer $K" "$INTAKE_URL/v1/orders/$id")
check_eq "GET /v1/orders/{id} works under the column privileges" 200 "$code"
check "and shows no payment token" bash -c "! grep -q tok_ '$TEST_TMP/get.json'"

# --- files holding secrets are 0600 -----------------------------------------------------------------
mode() { stat -c %a "$1" 2>/dev/null; }
check_eq "the pgpass file is 0600" 600 "$(mode "$PGPASSFILE")"
check_eq "the API keys file is 0600" 600 "$(mode "$ORDERPIPE_API_KEYS_FILE")"
stack=$(dirname "$PGPASSFILE")
bad=""
while IFS= read -r f; do
  [ "$(mode "$f")" = 600 ] || [ "$(mode "$f")" = 400 ] || bad="$bad $f:$(mode "$f")"
done < <(find "$stack" -maxdepth 3 \( -name '*.key' -o -name '*key.pem' -o -name '*.cookie' -o -name '.erlang.cookie' \) -type f 2>/dev/null)
check_eq "every private key and cookie of the stack is 0600 or 0400" "" "$bad"

test_done
