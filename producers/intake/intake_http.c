/* intake_http: routes, request limits, authentication, rate limits, and the JSON answers.
 *
 * Every error is a JSON body {"error","message","field"?} with the status of docs/design.md §4, and
 * no error path publishes anything: checks run before the publish, in the order method, path,
 * content type, body size, key, rate, Idempotency-Key, JSON, schema. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "admin_http.h"
#include "cloudevent.h"
#include "idempotency.h"
#include "intake.h"
#include "log.h"
#include "order_request.h"

uint64_t intake_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void intake_count(intake *in, const char *route, int status)
{
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    const char *labels[] = {route, code};
    metrics_add(in->m.requests, labels, 1);
}

/* Sends text (len bytes) and a newline as the JSON answer. When even the buffer cannot be
 * made, the status goes out without a body rather than not at all. */
static void intake_send(intake *in, struct evhttp_request *req, int status, const char *text,
                        size_t len, const char *route)
{
    struct evbuffer *out = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    if (out && (evbuffer_add(out, text, len) != 0 || evbuffer_add(out, "\n", 1) != 0)) {
        evbuffer_free(out);
        out = NULL;
        status = 500;
    }
    evhttp_send_reply(req, status, status < 300 ? "OK" : "Error", out);
    if (out)
        evbuffer_free(out);
    intake_count(in, route, status);
}

/* body may be NULL (a json_pack that failed): like any body that cannot be serialised, it is
 * answered with the fixed 500 body, never a crash. */
void intake_reply_json(intake *in, struct evhttp_request *req, int status, json_t *body,
                       const char *route)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!text) {
        log_error(NULL, "cannot serialise the %d answer of %s; answering 500", status, route);
        intake_send(in, req, 500, ORDER_REQUEST_INTERNAL_BODY,
                    sizeof ORDER_REQUEST_INTERNAL_BODY - 1, route);
        return;
    }
    intake_send(in, req, status, text, strlen(text), route);
    free(text);
}

/* The body comes from order_request_reply_error, the builder the fuzz target runs: never NULL,
 * message and field cut on a character boundary. */
void intake_reply_error(intake *in, struct evhttp_request *req, int status, const char *code,
                        const char *message, const char *field, const char *route)
{
    char text[ORDER_REQUEST_ERROR_BODY_MAX];
    status = order_request_reply_error(status, code, message, field, text, sizeof text);
    intake_send(in, req, status, text, strlen(text), route);
}

/* --- connections: the limit, idle connections and request deadlines ------------------------ *
 *
 * libevent 2.1 has no connection cap, and its timeout (evhttp_set_timeout) bounds only the time
 * between two reads: a client that sends nothing is closed after it, but one that trickles a
 * request a byte every second is never closed and holds its connection (and, by the hundred, the
 * process's descriptors) for as long as it likes. So each accepted connection is watched
 * (intake_conn): from the first byte of a request, its headers and body must have arrived within
 * the same timeout, or the connection is shut down. The watch follows the connection's buffers
 * (bytes in: a request is arriving; bytes out: it was answered, so it was read whole) and
 * libevent's reading state (read enabled and write not: still reading; a request being handled,
 * awaiting its confirm, has reading disabled and is never cut).
 *
 * Past max_connections open sockets the oldest idle one (between requests, nothing arriving) is
 * closed to make room, so idle connections cannot keep out the clients that send requests; and a
 * request on a connection past the limit is answered 503 (counted per connection in conn_set).
 *
 * Lifetime: the watch is created with the bufferevent (evhttp_set_bevcb), holds a reference on it
 * until, right after the accept, it has found the connection it belongs to and set the
 * connection's close callback; it ends in that callback, with its buffer callbacks removed. */
struct intake_conn {
    intake *in;
    struct bufferevent *bev;
    struct evhttp_connection *evcon;     /* NULL until attached */
    struct evbuffer_cb_entry *on_in, *on_out;
    struct event *attach;
    uint64_t opened_ms;
    uint64_t request_since_ms;           /* first byte of the request being read; 0: none */
    struct intake_conn *next;
};

static size_t intake_conn_slot(intake *in, void *conn)
{
    size_t h = ((uintptr_t)conn >> 4) % in->conn_cap;
    while (in->conn_set[h] && in->conn_set[h] != conn)
        h = (h + 1) % in->conn_cap;
    return h;
}

