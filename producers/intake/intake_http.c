/* intake_http: routes, request limits, authentication, rate limits, and the JSON answers.
 *
 * Every error is a JSON body {"error","message","field"?} with the status of docs/design.md §4, and
 * no error path publishes anything: checks run before the publish, in the order method, path,
 * content type, body size, key, rate, Idempotency-Key, JSON, schema. Payment notifications
 * (intake_notify.c) take a signature instead of a key. */
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

#include "admin_http.h"
#include "clock.h"
#include "cloudevent.h"
#include "idempotency.h"
#include "intake.h"
#include "log.h"
#include "order_request.h"

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

void intake_http_free(intake *in)
{
    if (in->http)
        evhttp_free(in->http); /* closes every connection: their watches end with them */
    in->http = NULL;
    intake_conn_stop(in);
}

/* --- POST /v1/orders ----------------------------------------------------------------------- */

bool intake_json_content_type(struct evhttp_request *req)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (!ct)
        return false;
    size_t n = strcspn(ct, "; ");
    return n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

char *intake_body(intake *in, struct evhttp_request *req, long max, size_t *len,
                  const char *route)
{
    struct evbuffer *buf = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(buf);
    if ((long)*len > max) {
        char msg[128];
        snprintf(msg, sizeof msg, "the body is larger than %ld bytes", max);
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
    uint64_t now = clock_now_ns();
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

/* An order waiting to be recorded in the database (hash "" when it has no Idempotency-Key). */
typedef struct intake_keyed {
    struct evhttp_request *req;
    json_t *ev;
    char order_id[UUID_STR_LEN];
    char hash[IDEMPOTENCY_HASH_LEN];
} intake_keyed;

static void intake_order_unavailable(intake *in, struct evhttp_request *req, const char *order_id)
{
    log_warn(&(log_ctx){.order_id = order_id}, "order not recorded: database unavailable");
    intake_reply_error(in, req, 503, "database_unavailable",
                       "an order needs the database, to keep its payment token and check its "
                       "Idempotency-Key, which is unavailable; nothing was accepted, retry later",
                       NULL, "post_order");
}

static void intake_on_key_claimed(intake *in, bool ok, const char *stored_sha256,
                                  const char *stored_order_id, void *arg)
{
    intake_keyed *k = arg;
    if (!ok) {
        json_decref(k->ev);
        intake_order_unavailable(in, k->req, k->order_id);
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
    char *body = intake_body(in, req, in->cfg.max_body, &len, route);
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
    char order_id[UUID_STR_LEN], token[ORDER_REQUEST_TOKEN_SIZE];
    order_request_error err;
    if (order_request_build(body, len, in->order_schema, &in->channels, c->id, key, tp_in, "orderpipe-intake",
                            &ev, order_id, token, &err) != OP_OK) {
        free(body);
        intake_reply_error(in, req, err.http_status, err.code, err.message, err.field, route);
        return;
    }
    /* Egress is an allow-list (egress.h): the URL the notification worker will POST to must be
     * one of this client's webhook hosts; checked on the built event, what would be published. */
    const char *hook = order_request_webhook_url(ev);
    char why[320];
    if (hook && intake_auth_webhook_allowed(in, c, hook, why, sizeof why) != OP_OK) {
        free(body);
        json_decref(ev);
        intake_reply_error(in, req, 400, "webhook_not_allowed", why, "$.notify.webhook_url", route);
        return;
    }
    /* An order is published only once its payment token is recorded for the payment step (the
     * event does not carry it), and a keyed one once its key is bound to this body
     * (idempotency.h); a 202 still waits for the broker's confirm of the event. */
    intake_keyed *k = calloc(1, sizeof *k);
    if (!k || (key && idempotency_hash_body(body, len, k->hash) != OP_OK)) {
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
    if (intake_db_record_order(in, c->id, key, k->hash, order_id, token, intake_on_key_claimed,
                               k) != 0) {
        json_decref(ev);
        free(k);
        intake_order_unavailable(in, req, order_id);
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
 * else is 404 and publishes nothing. */
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

/* A route's handler; hole is the path's {id} (a valid UUID) or other {name} segment (as sent, at
 * most 63 bytes, possibly empty), or NULL for a path without one. */
typedef void (*intake_route_fn)(intake *in, struct evhttp_request *req, const char *hole);

static void intake_route_post_order(intake *in, struct evhttp_request *req, const char *order_id)
{
    (void)order_id;
    intake_post_order(in, req);
}

static void intake_route_get_order(intake *in, struct evhttp_request *req, const char *order_id)
{
    intake_client *c = intake_admit(in, req, "get_order");
    if (c)
        intake_orders_get(in, req, order_id, c);
}

/* The public listener's routes (besides admin_http's /healthz), in one table so that the router,
 * the route label of orderpipe_http_requests_total and schemas/openapi.yaml agree
 * (tests/system/test_api_docs.sh reads this table). "{id}" (an order id, checked to be a UUID)
 * or "{channel}" stands for one path segment. */
typedef struct intake_route {
    enum evhttp_cmd_type method;
    const char *method_name; /* for Allow */
    const char *path;
    const char *name;
    intake_route_fn handle;
} intake_route;

static const intake_route intake_routes[] = {
    {EVHTTP_REQ_POST, "POST", "/v1/orders", "post_order", intake_route_post_order},
    {EVHTTP_REQ_GET, "GET", "/v1/orders/{id}", "get_order", intake_route_get_order},
    {EVHTTP_REQ_POST, "POST", "/v1/orders/{id}/cancel", "post_cancel", intake_post_cancel},
    {EVHTTP_REQ_POST, "POST", "/v1/payment-notifications/{channel}", INTAKE_NOTIFY_ROUTE,
     intake_notify_post},
};

/* Whether path matches pattern. A "{name}" segment matches any one segment, empty included,
 * which is copied into id (id_size bytes; one that does not fit leaves id empty, so it is no
 * UUID and no channel). */
static bool intake_route_match(const char *pattern, const char *path, char *id, size_t id_size)
{
    const char *hole = strchr(pattern, '{');
    if (!hole)
        return strcmp(pattern, path) == 0;
    size_t head = (size_t)(hole - pattern);
    if (strncmp(pattern, path, head) != 0)
        return false;
    const char *seg = path + head, *after = strchr(hole, '}') + 1;
    size_t len = strcspn(seg, "/");
    if (strcmp(after, seg + len) != 0)
        return false;
    if (len >= id_size)
        len = 0;
    memcpy(id, seg, len);
    id[len] = '\0';
    return true;
}

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

    /* The path picks the routes; of those, the method picks one, or the answer is 405. */
    const intake_route *on_path = NULL, *route = NULL;
    char id[64], allow[64] = "";
    for (size_t i = 0; i < sizeof intake_routes / sizeof intake_routes[0]; i++) {
        const intake_route *r = &intake_routes[i];
        if (!intake_route_match(r->path, path, id, sizeof id))
            continue;
        if (!on_path)
            on_path = r;
        if (r->method == cmd)
            route = r;
        snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s", allow[0] ? ", " : "",
                 r->method_name);
    }
    if (!on_path) {
        intake_reply_error(in, req, 404, "not_found", "no such path", NULL, "other");
        return;
    }
    bool has_hole = strchr(on_path->path, '{') != NULL;
    if (strstr(on_path->path, "{id}") && !uuid_valid(id)) {
        intake_reply_error(in, req, 400, "invalid_order_id", "the order id is not a UUID", "order_id",
                           on_path->name);
        return;
    }
    if (!route) {
        char msg[96];
        snprintf(msg, sizeof msg, "this path takes %s", allow);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
        intake_reply_error(in, req, 405, "method_not_allowed", msg, NULL, on_path->name);
        return;
    }
    route->handle(in, req, has_hole ? id : NULL);
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
    if (admin_http_parse_listen(in->cfg.listen, host, sizeof host, &port) != OP_OK) {
        log_error(NULL, "--listen must be host:port, got '%s'", in->cfg.listen);
        return -1;
    }
    in->http = evhttp_new(in->base);
    if (!in->http || intake_conn_start(in) != 0) {
        log_error(NULL, "cannot set up the HTTP server (out of memory)");
        return -1;
    }
    evhttp_set_max_headers_size(in->http, in->cfg.max_headers);
    /* libevent answers bodies past this bound itself (413 without our JSON): keep its bound well
     * above ours so our own 413 with a reason is what clients normally see. */
    evhttp_set_max_body_size(in->http, in->cfg.max_body * 4);
    evhttp_set_timeout(in->http, (int)in->cfg.timeout_s);
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
