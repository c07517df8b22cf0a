#!/usr/bin/env bash
# schemas/asyncapi.yaml and schemas/openapi.yaml: each accepted by its ecosystem's own validator
# (@asyncapi/parser, @redocly/cli lint; pinned in tests/apidocs, installed by scripts/install-deps)
# and refused once broken; and complete: every event type a program publishes or consumes, every
# queue binding, every route and error answer of the intake is in them. What the code does is
# read from the code (publish call sites, SQL, handler tables, lib/topology.c, the intake's route
# table, admin_http's routes, the error replies), never from a list kept here.
source "$(dirname "$0")/lib.sh"
D=$ROOT/tests/apidocs
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1

if [ ! -x "$D/node_modules/.bin/redocly" ] || [ ! -d "$D/node_modules/@asyncapi/parser" ]; then
  not_ok "the validators are installed in tests/apidocs (scripts/install-deps runs npm ci there)"
  exit 1
fi
asyncapi_valid() { (cd "$D" && node validate-asyncapi.js --strict "$1") > "$TEST_TMP/asyncapi.out" 2>&1; }
openapi_valid() {
  (cd "$D" && node_modules/.bin/redocly lint --config redocly.yaml --format=stylish "$1") \
    > "$TEST_TMP/openapi.out" 2>&1
}
refused() { ! "$@"; }
check "schemas/asyncapi.yaml is a valid AsyncAPI document (@asyncapi/parser)" \
  asyncapi_valid "$ROOT/schemas/asyncapi.yaml"
cat "$TEST_TMP/asyncapi.out"
check "schemas/openapi.yaml is a valid OpenAPI document (redocly lint, recommended-strict)" \
  openapi_valid "$ROOT/schemas/openapi.yaml"
cat "$TEST_TMP/openapi.out"

# Broken copies (beside copies of the JSON Schemas they reference) must be refused.
cp -r "$ROOT/schemas" "$TEST_TMP/bad"
sed 's#\./payment\.failed\.json#./payment.nosuch.json#' "$ROOT/schemas/asyncapi.yaml" > "$TEST_TMP/bad/asyncapi.yaml"
check "an AsyncAPI document with a dangling \$ref is refused" refused asyncapi_valid "$TEST_TMP/bad/asyncapi.yaml"
sed '0,/action: send/s//action: publish/' "$ROOT/schemas/asyncapi.yaml" > "$TEST_TMP/bad/asyncapi.yaml"
check "an AsyncAPI document with an unknown operation action is refused" \
  refused asyncapi_valid "$TEST_TMP/bad/asyncapi.yaml"
sed 's#\./order\.request\.json#./order.nosuch.json#' "$ROOT/schemas/openapi.yaml" > "$TEST_TMP/bad/openapi.yaml"
check "an OpenAPI document with a dangling \$ref is refused" refused openapi_valid "$TEST_TMP/bad/openapi.yaml"
sed '0,/responses:/s//answers:/' "$ROOT/schemas/openapi.yaml" > "$TEST_TMP/bad/openapi.yaml"
check "an OpenAPI operation without responses is refused" refused openapi_valid "$TEST_TMP/bad/openapi.yaml"

# The repository documents itself: nothing points to a design document outside it.
outside=$(cd "$ROOT" && grep -rIlE 'DESIGN[.]md|[.][.]/shared/' --exclude-dir=node_modules \
  README.md SECURITY.md BENCHMARKS.md Makefile docs schemas lib producers workers tools sql scripts deploy tests)
check "no file points to a document outside the repository${outside:+ (found in: $(echo $outside))}" test -z "$outside"

(cd "$D" && node facts.js asyncapi "$ROOT/schemas/asyncapi.yaml") > "$TEST_TMP/async.facts"
(cd "$D" && node facts.js openapi "$ROOT/schemas/openapi.yaml") > "$TEST_TMP/open.facts"
has() { grep -qxF "$2" "$1"; }

