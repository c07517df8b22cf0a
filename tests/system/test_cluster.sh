#!/usr/bin/env bash
# A 3-node RabbitMQ cluster: with AMQP_URL listing every node, stop the node the
# programs are connected to while orders flow. The quorum queues keep their messages on the other
# two, the programs fail over to them, and nothing accepted is lost.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/chaos.sh"
ORDERS=${CLUSTER_ORDERS:-2000} RATE=${CLUSTER_RATE:-150}

chaos_stack_up --rabbit-nodes 3
check "AMQP_URL lists the three nodes" test "$(tr ',' '\n' <<< "$AMQP_URL" | wc -l)" = 3
chaos_pipeline_up 1
members=$(mgmt GET "/queues/%2F/reservation" | jq '.members | length')
check_eq "the work queues are quorum queues on all three nodes" 3 "$members"
chaos_load "$ORDERS" "$RATE"
sleep $((ORDERS / RATE / 3))
echo "# t=${SECONDS}s stopping RabbitMQ node 1"
"$STACK" stop-rabbit 1 >/dev/null 2>&1
# The management API of node 1 is gone with it; ask node 2's.
export RABBITMQ_MGMT_URL=${RABBITMQ_MGMT_URL%:*}:$((ORDERPIPE_AMQP_PORT + 11))
chaos_settle_and_check "node 1 stopped"
node1=127.0.0.1:$ORDERPIPE_AMQP_PORT
moved() { # LOG "connect message": the last connect line names another node than node 1
  local last
  last=$(grep -h "$2" "$1" | tail -1)
  [ -n "$last" ] && [[ "$last" != *"$node1"* ]]
}
check "the intake reconnected to another node" moved "$ORDERPIPE_RUN_DIR/logs/intake.1.log" "connected to the broker at"
check "the reservation worker consumes from another node" moved "$ORDERPIPE_RUN_DIR/logs/reservation.1.log" "consuming 'reservation' from"
check "the payment worker consumes from another node" moved "$ORDERPIPE_RUN_DIR/logs/payment.1.log" "consuming 'payment' from"
connected_elsewhere() {
  mgmt GET "/connections" | jq -e --arg p "$ORDERPIPE_AMQP_PORT" '[.[] | select(.node != "orderpipe1_\($p)@localhost")] | length > 0' >/dev/null
}
# The management API lists connections from its statistics, which lag by a few seconds.
check "clients are connected to the surviving nodes" wait_for 20 connected_elsewhere
test_done