static void intake_conn_forget(intake *in, struct evhttp_connection *conn)
{
    size_t h = intake_conn_slot(in, conn);
    if (in->conn_set[h] != conn)
        return;
    in->conn_set[h] = NULL;
    in->connections--;
    /* Re-insert the rest of the probe run so lookups still find them. */
    for (size_t j = (h + 1) % in->conn_cap; in->conn_set[j]; j = (j + 1) % in->conn_cap) {
        void *c = in->conn_set[j];
        in->conn_set[j] = NULL;
        in->conn_set[intake_conn_slot(in, c)] = c;
    }
}

/* Unlinks and frees a watch; drops its reference when it never attached. */
static void intake_conn_free(intake_conn *c)
{
    intake *in = c->in;
    for (intake_conn **pp = &in->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            in->nconns--;
            break;
        }
    }
    evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->on_in);
    evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->on_out);
    if (c->attach)
        event_free(c->attach);
    if (!c->evcon)
        bufferevent_decref(c->bev);
    free(c);
}

/* The close callback of a watched connection: arg is its watch. */
static void intake_conn_on_close(struct evhttp_connection *conn, void *arg)
{
    intake_conn *c = arg;
    intake_conn_forget(c->in, conn);
    intake_conn_free(c);
}

static void intake_conn_on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    intake_conn *c = arg;
    if (info->n_added > 0 && c->request_since_ms == 0)
        c->request_since_ms = intake_now_ms();
}

static void intake_conn_on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    intake_conn *c = arg;
    if (info->n_added > 0) /* an answer: the request was read whole */
        c->request_since_ms = 0;
}

/* Right after the accept: libevent has made the connection around our bufferevent, and its
 * callbacks' argument is that connection. */
static void intake_conn_on_attach(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    intake_conn *c = arg;
    bufferevent_data_cb rcb = NULL;
    void *evcon = NULL;
    bufferevent_getcb(c->bev, &rcb, NULL, NULL, &evcon);
    if (!rcb || !evcon) { /* the connection is already gone */
        intake_conn_free(c);
        return;
    }
    c->evcon = evcon;
    evhttp_connection_set_closecb(c->evcon, intake_conn_on_close, c);
    bufferevent_decref(c->bev); /* the connection owns it now; the close callback ends us first */
}

/* Still reading a request (or waiting for one), as opposed to handling or answering one. */
static bool intake_conn_reading(const intake_conn *c)
{
    short e = bufferevent_get_enabled(c->bev);
    return c->evcon && (e & EV_READ) && !(e & EV_WRITE);
}

static void intake_conn_shut(intake_conn *c, const char *why)
{
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (fd < 0)
        return;
    log_info(NULL, "closing a connection: %s", why);
    /* libevent then reads the end of the stream and frees the connection itself. */
    shutdown(fd, SHUT_RDWR);
}

static void intake_conn_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    intake *in = arg;
    uint64_t now = intake_now_ms(), limit = (uint64_t)in->cfg.timeout_s * 1000;
    for (intake_conn *c = in->conns; c; c = c->next) {
        if (c->request_since_ms && now - c->request_since_ms > limit && intake_conn_reading(c)) {
            intake_conn_shut(c, "its request did not arrive within the timeout");
            c->request_since_ms = 0;
        }
    }
}

/* Past the limit: closes the oldest connection waiting for a request with nothing arriving. */
static void intake_conn_evict_idle(intake *in)
{
    intake_conn *oldest = NULL;
    for (intake_conn *c = in->conns; c; c = c->next)
        if (c->request_since_ms == 0 && intake_conn_reading(c) &&
            (!oldest || c->opened_ms < oldest->opened_ms))
            oldest = c;
    if (oldest) {
        intake_conn_shut(oldest, "idle while the intake is at its connection limit");
        oldest->opened_ms = UINT64_MAX; /* not chosen again before it is gone */
    }
}

