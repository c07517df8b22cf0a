/* intake_publish: publishes from the libevent loop without blocking it.
 *
 * The broker's socket is watched for readability; whatever confirms have arrived are read without
 * waiting (broker_poll_confirms) and settle the in-flight requests, which are kept in publish
 * order (confirm sequence numbers grow by one per publish). A request is answered 202 only on its
 * ack; a nack, a confirm that does not come within confirm_timeout_ms, or the loss of the
 * connection answers 503. While the broker is down, requests get 503 at once and a timer
 * reconnects with backoff in the background.
 *
 * Reconnecting never runs on the loop: connecting to a node may wait its connect timeout (2 s)
 * and the topology's declarations their RPC timeout, during which the loop would answer nothing,
 * not even /healthz. A thread closes the lost connection, builds a fresh one and declares the
 * topology; the loop's tick picks the result up and swaps it in. One attempt at a time.
 */
#include <event2/http.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backoff.h"
#include "clock.h"
#include "intake.h"
#include "log.h"
#include "mem.h"
#include "topology.h"

struct intake_pending {
    struct evhttp_request *req;
    uint64_t seq;
    uint64_t sent_ms;
    int success_status;
    intake_confirm_fn answer; /* NULL: the order answer below */
    void *answer_arg;
    char order_id[40];
    struct intake_pending *next;
};

/* The route of the request a publish answers, for orderpipe_http_requests_total. */
static const char *intake_pending_route(const intake_pending *p)
{
    const char *uri = evhttp_request_get_uri(p->req);
    return uri && strstr(uri, "/cancel") ? "post_cancel" : "post_order";
}

static void intake_pending_answer(intake *in, intake_pending *p, bool ok, const char *why)
{
    uint64_t now = clock_now_ms();
    const char *ok_labels[] = {ok ? "ok" : "failed"};
    metrics_observe(in->m.publish_latency, ok_labels, (double)(now - p->sent_ms) / 1000.0);
    if (p->answer) {
        p->answer(in, p->req, ok, why, p->answer_arg);
    } else if (ok) {
        json_t *body = json_pack("{ss ss}", "order_id", p->order_id, "status", "accepted");
        intake_reply_json(in, p->req, p->success_status, body, intake_pending_route(p));
        json_decref(body);
    } else {
        log_warn(&(log_ctx){.order_id = p->order_id}, "not accepted: %s", why);
        intake_reply_error(in, p->req, 503, "broker_unavailable", why, NULL, intake_pending_route(p));
    }
    in->inflight--;
    metrics_set(in->m.inflight, NULL, (double)in->inflight);
    free(p);
}

/* Settles every pending request up to `seq` (multiple) or exactly `seq`. */
static void intake_on_confirm(uint64_t seq, bool multiple, bool ack, void *arg)
{
    intake *in = arg;
    intake_pending **pp = &in->pending_head, *prev = NULL;
    while (*pp && (*pp)->seq <= seq) {
        intake_pending *p = *pp;
        if (multiple || p->seq == seq) {
            *pp = p->next;
            if (in->pending_tail == p)
                in->pending_tail = prev;
            intake_pending_answer(in, p, ack,
                                  ack ? NULL : "the broker did not accept the order; nothing was placed");
            if (!multiple)
                return;
            continue;
        }
        prev = p;
        pp = &p->next;
    }
}

static void intake_fail_all(intake *in, const char *why)
{
    while (in->pending_head) {
        intake_pending *p = in->pending_head;
        in->pending_head = p->next;
        intake_pending_answer(in, p, false, why);
    }
    in->pending_tail = NULL;
}

/* One background reconnect (see the header). The loop owns the struct; the thread writes only
 * `fresh` and `error`, then sets `done`, after which the loop reads them. */
struct intake_reconnect {
    pthread_t thread;
    broker_options opts;   /* its strings are the intake's configuration, which outlives it */
    broker *retired;       /* the lost connection, closed by the thread (the close may wait) */
    broker *fresh;         /* the new connection with its topology, or NULL */
    char error[256];
    atomic_bool done;
};

/* Bounds each declaration of a reconnect: a broker that accepts the connection and then stops
 * answering fails the attempt in this time rather than in the library's 30 s. */
#define INTAKE_RECONNECT_RPC_TIMEOUT_MS 2000

static void *intake_reconnect_main(void *arg)
{
    intake_reconnect *r = arg;
    broker_close(r->retired);
    r->retired = NULL;
    broker *b = NULL;
    op_status st = broker_connect(&b, &r->opts);
    if (st == OP_OK && broker_set_rpc_timeout(b, INTAKE_RECONNECT_RPC_TIMEOUT_MS) == OP_OK)
        st = topology_declare(b);
    else if (st == OP_OK)
        st = OP_ERR_TRANSIENT;
    if (st != OP_OK) {
        snprintf(r->error, sizeof r->error, "%s", broker_last_error(b));
        broker_close(b);
        b = NULL;
    }
    r->fresh = b;
    atomic_store(&r->done, true);
    return NULL;
}

