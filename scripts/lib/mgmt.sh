# RabbitMQ management API helpers, sourced by scripts/ and the tests (tests/run, tests/system/lib.sh).
# They use RABBITMQ_MGMT_URL (http://user:password@host:port, as `scripts/dev-stack env` prints).

# mgmt METHOD PATH [BODY]: one call to the API (PATH is what follows /api), its JSON answer on
# stdout; fails on an HTTP error. The bound, MGMT_TIMEOUT seconds (60 unless set), is generous
# because a get with ackmode ack_requeue_false that times out on a busy machine has already taken
# its messages off the queue.
mgmt() {
  curl -fsS -m "${MGMT_TIMEOUT:-60}" -X "$1" -H 'content-type: application/json' ${3:+-d "$3"} \
    "${RABBITMQ_MGMT_URL:?}/api$2"
}

# mgmt_fresh_vhost VHOST: VHOST deleted with everything in it, created empty, and the guest user
# given every permission on it.
mgmt_fresh_vhost() {
  mgmt DELETE "/vhosts/$1" >/dev/null 2>&1 || true # absent is fine
  mgmt PUT "/vhosts/$1" '{}' >/dev/null &&
    mgmt PUT "/permissions/$1/guest" '{"configure":".*","write":".*","read":".*"}' >/dev/null
}
