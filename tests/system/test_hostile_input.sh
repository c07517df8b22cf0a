#!/usr/bin/env bash
# Hostile request input against the whole pipeline: long multibyte text
# in every place an error message quotes it, invalid UTF-8, numbers that are not integers (2.0,
# 1e8), bad Idempotency-Keys and traceparents. Each case asserts the exact status, JSON error code
# and field, that nothing reached orderpipe.events (a tap queue bound with '#') and that the
# intake still answers /healthz; then a valid order is still accepted and confirmed.
# On the code before the fix the first case killed the intake (a NULL from json_pack reached
# strlen) and 2.0 was answered 202 and then dead-lettered by the reservation.
source "$(dirname "$0")/lib.sh"
pipeline_env
export PAYMENT_CHANNEL_SECRETS=card=whsec_hostile_0b9e
"$ROOT/scripts/stock" set SKU-1 10 >/dev/null
on_exit '"$ROOT/scripts/pipeline" down >/dev/null 2>&1'
check "the pipeline starts" "$ROOT/scripts/pipeline" up
U=$INTAKE_URL
up() { curl -fs -m 5 "$U/healthz" >/dev/null; }
check "the intake is healthy" wait_for 20 up

# Everything published on the events exchange also lands here.
mgmt PUT "/queues/$RABBITMQ_VHOST/hostile.tap" '{"durable":false}' >/dev/null
mgmt POST "/bindings/$RABBITMQ_VHOST/e/orderpipe.events/q/hostile.tap" '{"routing_key":"#"}' >/dev/null
check_eq "the tap queue starts empty" 0 "$(queue_messages hostile.tap)"

A=(-H "Authorization: Bearer $ORDERPIPE_API_KEY" -H 'Content-Type: application/json')
# req BODY-FILE [curl args] -> "status error field"; the answer in $TEST_TMP/resp
req() {
  local f=$1; shift
  curl -s -m 10 -o "$TEST_TMP/resp" -w '%{http_code}' -X POST "$U/v1/orders" --data-binary "@$f" "${A[@]}" "$@" > "$TEST_TMP/code"
  echo "$(cat "$TEST_TMP/code") $(jq -r '.error // "-"' "$TEST_TMP/resp" 2>/dev/null || echo not-json) $(jq -r '.field // "-"' "$TEST_TMP/resp" 2>/dev/null)"
}
# bad STATUS ERROR FIELD DESCRIPTION BODY-FILE [curl args]: the answer, nothing published, and the
# intake still serving, in one check each.
bad() {
  local s=$1 e=$2 f=$3 d=$4 file=$5; shift 5
  check_eq "$d: answer" "$s $e $f" "$(req "$file" "$@")"
  check "$d: the answer is a JSON object with a message" jq -e '(.message | type) == "string"' "$TEST_TMP/resp"
  check_eq "$d: nothing published" 0 "$(queue_messages hostile.tap)"
  check "$d: the intake still serves" up
}
rep() { local i out=""; for i in $(seq "$2"); do out+=$1; done; printf '%s' "$out"; }
E=$(rep 'é' 200)
GOOD='{"customer_id":"c-1","currency":"EUR","lines":[{"sku":"SKU-1","quantity":1,"unit_price":500}],"payment":{"token":"tok_ok"}}'
order() { # LINE [EXTRA-TOP-LEVEL] -> a body file
  local f="$TEST_TMP/body.$RANDOM"
  printf '{"customer_id":"c-1","currency":"EUR","lines":[%s],"payment":{"token":"tok_ok"}%s}' "$1" "${2:-}" > "$f"
  echo "$f"
}
L='{"sku":"SKU-1","quantity":1,"unit_price":500}'

# --- multibyte text in error messages and paths ---
# The path keeps as many whole characters as fit: "$." + 126 x "é" (254 bytes).
bad 400 schema_violation "\$.$(rep 'é' 126)" "unknown property named 200 x é" "$(order "$L" ",\"$E\":1")"
bad 400 schema_violation "\$.notify.$(rep 'é' 123)" "200 x é keys nested deep" \
  "$(order "$L" ",\"notify\":{\"$E\":{\"$E\":{\"$E\":{\"$E\":1}}}}")"
bad 400 schema_violation "\$.a$(rep '€' 84)" "unknown property of 3-byte characters after one ASCII byte" \
  "$(order "$L" ",\"a$(rep '€' 100)\":1")"
bad 400 schema_violation "\$.lines[0].a$(rep '😀' 60)" "unknown line property of 4-byte characters" \
  "$(order "{\"sku\":\"SKU-1\",\"quantity\":1,\"unit_price\":500,\"a$(rep '😀' 100)\":1}")"