# --- events: what the code publishes and consumes --------------------------------------------
T='[a-z]+\.[a-z_]+'
C_SRC=$(cd "$ROOT" && find lib producers workers tools -name '*.c')
# Published: the type literal of a publish call (worker_emit*, intake_publish, cloudevent_new), a
# routing key or a type set by name, and the event types SQL functions choose.
published=$(cd "$ROOT" && {
  perl -0777 -ne 'while (/\b(?:worker_emit\w*|intake_publish|cloudevent_new)\s*\([^;]*?"('"$T"')"/g) { print "$1\n" }
                  while (/(?:\.routing_key\s*=|->type,[^;]*?)\s*"('"$T"')"/g) { print "$1\n" }' $C_SRC
  perl -ne 'while (/\x27('"$T"')\x27/g) { print "$1\n" }' sql/*.sql
} | sort -u)
# The work queues and their binding keys, from lib/topology.c's table: "queue key...".
queues=$(perl -ne 'next unless /^\s*\{"([a-z_]+)",\s*\{(.*)\}\}/; my ($q, $k) = ($1, $2);
                   my @k = $k =~ /"([^"]+)"/g; print "$q @k\n"' "$ROOT/lib/topology.c")
# Consumed: the workers' handler tables and the queues' binding keys.
consumed=$( {
  (cd "$ROOT" && perl -0777 -ne 'while (/\.type\s*=\s*"('"$T"')"/g) { print "$1\n" }' $C_SRC)
  cut -d' ' -f2- <<< "$queues" | tr ' ' '\n'
} | sort -u)
echo "published: $(echo $published)"
echo "consumed: $(echo $consumed)"
# The extraction itself must see every event schema, or a check below could pass on nothing.
for f in "$ROOT"/schemas/*.*.json; do
  t=$(basename "$f" .json)
  case $t in order.request | payment.notification) continue ;; esac # request bodies
  check "event schema $t is published or consumed by some program" \
    grep -qxF "$t" <<< "$published"$'\n'"$consumed"
done
for t in $published; do
  check "published $t: a message, a channel and a send operation in asyncapi.yaml" \
    eval 'has "$TEST_TMP/async.facts" "message $t" && has "$TEST_TMP/async.facts" "send $t $t"'
  check "published $t has its data schema schemas/$t.json" test -f "$ROOT/schemas/$t.json"
done
for t in $consumed; do
  check "consumed $t: a message received from some queue in asyncapi.yaml" \
    grep -qE "^receive [a-z]+ ${t//./\\.}\$" "$TEST_TMP/async.facts"
done
# Every queue and its binding keys, as lib/topology.c declares them.
check "lib/topology.c's queue table was read" grep -q '^[a-z_]* [a-z]' <<< "$queues"
while read -r q keys; do
  check "queue $q is a channel of asyncapi.yaml" has "$TEST_TMP/async.facts" "channel $q"
  for k in $keys; do
    check "queue $q carries $k in asyncapi.yaml" has "$TEST_TMP/async.facts" "queue $q $k"
  done
done <<< "$queues"
# And nothing documented that no program knows.
for m in $(sed -n 's/^message //p' "$TEST_TMP/async.facts"); do
  [ "$m" = failed ] && continue
  check "documented event $m is published or consumed by some program" \
    grep -qxF "$m" <<< "$published"$'\n'"$consumed"
done

# --- HTTP: the intake's routes and error answers ---------------------------------------------
routes=$( {
  perl -ne 'print "$1 $2\n" if /\{EVHTTP_REQ_(\w+),\s*"\w+",\s*"(\/[^"]*)"/' "$ROOT/producers/intake/intake_http.c"
  perl -ne 'print "GET $1\n" if /evhttp_set_cb\([^,]+,\s*"(\/[^"]*)"/' "$ROOT/lib/admin_http.c"
} | sort -u)
echo "routes: $(echo $routes)"
check "the intake's route table was read" grep -q '^POST /v1/' <<< "$routes"
check "admin_http's routes were read" grep -q '^GET /metrics$' <<< "$routes"
while read -r m p; do
  check "route $m $p is in openapi.yaml" has "$TEST_TMP/open.facts" "route $m $p"
done <<< "$routes"
while read -r m p; do
  check "documented route $m $p is served" grep -qxF "$m $p" <<< "$routes"
done < <(sed -n 's/^route //p' "$TEST_TMP/open.facts")

# Error answers: "status code" of each reply with a literal status and code in the intake, the
# request checks it runs (order_request), the admin listener, and the fixed 500 body.
errors=$(cd "$ROOT" && {
  perl -0777 -ne 'while (/\b(?:intake_reply_error|order_request_fail|payment_notification_fail)\s*\([^;]*?\b([1-5]\d\d),\s*"([a-z_]+)"/g) { print "$1 $2\n" }' \
    producers/intake/*.c lib/order_request.c lib/payment_notification.c
  perl -0777 -ne 'while (/admin_http_reply\(\s*req,\s*(\d{3}),[^;]*?\\"error\\":\\"([a-z_]+)/g) { print "$1 $2\n" }' lib/admin_http.c
  perl -0777 -ne 'print "500 $1\n" if /define ORDER_REQUEST_INTERNAL_BODY[^\n]*\\\n[^\n]*\\"error\\":\\"([a-z_]+)/' lib/order_request.h
} | sort -u)
echo "errors: $(echo $errors)"
check "the intake's error replies were read" eval '[ "$(wc -l <<< "$errors")" -ge 5 ]'
while read -r s c; do
  check "error $s $c is in openapi.yaml" has "$TEST_TMP/open.facts" "error $s $c"
done <<< "$errors"
test_done
