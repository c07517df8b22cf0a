#!/usr/bin/env bash
# POST /v1/payment-notifications/{channel} against the real broker: a notification signed with
# the channel's secret -> 200 {"status":"received"} and exactly one payment.notified CloudEvent
# (the right id, source, subject and data); a repeated event_id -> the same message id; every
# refusal (bad, stale, future, another channel's, missing or malformed signature, oversized body,
# wrong content type, invalid JSON, schema violations, a charge key that is not ours, an unknown
# channel) -> its status and error code and nothing published; both secrets of a rotation verify;
# the broker down -> 503; payment.method on POST /v1/orders; the metrics; no secret in the logs.
source "$(dirname "$0")/lib.sh"
K=key-notify-0123456789abcdef
intake_alone "shop:$K"
SEC_OLD=whsec_card_old_5b1f0e SEC_NEW=whsec_card_new_93c2aa SEC_WALLET=whsec_wallet_77d0e1
export PAYMENT_CHANNELS=card=http://127.0.0.1:9,wallet=http://127.0.0.1:9,bank=http://127.0.0.1:9
export PAYMENT_CHANNEL_SECRETS="card=$SEC_OLD,wallet=$SEC_WALLET"
printf '# rotation: the new card secret\ncard=%s\n' "$SEC_NEW" > "$TEST_TMP/secrets"
export PAYMENT_CHANNEL_SECRETS_FILE=$TEST_TMP/secrets
unset PAYMENT_DEFAULT_METHOD PAYMENT_NOTIFICATION_TOLERANCE
start_bg intake "$ROOT/bin/orderpipe-intake"
up() { curl -fs -m 5 "$U/healthz" >/dev/null; }
check "the intake comes up healthy" wait_for 60 up

# Everything published as payment.notified also lands in this queue.
mgmt PUT "/queues/$RABBITMQ_VHOST/notified.tap" '{"durable":false}' >/dev/null
mgmt POST "/bindings/$RABBITMQ_VHOST/e/orderpipe.events/q/notified.tap" '{"routing_key":"payment.notified"}' >/dev/null
check_eq "the tap queue starts empty" 0 "$(queue_messages notified.tap)"

OID=7c1e4f0a-2b3d-4e5f-8a9b-0c1d2e3f4a5b
note() { # EVENT_ID [EXTRA] -> a notification body
  printf '{"event_id":"%s","charge_key":"%s","provider_ref":"ch_42","status":"succeeded","amount":1999,"currency":"EUR"%s}' "$1" "$OID" "${2:-}"
}
sign() { # SECRET T BODY -> the v1 hex
  printf '%s.%s' "$2" "$3" | openssl dgst -sha256 -hmac "$1" | awk '{print $NF}'
}
sig() { echo "t=$2,v1=$(sign "$1" "$2" "$3")"; } # SECRET T BODY -> the header value
# post CHANNEL BODY-FILE [curl args] -> "status error field"; the answer in $TEST_TMP/resp
post() {
  local c=$1 f=$2; shift 2
  curl -s -m 10 -o "$TEST_TMP/resp" -w '%{http_code}' -X POST "$U/v1/payment-notifications/$c" \
    --data-binary "@$f" "$@" > "$TEST_TMP/code"
  echo "$(cat "$TEST_TMP/code") $(jq -r '.error // .status // "-"' "$TEST_TMP/resp" 2>/dev/null || echo not-json) $(jq -r '.field // "-"' "$TEST_TMP/resp" 2>/dev/null)"
}
J=(-H 'Content-Type: application/json')
now() { date +%s; }

