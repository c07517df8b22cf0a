#!/usr/bin/env bash
# Egress is an allow-list: a client must not aim the notification worker's signed POSTs anywhere
# (loopback, private ranges, the cloud metadata address). A notify.webhook_url must name one of
# the client's own webhook hosts (ORDERPIPE_WEBHOOK_HOSTS), https unless the intake allows http,
# or the order is refused 400 webhook_not_allowed with nothing published; and at delivery a host that resolves to an internal address outside
# NOTIFY_WEBHOOK_ALLOW_CIDRS is refused and dead-lettered with the reason, while an allowed
# webhook is still delivered, signed. The notification log file is created 0600.
source "$(dirname "$0")/lib.sh"
pipeline_env
hook_port=$((intake_port + 1)) strict_port=$((intake_port + 2))
KEY_A=shop-a-key-$RANDOM-0123456789abcdef KEY_B=shop-b-key-$RANDOM-0123456789abcdef
export ORDERPIPE_API_KEYS="shop-a:$KEY_A,shop-b:$KEY_B"
# shop-a may use the receiver's address and `localhost`; shop-b lists the metadata address by
# mistake: the door lets it through, delivery must not.
export ORDERPIPE_WEBHOOK_HOSTS="shop-a=127.0.0.2,localhost,hooks.example.com;shop-b=b-hooks.example.net,169.254.169.254,[::1]"
export ORDERPIPE_WEBHOOK_ALLOW_HTTP=1
# The receivers listen on 127.0.0.2 and ::1, the internal addresses the worker may call.
export NOTIFY_CHANNEL=webhook NOTIFY_WEBHOOK_URL=http://127.0.0.2:$hook_port/default
export NOTIFY_WEBHOOK_SECRET=egress-secret-$RANDOM NOTIFY_TIMEOUT_MS=3000
export NOTIFY_WEBHOOK_ALLOW_CIDRS=127.0.0.2/32,::1/128 NOTIFY_WEBHOOK_ALLOW_HTTP=1
export ORDERPIPE_RETRY_DELAYS=200,400,800,1600
P=$ROOT/scripts/pipeline
on_exit '"$P" down >/dev/null 2>&1'
"$ROOT/scripts/stock" set SKU-EG 100 >/dev/null

check "pipeline starts without its reservation worker (placed orders stay queued)" "$P" up reservation=0
order_body() { # WEBHOOK_URL
  jq -cn --arg u "$1" '{customer_id:"c-1",currency:"EUR",lines:[{sku:"SKU-EG",quantity:1,unit_price:500}],
                        payment:{token:"tok_ok"},notify:{email:"a@example.com",webhook_url:$u}}'
}
post() { # BASE KEY WEBHOOK_URL -> status; body in $TEST_TMP/body
  curl -sS -m 10 -o "$TEST_TMP/body" -w '%{http_code}' -X POST "$1/v1/orders" \
    -H "Authorization: Bearer $2" -H 'Content-Type: application/json' \
    -H "Idempotency-Key: egress-$RANDOM-$RANDOM" --data-binary "$(order_body "$3")"
}
n_refused=0
refused() { # DESCRIPTION BASE KEY WEBHOOK_URL MESSAGE_PART
  local status
  status=$(post "$2" "$3" "$4")
  check_eq "$1: 400" 400 "$status"
  check_eq "$1: webhook_not_allowed at \$.notify.webhook_url" "webhook_not_allowed \$.notify.webhook_url" \
    "$(jq -r '.error + " " + .field' "$TEST_TMP/body" 2>/dev/null)"
  check "$1: the message says why ($5)" grep -qF "$5" "$TEST_TMP/body"
  n_refused=$((n_refused + 1))
}
I=$INTAKE_URL
not_listed="is not in this client's allowed webhook hosts"
refused "loopback" "$I" "$KEY_A" "http://127.0.0.1/" "$not_listed"
refused "private range" "$I" "$KEY_A" "http://10.0.0.1/" "$not_listed"
refused "cloud metadata" "$I" "$KEY_A" "http://169.254.169.254/latest/meta-data" "$not_listed"
refused "IPv6 loopback" "$I" "$KEY_A" "http://[::1]/" "$not_listed"
refused "IPv4-mapped loopback" "$I" "$KEY_A" "http://[::ffff:127.0.0.1]:80/" "$not_listed"
refused "loopback as one number" "$I" "$KEY_A" "http://2130706433/" "not a valid host name"
refused "user and password" "$I" "$KEY_A" "https://user:pass@hooks.example.com/" "user name or password"
refused "an unlisted host" "$I" "$KEY_A" "https://evil.example.org/hook" "$not_listed"
refused "a listed host as a prefix" "$I" "$KEY_A" "https://hooks.example.com.evil.example.org/" "$not_listed"
refused "a backslash trick" "$I" "$KEY_A" 'https://evil.example.org\@hooks.example.com/' "backslash"
refused "a host of another client's list" "$I" "$KEY_A" "https://b-hooks.example.net/hook" "$not_listed"
refused "and the other way round" "$I" "$KEY_B" "https://hooks.example.com/hook" "$not_listed"
refused "a client with no webhook hosts" "$I" "$ORDERPIPE_API_KEY" "https://hooks.example.com/" "may not use webhooks"