/* evhttp_set_bevcb: the bufferevent of each accepted connection, watched as above. */
static struct bufferevent *intake_conn_new(struct event_base *base, void *arg)
{
    intake *in = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);
    intake_conn *c = bev ? calloc(1, sizeof *c) : NULL;
    if (!c)
        return bev; /* unwatched (admit sets its close callback), but served */
    c->in = in;
    c->bev = bev;
    c->opened_ms = intake_now_ms();
    c->on_in = evbuffer_add_cb(bufferevent_get_input(bev), intake_conn_on_input, c);
    c->on_out = evbuffer_add_cb(bufferevent_get_output(bev), intake_conn_on_output, c);
    c->attach = evtimer_new(base, intake_conn_on_attach, c);
    struct timeval now = {0, 0};
    if (!c->on_in || !c->on_out || !c->attach || evtimer_add(c->attach, &now) != 0) {
        if (c->on_in)
            evbuffer_remove_cb_entry(bufferevent_get_input(bev), c->on_in);
        if (c->on_out)
            evbuffer_remove_cb_entry(bufferevent_get_output(bev), c->on_out);
        if (c->attach)
            event_free(c->attach);
        free(c);
        return bev;
    }
    bufferevent_incref(bev);
    if (in->nconns >= (size_t)in->cfg.max_connections)
        intake_conn_evict_idle(in);
    c->next = in->conns;
    in->conns = c;
    in->nconns++;
    return bev;
}

static void intake_conn_on_close_unwatched(struct evhttp_connection *conn, void *arg)
{
    intake_conn_forget(arg, conn);
}

void intake_http_free(intake *in)
{
    if (in->conn_sweep)
        event_free(in->conn_sweep);
    in->conn_sweep = NULL;
    if (in->http)
        evhttp_free(in->http); /* closes every connection: their watches end with them */
    in->http = NULL;
    while (in->conns)
        intake_conn_free(in->conns);
}

/* False when the request's connection is over the limit (it has been answered 503). */
static bool intake_conn_admit(intake *in, struct evhttp_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    if (!conn)
        return true;
    size_t h = intake_conn_slot(in, conn);
    if (in->conn_set[h] == conn)
        return true;
    if (in->connections >= in->cfg.max_connections) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        intake_reply_error(in, req, 503, "too_many_connections",
                           "the intake has too many open connections; retry later", NULL, "limit");
        return false;
    }
    in->conn_set[h] = conn;
    in->connections++;
    bool watched = false;
    for (intake_conn *c = in->conns; c && !watched; c = c->next)
        watched = c->evcon == conn;
    if (!watched) /* a watched one's close callback forgets it too */
        evhttp_connection_set_closecb(conn, intake_conn_on_close_unwatched, in);
    return true;
}

/* --- POST /v1/orders ----------------------------------------------------------------------- */

static bool intake_json_content_type(struct evhttp_request *req)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (!ct)
        return false;
    size_t n = strcspn(ct, "; ");
    return n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

/* The body as a NUL-terminated string (the caller frees it), or NULL after answering 413 (too
 * large) or 500 (out of memory: the intake keeps serving others). */
static char *intake_body(intake *in, struct evhttp_request *req, size_t *len, const char *route)
{
    struct evbuffer *buf = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(buf);
    if ((long)*len > in->cfg.max_body) {
        char msg[128];
        snprintf(msg, sizeof msg, "the body is larger than %ld bytes", in->cfg.max_body);
        intake_reply_error(in, req, 413, "body_too_large", msg, NULL, route);
        return NULL;
    }
    char *body = malloc(*len + 1);
    if (!body || evbuffer_copyout(buf, body, *len) != (ev_ssize_t)*len) {
        free(body);
        log_error(NULL, "cannot copy a body of %zu bytes; answering 500", *len);
        intake_send(in, req, 500, ORDER_REQUEST_INTERNAL_BODY,
                    sizeof ORDER_REQUEST_INTERNAL_BODY - 1, route);
        return NULL;
    }
    body[*len] = '\0';
    return body;
}

/* Authentication and rate limits; answers and returns NULL when the request may not go on. */
static intake_client *intake_admit(intake *in, struct evhttp_request *req, const char *route)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    intake_client *c = intake_auth_client(in, evhttp_find_header(h, "Authorization"));
    if (!c) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
        intake_reply_error(in, req, 401, "unauthorized",
                           "a valid API key is required: Authorization: Bearer <key>", NULL, route);
        return NULL;
    }
    uint64_t now = intake_now_ms() * 1000000ull;
    size_t ci = (size_t)(c - in->clients);
    fairshare_note(&in->fair, ci, now);
    int retry = 1;
    bool ok = ratelimit_take(&c->bucket, now, &retry);
    /* The global bucket refuses only clients asking more than their share of it; the others may
     * take it into debt, down to one burst, so that a client at its own limit, or a few heavy
     * ones, cannot spend the capacity of everyone else. */
    double overdraft =
        fairshare_over(&in->fair, ci, now, in->cfg.rate_global) ? 0 : in->cfg.burst_global;
    if (ok && !ratelimit_take_overdraft(&in->global_bucket, now, overdraft, &retry)) {
        ratelimit_refund(&c->bucket);
        ok = false;
    }
    if (!ok) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
        const char *labels[] = {c->id};
        metrics_add(in->m.rate_limited, labels, 1);
        intake_reply_error(in, req, 429, "rate_limited", "too many requests; retry later", NULL, route);
        return NULL;
    }
    return c;
}