# --- a valid notification ---
note ev-1 > "$TEST_TMP/n1"
t=$(now)
r=$(post card "$TEST_TMP/n1" "${J[@]}" -H "Orderpipe-Signature: $(sig "$SEC_OLD" "$t" "$(cat "$TEST_TMP/n1")")" \
  -H 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')
check_eq "a notification signed with the channel's secret is answered 200 received" "200 received -" "$r"
one() { [ "$(queue_messages notified.tap)" = 1 ]; }
check "exactly one payment.notified reaches the tap queue" wait_for 30 one
msg=$(queue_get notified.tap 10)
check_eq "one message" 1 "$(jq length <<< "$msg")"
ev=$(jq -r '.[0].payload' <<< "$msg")
check "a CloudEvent payment.notified from the channel's source, about the order" jq -e --arg o "$OID" \
  '.specversion == "1.0" and .type == "payment.notified" and .source == "/intake/payment-notifications/card" and .subject == $o and .orderid == $o and .dataschema == "urn:orderpipe:schema:payment.notified" and .datacontenttype == "application/json"' <<< "$ev"
check "its data is the notification, with the order and the channel" jq -e --arg o "$OID" \
  '.data == {"event_id":"ev-1","charge_key":$o,"provider_ref":"ch_42","status":"succeeded","amount":1999,"currency":"EUR","order_id":$o,"channel":"card"}' <<< "$ev"
check_eq "the trace continues from the request's traceparent" 0af7651916cd43dd8448eb211c80319c "$(jq -r .traceparent <<< "$ev" | cut -d- -f2)"
check_eq "published persistent, as a CloudEvent, with its message id" \
  "2 application/cloudevents+json $(jq -r .id <<< "$ev")" \
  "$(jq -r '.[0].properties | "\(.delivery_mode) \(.content_type | split(";")[0]) \(.message_id)"' <<< "$msg")"
id1=$(jq -r .id <<< "$ev")

# --- a repeat: the same message id; another event id: another ---
t=$(now)
r=$(post card "$TEST_TMP/n1" "${J[@]}" -H "Orderpipe-Signature: $(sig "$SEC_OLD" "$t" "$(cat "$TEST_TMP/n1")")")
check_eq "a repeated event_id is answered 200 too" "200 received -" "$r"
check "and published" wait_for 30 one
check_eq "with the same message id (the worker's inbox drops it)" "$id1" \
  "$(jq -r '.[0].properties.message_id' <<< "$(queue_get notified.tap 10)")"
note ev-2 > "$TEST_TMP/n2"
r=$(post card "$TEST_TMP/n2" "${J[@]}" -H "Orderpipe-Signature: $(sig "$SEC_OLD" "$(now)" "$(cat "$TEST_TMP/n2")")")
check_eq "another event_id is answered 200" "200 received -" "$r"
check "and published" wait_for 30 one
check "with another message id" test "$(jq -r '.[0].properties.message_id' <<< "$(queue_get notified.tap 10)")" != "$id1"

# --- rotation: the new secret (from the file) verifies, and a header with both entries ---
note ev-3 > "$TEST_TMP/n3"
r=$(post card "$TEST_TMP/n3" "${J[@]}" -H "Orderpipe-Signature: $(sig "$SEC_NEW" "$(now)" "$(cat "$TEST_TMP/n3")")")
check_eq "the channel's second secret verifies too (rotation)" "200 received -" "$r"
check "its event is published" wait_for 30 one
queue_get notified.tap 10 > /dev/null
t=$(now)
b=$(cat "$TEST_TMP/n3")
r=$(post card "$TEST_TMP/n3" "${J[@]}" -H "Orderpipe-Signature: t=$t,v1=$(sign wrong "$t" "$b"),v1=$(sign "$SEC_NEW" "$t" "$b")")
check_eq "a header with a wrong and a right v1 entry verifies" "200 received -" "$r"
check "its event is published" wait_for 30 one
queue_get notified.tap 10 > /dev/null
note ev-w > "$TEST_TMP/nw"
r=$(post wallet "$TEST_TMP/nw" "${J[@]}" -H "Orderpipe-Signature: $(sig "$SEC_WALLET" "$(now)" "$(cat "$TEST_TMP/nw")")")
check_eq "another channel with its own secret" "200 received -" "$r"
check "its event is published" wait_for 30 one
check_eq "with that channel as source" /intake/payment-notifications/wallet \
  "$(jq -r '.[0].payload | fromjson | .source' <<< "$(queue_get notified.tap 10)")"

# --- refusals: each its status and code, nothing published, the intake still serving ---
bad() { # STATUS ERROR FIELD DESCRIPTION CHANNEL BODY-FILE [curl args]
  local s=$1 e=$2 f=$3 d=$4; shift 4
  check_eq "$d: answer" "$s $e $f" "$(post "$@")"
  check "$d: a JSON error with a message" jq -e '(.message | type) == "string"' "$TEST_TMP/resp"
  check_eq "$d: nothing published" 0 "$(queue_messages notified.tap)"
}
B=$(cat "$TEST_TMP/n1")
S=Orderpipe-Signature
bad 401 bad_signature $S "a wrong secret" card "$TEST_TMP/n1" "${J[@]}" -H "$S: $(sig wrong "$(now)" "$B")"
bad 401 bad_signature $S "another channel's secret" card "$TEST_TMP/n1" "${J[@]}" -H "$S: $(sig "$SEC_WALLET" "$(now)" "$B")"
bad 401 bad_signature $S "the card secret on the wallet channel" wallet "$TEST_TMP/n1" "${J[@]}" -H "$S: $(sig "$SEC_OLD" "$(now)" "$B")"
bad 401 bad_signature $S "no signature header" card "$TEST_TMP/n1" "${J[@]}"
bad 401 bad_signature $S "a malformed header" card "$TEST_TMP/n1" "${J[@]}" -H "$S: garbage"
bad 401 bad_signature $S "a header without t" card "$TEST_TMP/n1" "${J[@]}" -H "$S: v1=$(sign "$SEC_OLD" "$(now)" "$B")"
bad 401 bad_signature $S "an upper-case v1" card "$TEST_TMP/n1" "${J[@]}" -H "$S: t=$(now),v1=$(sign "$SEC_OLD" "$(now)" "$B" | tr a-f A-F)"
bad 401 bad_signature $S "a t past 64 bits" card "$TEST_TMP/n1" "${J[@]}" -H "$S: t=99999999999999999999999,v1=$(sign "$SEC_OLD" 99999999999999999999999 "$B")"
bad 401 bad_signature $S "a signature over another body" card "$TEST_TMP/n2" "${J[@]}" -H "$S: $(sig "$SEC_OLD" "$(now)" "$B")"
bad 401 stale_signature $S "a t 10 minutes old" card "$TEST_TMP/n1" "${J[@]}" -H "$S: $(sig "$SEC_OLD" $(($(now) - 600)) "$B")"
bad 401 stale_signature $S "a t 10 minutes ahead" card "$TEST_TMP/n1" "${J[@]}" -H "$S: $(sig "$SEC_OLD" $(($(now) + 600)) "$B")"
bad 404 unknown_channel channel "an unknown channel" paypal "$TEST_TMP/n1" "${J[@]}" -H "$S: $(sig "$SEC_OLD" "$(now)" "$B")"
bad 404 unknown_channel channel "a channel without a secret" bank "$TEST_TMP/n1" "${J[@]}" -H "$S: $(sig "$SEC_OLD" "$(now)" "$B")"
bad 404 unknown_channel channel "an empty channel" "" "$TEST_TMP/n1" "${J[@]}"
bad 415 unsupported_media_type - "text/plain" card "$TEST_TMP/n1" -H 'Content-Type: text/plain' -H "$S: $(sig "$SEC_OLD" "$(now)" "$B")"
bad 415 unsupported_media_type - "no content type" card "$TEST_TMP/n1" -H 'Content-Type:' -H "$S: $(sig "$SEC_OLD" "$(now)" "$B")"
head -c 17000 /dev/zero | tr '\0' x > "$TEST_TMP/big"
bad 413 body_too_large - "a body over 16 KiB" card "$TEST_TMP/big" "${J[@]}" -H "$S: $(sig "$SEC_OLD" "$(now)" "$(cat "$TEST_TMP/big")")"
# signed (f BODY): a file holding BODY, and its signature in $H
signed() { printf '%s' "$1" > "$TEST_TMP/s.$2"; H="$S: $(sig "$SEC_OLD" "$(now)" "$1")"; }
signed '{"event_id":' 1; bad 400 invalid_json - "invalid JSON" card "$TEST_TMP/s.1" "${J[@]}" -H "$H"
signed "$(note ev-x) trailing" 2; bad 400 invalid_json - "trailing garbage" card "$TEST_TMP/s.2" "${J[@]}" -H "$H"
signed '[1]' 3; bad 400 schema_violation '$' "an array" card "$TEST_TMP/s.3" "${J[@]}" -H "$H"
signed "$(note ev-x ',"extra":1')" 4; bad 400 schema_violation '$.extra' "an unknown field" card "$TEST_TMP/s.4" "${J[@]}" -H "$H"
signed "$(note ev-x | sed 's/"succeeded"/"pending"/')" 5; bad 400 schema_violation '$.status' "status pending" card "$TEST_TMP/s.5" "${J[@]}" -H "$H"
signed "$(note ev-x | sed 's/1999/19.99/')" 6; bad 400 schema_violation '$.amount' "a fractional amount" card "$TEST_TMP/s.6" "${J[@]}" -H "$H"
signed "$(note ev-x | sed 's/"EUR"/"eur"/')" 7; bad 400 schema_violation '$.currency' "a lower-case currency" card "$TEST_TMP/s.7" "${J[@]}" -H "$H"
signed "$(note '' )" 8; bad 400 schema_violation '$.event_id' "an empty event_id" card "$TEST_TMP/s.8" "${J[@]}" -H "$H"
signed "$(note ev-x | sed 's/,"currency":"EUR"//')" 9; bad 400 schema_violation '$.currency' "no currency" card "$TEST_TMP/s.9" "${J[@]}" -H "$H"
signed "$(note ev-x | sed "s/$OID/order-42/")" 10; bad 422 unknown_charge_key '$.charge_key' "a charge key that is not a UUID" card "$TEST_TMP/s.10" "${J[@]}" -H "$H"
# Numbers that are not integers as JSON writes them, and text past its bound in characters.
signed "$(note ev-x | sed 's/1999/2.0/')" 11; bad 400 schema_violation '$.amount' "an amount written 2.0" card "$TEST_TMP/s.11" "${J[@]}" -H "$H"
signed "$(note ev-x | sed 's/1999/1e3/')" 12; bad 400 schema_violation '$.amount' "an amount written 1e3" card "$TEST_TMP/s.12" "${J[@]}" -H "$H"
signed "$(note "$(printf 'é%.0s' $(seq 1 129))")" 13; bad 400 schema_violation '$.event_id' "an event_id of 129 two-byte characters" card "$TEST_TMP/s.13" "${J[@]}" -H "$H"
r=$(curl -s -o "$TEST_TMP/resp" -w '%{http_code}' -m 10 "$U/v1/payment-notifications/card")
check_eq "GET is 405" "405 method_not_allowed" "$r $(jq -r .error "$TEST_TMP/resp")"
# A valid one after them marks the end: whatever they published would be in the queue too.
note ev-end > "$TEST_TMP/nend"
r=$(post card "$TEST_TMP/nend" "${J[@]}" -H "$S: $(sig "$SEC_OLD" "$(now)" "$(cat "$TEST_TMP/nend")")")
check_eq "a valid notification after them is accepted" "200 received -" "$r"
check "it is published" wait_for 30 one
check_eq "and it is the only message: the refusals published nothing" ev-end \
  "$(jq -r '.[] | .payload | fromjson | .data.event_id' <<< "$(queue_get notified.tap 10)")"
check "the intake is still healthy" up

# --- payment.method on orders ---
O='{"customer_id":"c","currency":"EUR","lines":[{"sku":"S","quantity":1,"unit_price":1}],"payment":{"token":"t"%s}}'
order() {
  curl -s -m 10 -o "$TEST_TMP/resp" -w '%{http_code}' -X POST "$U/v1/orders" -H "Authorization: Bearer $K" \
    "${J[@]}" --data-binary "$(printf "$O" "$1")" "${@:2}"
  echo " $(jq -r '.error // .status' "$TEST_TMP/resp") $(jq -r '.field // "-"' "$TEST_TMP/resp")"
}
check_eq "an order with an unknown payment.method is refused" "400 unknown_payment_method \$.payment.method" "$(order ',"method":"paypal"')"
check_eq "a malformed payment.method is a schema violation" "400 schema_violation \$.payment.method" "$(order ',"method":"Card!"')"
if [ -n "${DATABASE_URL:-}" ]; then
  mgmt POST "/bindings/$RABBITMQ_VHOST/e/orderpipe.events/q/notified.tap" '{"routing_key":"order.placed"}' >/dev/null
  check_eq "an order naming a channel is accepted" "202 accepted -" "$(order ',"method":"wallet"')"
  check_eq "an order naming none is accepted" "202 accepted -" "$(order '')"
  two() { [ "$(queue_messages notified.tap)" = 2 ]; }
  check "both are published" wait_for 30 two
  check_eq "order.placed carries the method, the default (the first channel) when none was named" \
    "card wallet" "$(jq -r '[.[] | .payload | fromjson | .data.payment_method] | sort | join(" ")' <<< "$(queue_get notified.tap 10)")"
fi

# --- metrics and logs ---
mport=${METRICS_LISTEN##*:}
curl -fsS -m 5 "http://127.0.0.1:$mport/metrics" > "$TEST_TMP/metrics"
metric() { grep -F "orderpipe_intake_payment_notifications_total{channel=\"$1\",result=\"$2\"}" "$TEST_TMP/metrics" | awk '{print $2}'; }
check_eq "accepted card notifications are counted" 6 "$(metric card accepted)"
check_eq "bad signatures are counted by channel" 8 "$(metric card bad_signature)"
check_eq "stale ones too" 2 "$(metric card stale)"
check_eq "unknown channels under one label" 3 "$(metric _unknown unknown_channel)"
check_eq "invalid ones (415, 413, 400, 422)" 16 "$(metric card invalid)"
check "the route is counted in orderpipe_http_requests_total" \
  grep -q '^orderpipe_http_requests_total{route="post_payment_notification",status="200"}' "$TEST_TMP/metrics"
printf '%s\n' "$SEC_OLD" "$SEC_NEW" "$SEC_WALLET" > "$TEST_TMP/secrets.list"
check "no channel secret in the intake's log" bash -c "! grep -qF -f '$TEST_TMP/secrets.list' '$TEST_TMP/intake.log'"
check "no channel secret in /metrics" bash -c "! grep -qF -f '$TEST_TMP/secrets.list' '$TEST_TMP/metrics'"
"$ROOT/bin/orderpipe-intake" --help > "$TEST_TMP/help"
check "--help names the new variables" grep -q PAYMENT_NOTIFICATION_TOLERANCE "$TEST_TMP/help"
check "and shows no secret" bash -c "! grep -qF -f '$TEST_TMP/secrets.list' '$TEST_TMP/help'"
PAYMENT_CHANNEL_SECRETS="card=$SEC_OLD,nochannel=$SEC_NEW" "$ROOT/bin/orderpipe-intake" > /dev/null 2> "$TEST_TMP/cfg.err"
check "a secret for a channel that does not exist stops the intake at start" test $? = 2
check "saying which entry, without the secret" bash -c "grep -q 'entry 2' '$TEST_TMP/cfg.err' && ! grep -qF -f '$TEST_TMP/secrets.list' '$TEST_TMP/cfg.err'"

# --- the broker down: 503, nothing accepted ---
stop_all
dead=$(free_base 30000 32000 2 1)
AMQP_URL=amqp://guest:guest@127.0.0.1:$dead/ INTAKE_LISTEN=127.0.0.1:$((port + 2)) METRICS_LISTEN=127.0.0.1:0 \
  start_bg intake2 "$ROOT/bin/orderpipe-intake"
listening() { curl -s -o /dev/null -m 5 "http://127.0.0.1:$((port + 2))/healthz"; }
check "an intake without a broker still listens" wait_for 60 listening
U=http://127.0.0.1:$((port + 2))
r=$(post card "$TEST_TMP/n1" "${J[@]}" -H "$S: $(sig "$SEC_OLD" "$(now)" "$B")")
check_eq "with the broker down a valid notification is answered 503" "503 broker_unavailable -" "$r"
r=$(post card "$TEST_TMP/n1" "${J[@]}" -H "$S: $(sig wrong "$(now)" "$B")")
check_eq "and a forged one is still refused 401" "401 bad_signature $S" "$r"
test_done
