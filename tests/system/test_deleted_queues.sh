#!/usr/bin/env bash
# Queues deleted while the workers run (an operator's mistake, a policy). A failed delivery whose
# route is gone (its dead-letter queue) goes back to its queue, and the worker neither loses it nor
# spins on it: it declares the topology again and pauses before its next batch, and the next
# attempt dead-letters the message with its reason. A worker whose own queue is deleted is told by
# the broker (consumer cancel notification), reconnects, declares it again and consumes. A queue
# deleted while its worker is away is declared again by the relay that finds its events
# unroutable. Orders keep flowing.
source "$(dirname "$0")/lib.sh"
pipeline_env
P=$ROOT/scripts/pipeline
on_exit '"$P" down >/dev/null 2>&1'
"$ROOT/scripts/stock" set SKU-G 10 >/dev/null
check "pipeline starts" "$P" up
check "the reservation's dead-letter queue is deleted" mgmt DELETE "/queues/$RABBITMQ_VHOST/reservation.dlq"
gone() { [ "$(queue_messages reservation.dlq)" = -1 ]; }
check "and gone" wait_for 10 gone
check "a poison message is published" \
  orderpipe-amqp-probe publish order.placed 'not json' --message-id give-back-1
one() { [ "$(queue_messages reservation.dlq)" = 1 ]; }
check "it reaches the dead-letter queue, declared again" wait_for 30 one
failed() { cat "$ORDERPIPE_RUN_DIR"/logs/reservation.*.log | grep -c 'dead-lettering failed'; }
n=$(failed)
check "its first dead-lettering failed and it went back to its queue ($n)" test "$n" -ge 1
sleep 2
n2=$(failed)
check "the worker did not spin on it: at most 3 failed attempts ($n2)" test "$n2" -le 3
check "the worker said it declares the topology again" \
  grep -q 'declaring the topology again' <(cat "$ORDERPIPE_RUN_DIR"/logs/reservation.*.log)
check_eq "the reservation queue is empty" 0 "$(queue_messages reservation)"
"$ROOT/scripts/replay" list --queue reservation > "$TEST_TMP/list.txt"
check "the dead letter is listed with its reason" grep -q "give-back-1 .* invalid_message" "$TEST_TMP/list.txt"
check "an order placed afterwards is accepted" place_order SKU-G "give-back-$RANDOM"
confirmed() { [ "$(sql "select count(*) from orders where status = 'confirmed'")" = "$1" ]; }
check "and confirmed" wait_for 30 confirmed 1

check "the payment worker's own queue is deleted" mgmt DELETE "/queues/$RABBITMQ_VHOST/payment"
cancelled() { grep -q 'the broker cancelled the consumer' <(cat "$ORDERPIPE_RUN_DIR"/logs/payment.*.log); }
check "the payment worker is told, and says so" wait_for 20 cancelled
back() { [ "$(queue_messages payment)" != -1 ]; }
check "and declares its queue again" wait_for 20 back
check "an order placed afterwards is accepted" place_order SKU-G "queue-deleted-$RANDOM"
check "and confirmed" wait_for 30 confirmed 2
check "the notification worker stops" "$P" scale notification=0
check "and its queue is deleted" mgmt DELETE "/queues/$RABBITMQ_VHOST/notification"
check "an order placed meanwhile is accepted" place_order SKU-G "no-notification-queue-$RANDOM"
check "and confirmed" wait_for 30 confirmed 3
published() { [ "$(sql "select count(*) from outbox where published_at is null")" = 0 ]; }
check "its order.confirmed is published all the same (the relay declares the queue again)" \
  wait_for 30 published
check_eq "and waits in the notification queue" 1 "$(queue_messages notification)"
check "the notification worker comes back" "$P" scale notification=1
notified() { [ "$(sql "select count(*) from notifications where status = 'sent'")" = 3 ]; }
check "and every customer is told" wait_for 30 notified
check_invariants "every invariant holds"
test_done