f="$TEST_TMP/cur"; printf '{"customer_id":"c-1","currency":"%s","lines":[%s],"payment":{"token":"tok_ok"}}' "$E" "$L" > "$f"
bad 400 schema_violation '$.currency' "currency of 200 x é (pattern)" "$f"
bad 400 schema_violation '$.lines[0].sku' "sku of multibyte text (pattern)" "$(order "{\"sku\":\"$(rep 'é' 60)!\",\"quantity\":1,\"unit_price\":500}")"
f="$TEST_TMP/tok"; printf '{"customer_id":"c-1","currency":"EUR","lines":[%s],"payment":{"token":"%s"}}' "$L" "$(rep '€' 60)" > "$f"
bad 400 schema_violation '$.payment.token' "payment token of multibyte text (pattern)" "$f"
bad 400 schema_violation '$.notify.email' "e-mail of multibyte text without @" "$(order "$L" ",\"notify\":{\"email\":\"$E\"}")"
f="$TEST_TMP/cid"; printf '{"customer_id":"%s","currency":"EUR","lines":[%s],"payment":{"token":"tok_ok"}}' "$E" "$L" > "$f"
bad 400 schema_violation '$.customer_id' "customer_id of 200 x é (too long)" "$f"

# --- bytes that are not UTF-8, and parse errors after multibyte text ---
printf '{"customer_id":"c-\xc3\x28\xff","currency":"EUR"}' > "$TEST_TMP/utf8a"
bad 400 invalid_json - "invalid UTF-8 bytes in a value" "$TEST_TMP/utf8a"
printf '{"\xed\xa0\x80":1}' > "$TEST_TMP/utf8b"
bad 400 invalid_json - "a UTF-16 surrogate encoded in a key" "$TEST_TMP/utf8b"
printf '{"customer_id":"%s" %s}' "$E" "$(rep '€' 100)" > "$TEST_TMP/parse1"
bad 400 invalid_json - "a parse error after multibyte text" "$TEST_TMP/parse1"
printf '{"customer_id":%s}' "$(rep '😀' 100)" > "$TEST_TMP/parse2"
bad 400 invalid_json - "a token of 4-byte characters" "$TEST_TMP/parse2"

# --- numbers: integers only, no fraction or exponent ---
for v in 100000000.0 2.0 1e8 1E2 -0.0; do
  bad 400 schema_violation '$.lines[0].unit_price' "unit_price $v" "$(order "{\"sku\":\"SKU-1\",\"quantity\":1,\"unit_price\":$v}")"
done
bad 400 schema_violation '$.lines[0].quantity' "quantity 3.0" "$(order '{"sku":"SKU-1","quantity":3.0,"unit_price":500}')"
bad 400 schema_violation '$.lines[1].quantity' "quantity 1e1 on the second line" "$(order "$L,{\"sku\":\"SKU-1\",\"quantity\":1e1,\"unit_price\":500}")"

# --- headers ---
printf '%s' "$GOOD" > "$TEST_TMP/good"
bad 400 invalid_idempotency_key - "Idempotency-Key of 129 bytes" "$TEST_TMP/good" -H "Idempotency-Key: $(rep k 129)"
bad 400 invalid_idempotency_key - "Idempotency-Key of 4000 bytes" "$TEST_TMP/good" -H "Idempotency-Key: $(rep k 4000)"
bad 400 invalid_idempotency_key - "Idempotency-Key with non-ASCII bytes" "$TEST_TMP/good" -H "Idempotency-Key: $(rep 'é' 20)"
bad 400 invalid_idempotency_key - "Idempotency-Key with invalid UTF-8" "$TEST_TMP/good" -H "$(printf 'Idempotency-Key: k\xff\xc3')"

