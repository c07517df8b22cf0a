/* System test of lib/broker against the real RabbitMQ (the harness's per-test vhost in AMQP_URL):
 * topology, confirms, unroutable publishes, non-blocking confirm polling, consuming with
 * properties and headers, reject/requeue, queue depth, a consumer interrupted by something other
 * than a delivery, and fail-over past a dead node; and that confirms and RPC replies do not grow
 * the process's heap. */
#include <amqp.h>
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "systest.h"
#include "topology.h"
#include "wire.h"

/* Bytes of heap in use, mmapped blocks included: rabbitmq-c's pool pages are frame_max (128 kB)
 * each, which glibc serves with mmap. */
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* This program's amqp_consume_message and amqp_simple_wait_frame_noblock stand in front of
 * rabbitmq-c's (the executable's symbols win), so the test can make the first answer "unexpected
 * state" (a method other than a delivery came first) with no frame left queued behind it, and the
 * read broker_next then makes fail as on a broken socket. */
static enum { FAKE_NONE, FAKE_INTERRUPTED, FAKE_INTERRUPTED_READ_FAILS } fake;

amqp_rpc_reply_t amqp_consume_message(amqp_connection_state_t state, amqp_envelope_t *envelope,
                                      const struct timeval *timeout, int flags)
{
    typedef amqp_rpc_reply_t (*consume_fn)(amqp_connection_state_t, amqp_envelope_t *,
                                           const struct timeval *, int);
    if (fake != FAKE_NONE) {
        memset(envelope, 0, sizeof *envelope);
        return (amqp_rpc_reply_t){.reply_type = AMQP_RESPONSE_LIBRARY_EXCEPTION,
                                  .library_error = AMQP_STATUS_UNEXPECTED_STATE};
    }
    consume_fn real = (consume_fn)dlsym(RTLD_NEXT, "amqp_consume_message");
    return real(state, envelope, timeout, flags);
}

int amqp_simple_wait_frame_noblock(amqp_connection_state_t state, amqp_frame_t *frame,
                                   const struct timeval *timeout)
{
    typedef int (*wait_fn)(amqp_connection_state_t, amqp_frame_t *, const struct timeval *);
    if (fake == FAKE_INTERRUPTED_READ_FAILS)
        return AMQP_STATUS_SOCKET_ERROR;
    wait_fn real = (wait_fn)dlsym(RTLD_NEXT, "amqp_simple_wait_frame_noblock");
    return real(state, frame, timeout);
}

/* Zeroes the stack below the caller, so what a callee reads from a variable it never set is the
 * same on every run (valgrind reports the read itself). */
static void __attribute__((noinline)) scrub_stack(void)
{
    volatile char pad[16384];
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = 0;
}

static int confirms_seen;
static void on_confirm(uint64_t seq, bool multiple, bool ack, void *arg)
{
    (void)multiple;
    uint64_t *upto = arg;
    if (ack && seq > *upto)
        *upto = seq;
    confirms_seen++;
}