/* Publishes an order.placed event (owned; released here) and answers once it is confirmed. */
static void intake_order_publish(intake *in, struct evhttp_request *req, json_t *ev,
                                 const char *order_id)
{
    const char *tp = json_string_value(json_object_get(ev, "traceparent"));
    if (intake_publish(in, req, ev, "order.placed", order_id, tp, 202) != 0)
        intake_reply_error(in, req, 503, "broker_unavailable",
                           "the broker is unavailable; nothing was accepted, retry later", NULL,
                           "post_order");
    json_decref(ev);
}

/* A keyed order waiting for its Idempotency-Key to be claimed in the database. */
typedef struct intake_keyed {
    struct evhttp_request *req;
    json_t *ev;
    char order_id[UUID_STR_LEN];
    char hash[IDEMPOTENCY_HASH_LEN];
} intake_keyed;

static void intake_key_unavailable(intake *in, struct evhttp_request *req, const char *order_id)
{
    log_warn(&(log_ctx){.order_id = order_id}, "Idempotency-Key not checked: database unavailable");
    intake_reply_error(in, req, 503, "database_unavailable",
                       "orders with an Idempotency-Key need the database to check the key, which is "
                       "unavailable; nothing was accepted, retry later", NULL, "post_order");
}

static void intake_on_key_claimed(intake *in, bool ok, const char *stored_sha256,
                                  const char *stored_order_id, void *arg)
{
    intake_keyed *k = arg;
    if (!ok) {
        json_decref(k->ev);
        intake_key_unavailable(in, k->req, k->order_id);
    } else if (strcmp(stored_sha256, k->hash) != 0) {
        json_decref(k->ev);
        log_info(&(log_ctx){.order_id = stored_order_id},
                 "Idempotency-Key reused with another body: refused");
        intake_reply_error(in, k->req, 422, "idempotency_key_reused",
                           "this Idempotency-Key was used before with a different body; a new "
                           "order needs a new key (nothing was accepted)",
                           "Idempotency-Key", "post_order");
    } else {
        /* The same body: publish again (the same event id, which the consumers' inbox drops if
         * the first went through), so that a retry after a lost answer is answered 202. */
        intake_order_publish(in, k->req, k->ev, k->order_id);
    }
    free(k);
}