# An intake that allows https only (the default).
ORDERPIPE_WEBHOOK_ALLOW_HTTP=0 INTAKE_LISTEN=127.0.0.1:$strict_port start_bg strict orderpipe-intake
strict_up() { curl -fsS -m 1 "http://127.0.0.1:$strict_port/healthz" >/dev/null 2>&1; }
check "an https-only intake starts" wait_for 60 strict_up
refused "http when only https is allowed" "http://127.0.0.1:$strict_port" "$KEY_A" "http://hooks.example.com/" "must use https"

# The bulk import applies the same rule.
printf '%s\n' "$(jq -cn --argjson o "$(order_body http://127.0.0.1/)" '{client_id:"shop-a",idempotency_key:"imp-1",order:$o}')" \
  > "$TEST_TMP/import.ndjson"
orderpipe-enqueue "$TEST_TMP/import.ndjson" > "$TEST_TMP/import.out" 2> "$TEST_TMP/import.err"
check_eq "enqueue: the line is rejected (exit 1)" 1 "$?"
check_eq "enqueue: as webhook_not_allowed at \$.notify.webhook_url" "webhook_not_allowed \$.notify.webhook_url 0" \
  "$(jq -r '.rejected[0].error + " " + .rejected[0].field + " " + (.accepted | tostring)' "$TEST_TMP/import.out")"

check_eq "nothing of the $n_refused refused orders was published" 0 "$(queue_messages reservation)"
check_eq "the intake is still serving" 200 "$(curl -s -o /dev/null -w '%{http_code}' -m 5 "$I/healthz")"

# Allowed at the door: the receiver's address, `localhost` and shop-b's metadata address.
start_bg receiver webhook-receiver "127.0.0.2:$hook_port" "$NOTIFY_WEBHOOK_SECRET" "$TEST_TMP/hooks.jsonl"
# The IPv6 case needs an IPv6 loopback (a container may have none).
v6=0; grep -qi '^0\{31\}1 ' /proc/net/if_inet6 2>/dev/null && v6=1
[ $v6 = 1 ] && start_bg receiver6 webhook-receiver "::1:$hook_port" "$NOTIFY_WEBHOOK_SECRET" "$TEST_TMP/hooks6.jsonl"
accepted() { # DESCRIPTION KEY WEBHOOK_URL -> order id in $order_id
  check_eq "$1: 202" 202 "$(post "$I" "$2" "$3")"
  order_id=$(jq -r .order_id "$TEST_TMP/body")
}
accepted "an allowed webhook" "$KEY_A" "http://127.0.0.2:$hook_port/hooks/a"
good=$order_id
accepted "a listed name that resolves to loopback" "$KEY_A" "http://localhost:$hook_port/hooks/a"
local_order=$order_id
accepted "a listed metadata address" "$KEY_B" "http://169.254.169.254/latest/meta-data"
meta_order=$order_id
if [ $v6 = 1 ]; then
  accepted "an allowed IPv6 literal" "$KEY_B" "http://[::1]:$hook_port/hooks/v6"
  v6_order=$order_id
else
  echo "ok - # skip an allowed IPv6 literal: no IPv6 loopback here"
fi
check_eq "the $((3 + v6)) accepted orders were published" $((3 + v6)) "$(queue_messages reservation)"

check "the reservation worker starts" "$P" scale reservation=1
delivered() { grep -q "\"order_id\":\"$good\"" "$TEST_TMP/hooks.jsonl" 2>/dev/null; }
check "the allowed webhook is delivered, signed (the receiver records only good signatures)" wait_for 90 delivered
two_dead() { [ "$(queue_messages notification.dlq)" = 2 ]; }
check "the two internal destinations are dead-lettered" wait_for 90 two_dead
delivered6() { grep -q "\"order_id\":\"$v6_order\"" "$TEST_TMP/hooks6.jsonl" 2>/dev/null; }
[ $v6 = 1 ] && check "the allowed IPv6 literal is delivered, signed" wait_for 30 delivered6
queue_get notification.dlq 2 > "$TEST_TMP/dlq.json"
reason_of() { # ORDER_ID -> x-last-error of its dead letter
  jq -r --arg id "$1" '.[] | select(.payload | fromjson | .data.order_id == $id) | .properties.headers["x-last-error"]' "$TEST_TMP/dlq.json"
}
check "localhost: dead-lettered because it resolves to a loopback address" \
  grep -qE "webhook host localhost resolves to 127\.0\.0\.1 \(loopback\), which is not allowed" <<< "$(reason_of "$local_order")"
check "metadata: dead-lettered as the metadata address" \
  grep -qF "webhook host 169.254.169.254 resolves to 169.254.169.254 (metadata), which is not allowed" <<< "$(reason_of "$meta_order")"
check_eq "both with the handler's refusal as reason" "handler_refused handler_refused" \
  "$(jq -r '[.[].properties.headers["x-dead-reason"]] | join(" ")' "$TEST_TMP/dlq.json")"
check "the refusal is logged with the order id" \
  grep -q "\"order_id\":\"$local_order\".*resolves to" <(cat "$ORDERPIPE_RUN_DIR"/logs/notification.*.log)
check_eq "the receiver saw only the allowed order" "$good" "$(jq -r .order_id "$TEST_TMP/hooks.jsonl" | sort -u | tr '\n' ' ' | xargs)"
check_eq "the intake is still serving afterwards" 202 "$(post "$I" "$KEY_A" "http://127.0.0.2:$hook_port/hooks/b")"

# The notification log holds customers' personal data: created readable by its owner only.
rm -f "$TEST_TMP/notes.log"
NOTIFY_CHANNEL=log NOTIFY_LOG_FILE=$TEST_TMP/notes.log start_bg logworker orderpipe-notification
"$P" scale notification=0 >/dev/null
place_order SKU-EG "egress-log-$RANDOM"
logged() { [ -s "$TEST_TMP/notes.log" ]; }
check "a notification is written to the log channel" wait_for 60 logged
check_eq "the notification log is created 0600" 600 "$(stat -c %a "$TEST_TMP/notes.log")"
# Bad configuration is refused at start, named.
NOTIFY_WEBHOOK_ALLOW_CIDRS=10.0.0.0/33 timeout 10 orderpipe-notification > "$TEST_TMP/cfg.out" 2>&1
check_eq "a malformed NOTIFY_WEBHOOK_ALLOW_CIDRS is refused with status 2" 2 "$?"
check "and named" grep -q "NOTIFY_WEBHOOK_ALLOW_CIDRS: '10.0.0.0/33' is not an address or CIDR" "$TEST_TMP/cfg.out"
ORDERPIPE_WEBHOOK_HOSTS="shop-a=http://x.example" INTAKE_LISTEN=127.0.0.1:$strict_port \
  timeout 10 orderpipe-intake > "$TEST_TMP/cfg.out" 2>&1
check_eq "a malformed ORDERPIPE_WEBHOOK_HOSTS stops the intake with status 2" 2 "$?"
check "and says which host" grep -q "webhook host 'http://x.example' of client 'shop-a'" "$TEST_TMP/cfg.out"
test_done