int main(void)
{
    const char *url = getenv("AMQP_URL");
    if (!url) {
        printf("not ok - AMQP_URL is not set\n");
        return 1;
    }
    broker *pub, *con;
    broker_options po = {.urls = url, .name = "test/publish", .confirms = true};
    broker_options co = {.urls = url, .name = "test/consume"};
    CHECK(broker_connect(&pub, &po) == OP_OK, "connect with confirms");
    CHECK(broker_connect(&con, &co) == OP_OK, "connect a consumer");
    CHECK(topology_declare(pub) == OP_OK, "declare the topology");
    CHECK(topology_declare(pub) == OP_OK, "declare it again (idempotent)");
    CHECK(broker_queue_depth(pub, "reservation") == 0, "reservation queue exists and is empty");
    CHECK(broker_queue_depth(pub, "payment.retry.2") == 0, "retry tier queues exist");
    CHECK(broker_queue_depth(pub, "payment.dlq") == 0, "dead-letter queues exist");

    json_t *h = json_pack("{ss si sb ss sf}", WIRE_HDR_TRACEPARENT, "00-abc", WIRE_HDR_ATTEMPT, 3,
                          "flag", 1, "empty", "", "ratio", 0.5);
    for (int i = 0; i < 100; i++) {
        char body[64], id[32];
        snprintf(body, sizeof body, "{\"n\":%d}", i);
        snprintf(id, sizeof id, "msg-%d", i);
        broker_message m = {.routing_key = "order.placed", .body = body, .len = strlen(body),
                            .message_id = id, .type = "order.placed", .headers = h};
        uint64_t seq = 0;
        if (broker_publish(pub, &m, &seq) != OP_OK || seq != (uint64_t)i + 1) {
            CHECK(0, "publish %d", i);
            break;
        }
    }
    CHECK(broker_wait_confirms(pub, 5000) == OP_OK, "100 publishes confirmed");
    CHECK(broker_queue_depth(pub, "reservation") == 100, "all 100 routed to reservation");

    broker_message lost = {.routing_key = "no.such.key", .body = "{}", .len = 2};
    broker_publish(pub, &lost, NULL);
    CHECK(broker_wait_confirms(pub, 5000) == OP_ERR_UNROUTABLE && strstr(broker_last_error(pub), "NO_ROUTE"),
          "an unroutable publish fails as unroutable: %s", broker_last_error(pub));
    CHECK(broker_wait_confirms(pub, 5000) == OP_OK, "and the next wait starts afresh");
    CHECK(broker_is_open(pub), "the connection survives an unroutable publish");

    uint64_t upto = 0, last = 0;
    for (int i = 0; i < 10; i++) {
        broker_message m = {.exchange = "", .routing_key = "payment", .body = "{}", .len = 2};
        broker_publish(pub, &m, &last);
    }
    for (int i = 0; i < 100 && upto < last; i++) {
        if (broker_poll_confirms(pub, on_confirm, &upto) != OP_OK)
            break;
        usleep(10000);
    }
    CHECK(upto == last, "broker_poll_confirms reported every confirm (up to %llu of %llu)",
          (unsigned long long)upto, (unsigned long long)last);

    CHECK(broker_consume(con, "reservation", 10) == OP_OK, "consume with prefetch 10");
    broker_delivery d;
    CHECK(broker_next(con, 2000, &d) == OP_OK, "receive a delivery");
    CHECK(d.message_id && strcmp(d.message_id, "msg-0") == 0, "message id kept");
    CHECK(d.type && strcmp(d.type, "order.placed") == 0, "type kept");
    CHECK(strcmp(d.body, "{\"n\":0}") == 0, "body kept");
    CHECK(json_integer_value(json_object_get(d.headers, WIRE_HDR_ATTEMPT)) == 3 &&
              strcmp(json_string_value(json_object_get(d.headers, WIRE_HDR_TRACEPARENT)), "00-abc") == 0 &&
              json_is_true(json_object_get(d.headers, "flag")),
          "headers kept (string, integer, boolean)");
    CHECK(json_is_string(json_object_get(d.headers, "empty")) &&
              strcmp(json_string_value(json_object_get(d.headers, "empty")), "") == 0,
          "an empty string header is kept, empty");
    CHECK(json_real_value(json_object_get(d.headers, "ratio")) == 0.5, "a float header is kept");
    CHECK(broker_reject(con, d.tag, true) == OP_OK, "reject with requeue");
    broker_delivery_free(&d);
    int got = 0;
    bool saw_redelivered = false;
    while (broker_next(con, 1000, &d) == OP_OK) {
        got++;
        saw_redelivered |= d.redelivered && strcmp(d.message_id, "msg-0") == 0;
        broker_ack(con, d.tag, false);
        broker_delivery_free(&d);
    }
    CHECK(got == 100, "all 100 consumed and acked (%d)", got);
    CHECK(saw_redelivered, "the rejected message came back marked redelivered");
    CHECK(broker_next(con, 0, &d) == OP_TIMEOUT, "timeout 0 returns at once when empty");

    /* Corked publishes are held back until uncorked, then all arrive and are confirmed. */
    CHECK(broker_cork(pub, true) == OP_OK, "cork the publisher's connection");
    for (int i = 0; i < 5; i++) {
        broker_message cm = {.routing_key = "order.placed", .body = "{}", .len = 2, .message_id = "corked"};
        CHECK(broker_publish(pub, &cm, NULL) == OP_OK, "publish %d while corked", i);
    }
    /* Linux holds corked data for up to 200 ms: well past this short look. */
    CHECK(broker_next(con, 30, &d) == OP_TIMEOUT, "nothing arrives while corked");
    CHECK(broker_cork(pub, false) == OP_OK, "uncork it");
    CHECK(broker_wait_confirms(pub, 5000) == OP_OK, "the 5 corked publishes are confirmed");
    got = 0;
    while (got < 5 && broker_next(con, 2000, &d) == OP_OK) {
        got += d.message_id && strcmp(d.message_id, "corked") == 0;
        broker_ack(con, d.tag, false);
        broker_delivery_free(&d);
    }
    CHECK(got == 5, "and all 5 delivered (%d)", got);

    /* A consumer interrupted with nothing left to read: still consuming while reading works,
     * the connection reported lost once reading fails. */
    broker *cx;
    broker_options xo = {.urls = url, .name = "test/interrupted"};
    CHECK(broker_connect(&cx, &xo) == OP_OK && broker_consume(cx, "payment", 1) == OP_OK,
          "consume payment on a third connection");
    fake = FAKE_INTERRUPTED;
    scrub_stack();
    CHECK(broker_next(cx, 0, &d) == OP_TIMEOUT && broker_is_open(cx),
          "an interruption with no frame behind it is a timeout");
    fake = FAKE_INTERRUPTED_READ_FAILS;
    scrub_stack();
    op_status xs = broker_next(cx, 0, &d);
    fake = FAKE_NONE;
    CHECK(xs == OP_ERR_TRANSIENT && !broker_is_open(cx),
          "an interruption whose read fails loses the connection (%s: %s)", op_status_name(xs),
          broker_last_error(cx));
    broker_close(cx);

    /* Each confirm and each RPC reply is decoded into rabbitmq-c's pool, whose pages are
     * 128 kB: unless the pool is recycled between frames, thousands of them grow the heap by a
     * page or more. After a warm-up, the heap stays where it is. */
    for (int round = 0; round < 2; round++) {
        size_t before = heap_in_use();
        int n = round == 0 ? 200 : 3000, ok = 0;
        for (int i = 0; i < n; i++) {
            broker_message pm = {.exchange = "", .routing_key = "payment", .body = "{}", .len = 2};
            ok += broker_publish(pub, &pm, NULL) == OP_OK && broker_wait_confirms(pub, 5000) == OP_OK &&
                  broker_queue_depth(pub, "payment") >= 0;
        }
        long grew = (long)heap_in_use() - (long)before;
        if (round == 1) {
            CHECK(ok == n, "%d publishes confirmed one by one, each followed by a queue depth", n);
            CHECK(grew < 64 * 1024, "the heap did not grow with them (%ld bytes)", grew);
        }
    }

    /* Declaration errors close the connection and say which declaration failed. */
    broker *dx;
    CHECK(broker_connect(&dx, &po) == OP_OK, "connect for declarations");
    broker_queue_spec classic = {.name = "payment"};
    CHECK(broker_declare_queue(dx, &classic) == OP_ERR_TRANSIENT && !broker_is_open(dx) &&
              strstr(broker_last_error(dx), "declaring queue payment"),
          "redeclaring a quorum queue as another type is refused: %s", broker_last_error(dx));
    CHECK(broker_reconnect(dx) == OP_OK &&
              broker_bind_queue(dx, "payment", "no-such-exchange", "k") == OP_ERR_TRANSIENT &&
              strstr(broker_last_error(dx), "binding queue payment to no-such-exchange"),
          "binding to a missing exchange is refused: %s", broker_last_error(dx));
    CHECK(topology_declare(dx) == OP_ERR_TRANSIENT, "declaring on a closed connection fails at once");
    broker_close(dx);

    /* Fail-over: a list whose first node is dead connects to the next. */
    char list[1024];
    snprintf(list, sizeof list, "amqp://guest:guest@127.0.0.1:1/,%s", url);
    broker *fo;
    broker_options fopts = {.urls = list, .name = "test/failover", .connect_timeout_ms = 500};
    CHECK(broker_connect(&fo, &fopts) == OP_OK, "a dead first node is skipped");
    CHECK(strstr(broker_current_node(fo), ":1/") == NULL, "connected to %s", broker_current_node(fo));
    broker_close(fo);

    broker *bad;
    broker_options bopts = {.urls = "http://nope", .name = "x"};
    CHECK(broker_connect(&bad, &bopts) == OP_ERR_PERMANENT && bad == NULL, "a non-AMQP URL is refused");
    broker_options dead = {.urls = "amqp://guest:guest@127.0.0.1:1/", .name = "x", .connect_timeout_ms = 300};
    CHECK(broker_connect(&bad, &dead) == OP_ERR_TRANSIENT && !broker_is_open(bad),
          "an unreachable node is a transient error: %s", broker_last_error(bad));
    broker_message m = {.routing_key = "k", .body = "{}", .len = 2};
    CHECK(broker_publish(bad, &m, NULL) == OP_ERR_TRANSIENT, "publishing while down fails at once");
    CHECK(broker_cork(bad, true) == OP_ERR_TRANSIENT, "corking while down fails at once");
    broker_close(bad);

    CHECK(broker_queue_depth(pub, "no-such-queue") == -1 && !broker_is_open(pub),
          "depth of a missing queue is an error");
    CHECK(broker_reconnect(pub) == OP_OK && broker_reconnect_count(pub) == 1, "reconnect after it");

    json_decref(h);
    broker_close(pub);
    broker_close(con);
    return failures ? 1 : 0;
}