static void intake_broker_lost(intake *in)
{
    log_warn(NULL, "broker connection lost: %s", broker_last_error(in->broker));
    if (in->broker_event) {
        event_free(in->broker_event);
        in->broker_event = NULL;
    }
    intake_fail_all(in, "the broker connection was lost before the order was confirmed; retry");
    /* The connection goes to the next reconnect thread to be closed: closing one that is stuck
     * waits for the broker's reply. */
    if (in->retired_broker)
        broker_close(in->retired_broker); /* already closed by a failed publish: no wait */
    in->retired_broker = in->broker;
    in->broker = NULL;
    in->next_reconnect_ms = clock_now_ms();
}

static void intake_on_broker_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    intake *in = arg;
    if (broker_poll_confirms(in->broker, intake_on_confirm, in) != OP_OK)
        intake_broker_lost(in);
}

/* The end of a loop turn: the publishes of every request the turn handled leave together. */
static void intake_on_uncork(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    intake *in = arg;
    if (broker_is_open(in->broker) && broker_cork(in->broker, false) != OP_OK)
        log_warn(NULL, "uncorking the broker connection: %s", broker_last_error(in->broker));
}

static void intake_watch_broker(intake *in)
{
    in->broker_event = event_new(in->base, broker_fd(in->broker), EV_READ | EV_PERSIST,
                                 intake_on_broker_readable, in);
    event_add(in->broker_event, NULL);
}

/* Starts a reconnect thread; on failure to start one, tries again after the backoff. */
static void intake_reconnect_start(intake *in)
{
    intake_reconnect *r = calloc(1, sizeof *r);
    if (r) {
        r->opts = (broker_options){.urls = in->cfg.amqp_url, .name = "orderpipe-intake",
                                   .confirms = true};
        r->retired = in->retired_broker;
        atomic_init(&r->done, false);
        if (pthread_create(&r->thread, NULL, intake_reconnect_main, r) == 0) {
            in->retired_broker = NULL;
            in->reconnect = r;
            return;
        }
        free(r);
    }
    log_warn(NULL, "cannot start the broker reconnect thread; retrying");
    in->next_reconnect_ms = clock_now_ms() + 1000;
}

/* The loop's side of a finished attempt: swap the fresh connection in, or back off. */
static void intake_reconnect_finish(intake *in)
{
    intake_reconnect *r = in->reconnect;
    pthread_join(r->thread, NULL);
    in->reconnect = NULL;
    if (r->fresh) {
        in->broker = r->fresh;
        log_info(NULL, "connected to the broker at %s", broker_current_node(in->broker));
        in->backoff_attempt = 0;
        const char *labels[] = {"broker"};
        metrics_add(in->m.reconnects, labels, 1);
        intake_watch_broker(in);
    } else {
        backoff b;
        backoff_init(&b, 200, 5000, (unsigned)clock_now_ms());
        b.attempt = (int)in->backoff_attempt++;
        in->next_reconnect_ms = clock_now_ms() + (uint64_t)backoff_next_ms(&b);
        log_warn(NULL, "broker unreachable, retrying: %s", r->error);
    }
    free(r);
}

/* At exit: waits for an attempt in flight, bounded by its connect and RPC timeouts (one node's
 * connect, handshake and a declaration, twice over for a URL list, plus the old connection's
 * close). Past that the thread is left to the process's exit rather than hanging the stop. */
static void intake_reconnect_stop(intake *in)
{
    intake_reconnect *r = in->reconnect;
    if (!r)
        return;
    struct timespec limit;
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += 8;
    if (pthread_timedjoin_np(r->thread, NULL, &limit) != 0) {
        log_warn(NULL, "the broker reconnect did not finish in time; leaving it to the exit");
        pthread_detach(r->thread);
        in->reconnect = NULL;
        return;
    }
    broker_close(r->fresh);
    free(r);
    in->reconnect = NULL;
}

/* Every 100 ms: read confirms (this also sends heartbeats), time out stale publishes, and
 * reconnect when it is time. */