static void intake_post_order(intake *in, struct evhttp_request *req)
{
    const char *route = "post_order";
    if (!intake_json_content_type(req)) {
        intake_reply_error(in, req, 415, "unsupported_media_type",
                           "Content-Type must be application/json", NULL, route);
        return;
    }
    size_t len;
    char *body = intake_body(in, req, &len, route);
    if (!body)
        return;
    intake_client *c = intake_admit(in, req, route);
    if (!c) {
        free(body);
        return;
    }
    if (!intake_publish_ready(in)) {
        free(body);
        intake_reply_error(in, req, 503, "broker_unavailable",
                           "the broker is unavailable; nothing was accepted, retry later", NULL, route);
        return;
    }
    long queued, backlog;
    if (intake_backpressure_active(in, c, &queued, &backlog)) {
        free(body);
        char msg[200];
        snprintf(msg, sizeof msg, "the pipeline is behind (%ld messages queued, %ld events "
                                  "unpublished); nothing was accepted, retry later", queued, backlog);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        metrics_add(in->m.backpressure_refused, NULL, 1);
        metrics_add(in->m.rate_limited, (const char *[]){c->id}, 1);
        intake_reply_error(in, req, 429, "overloaded", msg, NULL, route);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *key = evhttp_find_header(h, "Idempotency-Key");
    const char *tp_in = evhttp_find_header(h, "traceparent");
    json_t *ev;
    char order_id[UUID_STR_LEN];
    order_request_error err;
    if (order_request_build(body, len, in->order_schema, c->id, key, tp_in, "orderpipe-intake",
                            &ev, order_id, &err) != OP_OK) {
        free(body);
        intake_reply_error(in, req, err.http_status, err.code, err.message, err.field, route);
        return;
    }
    /* Egress is an allow-list (egress.h): the URL the notification worker will POST to must be
     * one of this client's webhook hosts; checked on the built event, what would be published. */
    const char *hook = json_string_value(json_object_get(
        json_object_get(json_object_get(ev, "data"), "notify"), "webhook_url"));
    char why[320];
    if (hook && intake_auth_webhook_allowed(in, c, hook, why, sizeof why) != OP_OK) {
        free(body);
        json_decref(ev);
        intake_reply_error(in, req, 400, "webhook_not_allowed", why, "$.notify.webhook_url", route);
        return;
    }
    if (!key) {
        free(body);
        intake_order_publish(in, req, ev, order_id);
        return;
    }
    /* A keyed order is published only once its key is bound to this body (idempotency.h). */
    intake_keyed *k = calloc(1, sizeof *k);
    if (!k || idempotency_hash_body(body, len, k->hash) != OP_OK) {
        free(body);
        free(k);
        json_decref(ev);
        intake_reply_error(in, req, 500, "internal_error", "the order could not be processed",
                           NULL, route);
        return;
    }
    free(body);
    k->req = req;
    k->ev = ev;
    memcpy(k->order_id, order_id, sizeof k->order_id);
    if (intake_db_claim_key(in, c->id, key, k->hash, order_id, intake_on_key_claimed, k) != 0) {
        json_decref(ev);
        free(k);
        intake_key_unavailable(in, req, order_id);
    }
}

/* --- POST /v1/orders/{id}/cancel ----------------------------------------------------------- */

/* The order is the requester's and recorded: publish the cancel request. */
static void intake_cancel_owned(intake *in, struct evhttp_request *req, const char *order_id,
                                intake_client *c, void *arg)
{
    const char *route = "post_cancel";
    char now[32], tp[56];
    cloudevent_time_now(now);
    cloudevent_traceparent(evhttp_find_header(evhttp_request_get_input_headers(req), "traceparent"), tp);
    json_t *data = json_pack("{ss ss ss}", "order_id", order_id, "requested_at", now, "client_id", c->id);
    json_t *ev = data ? cloudevent_new("order.cancel_requested", "orderpipe-intake", order_id, data, tp)
                      : NULL;
    if (!ev)
        intake_reply_error(in, req, 500, "internal_error", "the cancel could not be processed",
                           NULL, route);
    else if (intake_publish(in, req, ev, "order.cancel_requested", order_id, tp, 202) != 0)
        intake_reply_error(in, req, 503, "broker_unavailable",
                           "the broker is unavailable; nothing was accepted, retry later", NULL, route);
    json_decref(ev);
}

/* Only the client that placed an order may cancel it, and only once it is recorded: anything
 * else is 404 and publishes nothing (issue 14). */
static void intake_post_cancel(intake *in, struct evhttp_request *req, const char *order_id)
{
    const char *route = "post_cancel";
    intake_client *c = intake_admit(in, req, route);
    if (!c)
        return;
    if (!intake_publish_ready(in)) {
        intake_reply_error(in, req, 503, "broker_unavailable",
                           "the broker is unavailable; nothing was accepted, retry later", NULL, route);
        return;
    }
    intake_orders_owned(in, req, order_id, c, route, intake_cancel_owned, NULL);
}

/* --- routing ------------------------------------------------------------------------------- */

static void intake_on_request(struct evhttp_request *req, void *arg)
{
    intake *in = arg;
    if (!intake_conn_admit(in, req))
        return;
    if (in->draining) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        intake_reply_error(in, req, 503, "shutting_down", "the intake is shutting down", NULL, "other");
        return;
    }
    const char *uri = evhttp_request_get_uri(req);
    char path[256];
    size_t n = strcspn(uri, "?");
    if (n >= sizeof path) {
        intake_reply_error(in, req, 404, "not_found", "no such path", NULL, "other");
        return;
    }
    memcpy(path, uri, n);
    path[n] = '\0';
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const char *prefix = "/v1/orders/";
    size_t plen = strlen(prefix);

    if (strcmp(path, "/v1/orders") == 0) {
        if (cmd != EVHTTP_REQ_POST) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
            intake_reply_error(in, req, 405, "method_not_allowed", "use POST to place an order", NULL, "post_order");
            return;
        }
        intake_post_order(in, req);
        return;
    }
    if (strncmp(path, prefix, plen) == 0) {
        char id[64];
        const char *rest = path + plen;
        size_t idlen = strcspn(rest, "/");
        const char *tail = rest + idlen;
        if (idlen < sizeof id) {
            memcpy(id, rest, idlen);
            id[idlen] = '\0';
        }
        if (idlen >= sizeof id || !uuid_valid(id)) {
            intake_reply_error(in, req, 400, "invalid_order_id", "the order id is not a UUID", "order_id", "get_order");
            return;
        }
        if (*tail == '\0') {
            if (cmd != EVHTTP_REQ_GET) {
                evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
                intake_reply_error(in, req, 405, "method_not_allowed", "use GET to read an order", NULL, "get_order");
                return;
            }
            if (intake_admit(in, req, "get_order"))
                intake_orders_get(in, req, id);
            return;
        }
        if (strcmp(tail, "/cancel") == 0) {
            if (cmd != EVHTTP_REQ_POST) {
                evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
                intake_reply_error(in, req, 405, "method_not_allowed", "use POST to cancel", NULL, "post_cancel");
                return;
            }
            intake_post_cancel(in, req, id);
            return;
        }
    }
    intake_reply_error(in, req, 404, "not_found", "no such path", NULL, "other");
}

