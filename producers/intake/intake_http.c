/* intake_http: routes, request limits, authentication, rate limits, and the JSON answers.
 *
 * Every error is a JSON body {"error","message","field"?} with the status of DESIGN.md §4, and
 * no error path publishes anything: checks run before the publish, in the order method, path,
 * content type, body size, key, rate, Idempotency-Key, JSON, schema. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "admin_http.h"
#include "cloudevent.h"
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

/* --- connection limit ---------------------------------------------------------------------- */

/* libevent 2.1 has no connection cap: count the connections we have seen in a small open-
 * addressing set, and forget each when it closes. */
static size_t intake_conn_slot(intake *in, void *conn)
{
    size_t h = ((uintptr_t)conn >> 4) % in->conn_cap;
    while (in->conn_set[h] && in->conn_set[h] != conn)
        h = (h + 1) % in->conn_cap;
    return h;
}

static void intake_conn_closed(struct evhttp_connection *conn, void *arg)
{
    intake *in = arg;
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
    evhttp_connection_set_closecb(conn, intake_conn_closed, in);
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
    int retry = 1;
    bool ok = ratelimit_take(&c->bucket, now, &retry);
    if (ok && !ratelimit_take(&in->global_bucket, now, &retry)) {
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
    if (intake_backpressure_active(in, &queued, &backlog)) {
        free(body);
        char msg[200];
        snprintf(msg, sizeof msg, "the pipeline is behind (%ld messages queued, %ld events "
                                  "unpublished); nothing was accepted, retry later", queued, backlog);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        metrics_add(in->m.backpressure_refused, NULL, 1);
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
    free(body);
    const char *tp = json_string_value(json_object_get(ev, "traceparent"));
    if (intake_publish(in, req, ev, "order.placed", order_id, tp, 202) != 0)
        intake_reply_error(in, req, 503, "broker_unavailable",
                           "the broker is unavailable; nothing was accepted, retry later", NULL, route);
    json_decref(ev);
}

/* --- POST /v1/orders/{id}/cancel ----------------------------------------------------------- */

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
    char now[32], tp[56];
    cloudevent_time_now(now);
    cloudevent_traceparent(evhttp_find_header(evhttp_request_get_input_headers(req), "traceparent"), tp);
    json_t *data = json_pack("{ss ss ss}", "order_id", order_id, "requested_at", now, "client_id", c->id);
    json_t *ev = cloudevent_new("order.cancel_requested", "orderpipe-intake", order_id, data, tp);
    if (intake_publish(in, req, ev, "order.cancel_requested", order_id, tp, 202) != 0)
        intake_reply_error(in, req, 503, "broker_unavailable",
                           "the broker is unavailable; nothing was accepted, retry later", NULL, route);
    json_decref(ev);
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
    evhttp_set_allowed_methods(in->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                             EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD);
    admin_http_attach(in->http, in->m.reg, intake_health, in);
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
    return 0;
}

void intake_http_stop_accepting(intake *in)
{
    if (in->socket) {
        evhttp_del_accept_socket(in->http, in->socket);
        in->socket = NULL;
    }
}