static void intake_on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    intake *in = arg;
    if (intake_publish_ready(in)) {
        if (broker_poll_confirms(in->broker, intake_on_confirm, in) != OP_OK) {
            intake_broker_lost(in);
            return;
        }
        uint64_t now = clock_now_ms();
        if (in->pending_head &&
            now - in->pending_head->sent_ms > (uint64_t)in->cfg.confirm_timeout_ms) {
            /* A confirm this late means the channel is stuck: start over on a new one, and
             * answer everything in flight 503 (never 202 without a confirm). */
            log_warn(NULL, "publisher confirm overdue by %lld ms; reconnecting",
                     (long long)(now - in->pending_head->sent_ms));
            intake_broker_lost(in); /* the next tick reconnects, replacing the channel */
        }
    } else if (in->reconnect) {
        if (atomic_load(&in->reconnect->done))
            intake_reconnect_finish(in);
    } else if (!in->draining && clock_now_ms() >= in->next_reconnect_ms) {
        if (in->broker) /* closed under us without a loss being noticed: retire it first */
            intake_broker_lost(in);
        intake_reconnect_start(in);
    }
}

int intake_publish_start(intake *in)
{
    broker_options o = {.urls = in->cfg.amqp_url, .name = "orderpipe-intake", .confirms = true};
    if (broker_connect(&in->broker, &o) == OP_ERR_PERMANENT)
        return -1;
    if (broker_is_open(in->broker) && topology_declare(in->broker) == OP_OK) {
        log_info(NULL, "connected to the broker at %s", broker_current_node(in->broker));
        intake_watch_broker(in);
    } else {
        log_warn(NULL, "broker unreachable at start, retrying in the background: %s",
                 broker_last_error(in->broker));
        in->retired_broker = in->broker; /* reconnects build fresh connections */
        in->broker = NULL;
    }
    in->uncork = evtimer_new(in->base, intake_on_uncork, in);
    if (!in->uncork)
        return -1;
    in->tick = event_new(in->base, -1, EV_PERSIST, intake_on_tick, in);
    struct timeval tv = {0, 100000};
    event_add(in->tick, &tv);
    return 0;
}

void intake_publish_stop(intake *in)
{
    intake_fail_all(in, "the intake is shutting down");
    if (in->broker_event)
        event_free(in->broker_event);
    if (in->tick)
        event_free(in->tick);
    if (in->uncork)
        event_free(in->uncork);
    in->broker_event = in->tick = in->uncork = NULL;
    intake_reconnect_stop(in);
    broker_close(in->retired_broker);
    broker_close(in->broker);
    in->broker = in->retired_broker = NULL;
}

bool intake_publish_ready(const intake *in)
{
    return broker_is_open(in->broker) && in->broker_event != NULL;
}

int intake_publish(intake *in, struct evhttp_request *req, json_t *event, const char *routing_key,
                   const char *order_id, const char *traceparent, int success_status)
{
    if (intake_publish_cb(in, req, event, routing_key, order_id, traceparent, NULL, NULL) != 0)
        return -1;
    in->pending_tail->success_status = success_status;
    return 0;
}

int intake_publish_cb(intake *in, struct evhttp_request *req, json_t *event,
                      const char *routing_key, const char *order_id, const char *traceparent,
                      intake_confirm_fn answer, void *arg)
{
    if (!intake_publish_ready(in))
        return -1;
    char *body = json_dumps(event, JSON_COMPACT);
    json_t *headers = json_pack("{ss}", "traceparent", traceparent ? traceparent : "");
    broker_message m = {
        .routing_key = routing_key,
        .body = body,
        .len = body ? strlen(body) : 0,
        .message_id = json_string_value(json_object_get(event, "id")),
        .correlation_id = order_id, /* a sharded queue hashes it (lib/topology.h) */
        .type = routing_key,
        .headers = headers,
    };
    /* The broker spends much less per message when several arrive in one read (BENCHMARKS.md):
     * hold this turn's publishes back until the turn ends. Without the cork they still go. */
    if (!evtimer_pending(in->uncork, NULL) && broker_cork(in->broker, true) == OP_OK) {
        struct timeval now = {0, 0};
        if (evtimer_add(in->uncork, &now) != 0) /* nobody would uncork: do not hold it back */
            broker_cork(in->broker, false);
    }
    uint64_t seq = 0;
    op_status st = body ? broker_publish(in->broker, &m, &seq) : OP_ERR_TRANSIENT;
    free(body);
    json_decref(headers);
    if (st != OP_OK) {
        intake_broker_lost(in);
        return -1;
    }
    intake_pending *p = mem_calloc(1, sizeof *p);
    p->req = req;
    p->seq = seq;
    p->sent_ms = clock_now_ms();
    p->answer = answer;
    p->answer_arg = arg;
    snprintf(p->order_id, sizeof p->order_id, "%s", order_id);
    if (in->pending_tail)
        in->pending_tail->next = p;
    else
        in->pending_head = p;
    in->pending_tail = p;
    in->inflight++;
    metrics_set(in->m.inflight, NULL, (double)in->inflight);
    return 0;
}