static bool intake_health(void *arg, char *reason, size_t n)
{
    intake *in = arg;
    if (in->draining) {
        snprintf(reason, n, "shutting down");
        return false;
    }
    if (!intake_publish_ready(in)) {
        snprintf(reason, n, "broker disconnected");
        return false;
    }
    return true;
}

int intake_http_start(intake *in)
{
    char host[256];
    int port;
    if (admin_http_parse_listen(in->cfg.listen, host, sizeof host, &port) != 0) {
        log_error(NULL, "--listen must be host:port, got '%s'", in->cfg.listen);
        return -1;
    }
    in->conn_cap = (size_t)in->cfg.max_connections * 2 + 1;
    in->conn_set = calloc(in->conn_cap, sizeof(void *));
    in->http = evhttp_new(in->base);
    evhttp_set_max_headers_size(in->http, in->cfg.max_headers);
    /* libevent answers bodies past this bound itself (413 without our JSON): keep its bound well
     * above ours so our own 413 with a reason is what clients normally see. */
    evhttp_set_max_body_size(in->http, in->cfg.max_body * 4);
    evhttp_set_timeout(in->http, (int)in->cfg.timeout_s);
    evhttp_set_bevcb(in->http, intake_conn_new, in);
    in->conn_sweep = event_new(in->base, -1, EV_PERSIST, intake_conn_sweep, in);
    struct timeval sweep = {0, 250000};
    if (!in->conn_sweep || event_add(in->conn_sweep, &sweep) != 0)
        return -1;
    evhttp_set_allowed_methods(in->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                             EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD);
    /* Only /healthz here: /metrics (client ids, volumes) is on the admin listener. */
    admin_http_attach(in->http, NULL, intake_health, in);
    evhttp_set_gencb(in->http, intake_on_request, in);

    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
        log_error(NULL, "--listen host must be an IPv4 address, got '%s'", host);
        return -1;
    }
    /* SO_REUSEPORT: several intake processes can share one port. */
    struct evconnlistener *l = evconnlistener_new_bind(
        in->base, NULL, NULL,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC,
        1024, (struct sockaddr *)&sin, sizeof sin);
    if (!l) {
        log_error(NULL, "cannot listen on %s", in->cfg.listen);
        return -1;
    }
    in->socket = evhttp_bind_listener(in->http, l);
    log_info(NULL, "listening on %s", in->cfg.listen);
    if (admin_http_start_on(&in->admin, in->base, in->cfg.metrics_listen, in->m.reg, intake_health,
                            in) != OP_OK) {
        log_error(NULL, "cannot serve /metrics on '%s' (--metrics-listen host:port)",
                  in->cfg.metrics_listen);
        return -1;
    }
    log_info(NULL, "serving /metrics and /healthz on port %d", admin_http_port(in->admin));
    return 0;
}

void intake_http_stop_accepting(intake *in)
{
    if (in->socket) {
        evhttp_del_accept_socket(in->http, in->socket);
        in->socket = NULL;
    }
}