# --- payment notifications: hostile headers and bodies, signed or not ---
# nreq CHANNEL BODY-FILE [curl args] -> "status error field" for POST /v1/payment-notifications
nreq() {
  local c=$1 f=$2; shift 2
  curl -s -m 10 -o "$TEST_TMP/resp" -w '%{http_code}' -X POST "$U/v1/payment-notifications/$c" \
    -H 'Content-Type: application/json' --data-binary "@$f" "$@" > "$TEST_TMP/code"
  echo "$(cat "$TEST_TMP/code") $(jq -r '.error // "-"' "$TEST_TMP/resp" 2>/dev/null || echo not-json) $(jq -r '.field // "-"' "$TEST_TMP/resp" 2>/dev/null)"
}
nbad() { # STATUS ERROR FIELD DESCRIPTION CHANNEL BODY-FILE [curl args]
  local s=$1 e=$2 f=$3 d=$4; shift 4
  check_eq "notification, $d: answer" "$s $e $f" "$(nreq "$@")"
  check_eq "notification, $d: nothing published" 0 "$(queue_messages hostile.tap)"
  check "notification, $d: the intake still serves" up
}
nsig() { local t; t=$(date +%s); echo "Orderpipe-Signature: t=$t,v1=$(printf '%s.' "$t" | cat - "$1" | openssl dgst -sha256 -hmac whsec_hostile_0b9e | awk '{print $NF}')"; }
S=Orderpipe-Signature
printf '{"event_id":"e","charge_key":"7c1e4f0a-2b3d-4e5f-8a9b-0c1d2e3f4a5b","provider_ref":"r","status":"succeeded","amount":1,"currency":"EUR","%s":1}' "$E" > "$TEST_TMP/nmb"
nbad 401 bad_signature $S "unsigned, 200 x é in a key" card "$TEST_TMP/nmb"
nbad 401 bad_signature $S "a 4000-byte signature" card "$TEST_TMP/nmb" -H "$S: t=1,$(rep 'v1=00,' 660)v1=0"
nbad 401 bad_signature $S "a signature of multibyte text" card "$TEST_TMP/nmb" -H "$S: t=$(rep 'é' 40),v1=$(rep '€' 30)"
nbad 401 bad_signature $S "a signature with invalid UTF-8" card "$TEST_TMP/nmb" -H "$(printf '%s: t=1\xff\xc3,v1=\xed\xa0\x80' $S)"
nbad 400 schema_violation "\$.$(rep 'é' 126)" "signed, 200 x é in a key" card "$TEST_TMP/nmb" -H "$(nsig "$TEST_TMP/nmb")"
printf '{"event_id":"e\xc3\x28\xff"}' > "$TEST_TMP/nutf"
nbad 400 invalid_json - "signed, invalid UTF-8" card "$TEST_TMP/nutf" -H "$(nsig "$TEST_TMP/nutf")"
printf '{"event_id":"%s","charge_key":"x","provider_ref":"r","status":"succeeded","amount":1,"currency":"EUR"}' "$E" > "$TEST_TMP/neid"
nbad 400 schema_violation '$.event_id' "signed, an event_id of 200 x é" card "$TEST_TMP/neid" -H "$(nsig "$TEST_TMP/neid")"
printf '{"event_id":"e","charge_key":"%s","provider_ref":"r","status":"succeeded","amount":1,"currency":"EUR"}' "$(rep 'é' 40)" > "$TEST_TMP/nkey"
nbad 422 unknown_charge_key '$.charge_key' "signed, a charge key of multibyte text" card "$TEST_TMP/nkey" -H "$(nsig "$TEST_TMP/nkey")"
nbad 404 unknown_channel channel "a channel of multibyte text" "$(rep '%C3%A9' 10)" "$TEST_TMP/nmb" -H "$(nsig "$TEST_TMP/nmb")"
head -c 70000 /dev/zero | tr '\0' '{' > "$TEST_TMP/nbig"
nbad 413 body_too_large - "a 70 kB body" card "$TEST_TMP/nbig" -H "$(nsig "$TEST_TMP/nbig")"

# --- a valid order with a malformed traceparent: accepted, with a new trace, and confirmed ---
BADTP="00-$(rep 'é' 16)-00f067aa0ba902b7-01"
r=$(req "$TEST_TMP/good" -H 'Idempotency-Key: hostile-valid-1' -H "traceparent: $BADTP")
check_eq "a valid order after all that is accepted" "202 - -" "$r"
id=$(jq -r .order_id "$TEST_TMP/resp")
placed() { [ "$(queue_messages hostile.tap)" -ge 1 ]; }
check "its order.placed is published" wait_for 10 placed
first=$(queue_get hostile.tap 1)
ev=$(jq -r '.[0].payload' <<< "$first")
check_eq "the first event ever published is that order's order.placed" "order.placed $id" "$(jq -r '"\(.type) \(.orderid)"' <<< "$ev")"
check "its traceparent is a new, valid one (the malformed one was replaced)" \
  jq -e '.traceparent | test("^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")' <<< "$ev"
check_eq "with the total computed from integers" 500 "$(jq -r .data.total <<< "$ev")"
confirmed() { [ "$(sql "select status from orders where id = '$id'")" = confirmed ]; }
check "and the order is confirmed" wait_for 60 confirmed
check_eq "nothing was dead-lettered" 0 "$(( $(queue_messages reservation.dlq) + $(queue_messages payment.dlq) ))"
check "the intake is still serving" up
test_done
