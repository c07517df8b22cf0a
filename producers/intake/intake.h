/* intake: the HTTP front door. Shared types of its modules:
 *   intake_main.c     configuration and the program's table of contents
 *   intake_auth.c     API keys (constant-time comparison) and per-client rate limits
 *   intake_publish.c  the AMQP publisher driven by the libevent loop, with in-flight requests
 *                     answered when their publisher confirm arrives
 *   intake_http.c     routes, limits, validation and the JSON error bodies
 *   intake_conn.c     accepted connections: their limit, idle ones, request deadlines
 *   intake_orders.c   GET /v1/orders/{id} from PostgreSQL
 *   intake_db.c       the non-blocking PostgreSQL connection: queued requests with deadlines
 *   intake_backpressure.c  429s while the work queues or the outbox are past their bounds
 *   intake_notify.c   POST /v1/payment-notifications/{channel}: signed results of the channels
 */
#ifndef ORDERPIPE_INTAKE_H
#define ORDERPIPE_INTAKE_H

#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker.h"
#include "db.h"
#include "egress.h"
#include "fairshare.h"
#include "jsonschema.h"
#include "admin_http.h"
#include "metrics.h"
#include "payment_channels.h"
#include "ratelimit.h"

/* Fair shares (fairshare.h): demand is measured over about a second, and a client that asked
 * nothing for 5 s no longer counts among those sharing the capacity. */
#define INTAKE_FAIR_TAU_S 1.0
#define INTAKE_FAIR_ACTIVE_S 5.0

typedef struct intake_config {
    const char *listen;
    const char *metrics_listen;    /* /metrics and /healthz, off the public port */
    const char *amqp_url;
    const char *database_url;
    const char *keys_file;
    const char *keys_env;
    const char *schema_dir;
    long max_body;
    long max_headers;
    long max_connections;
    long timeout_s;
    long confirm_timeout_ms;
    double rate_per_client, burst_per_client, rate_global, burst_global;
    long max_queue_depth;          /* ready messages in the work queues; 0: no bound */
    long max_outbox_rows;          /* unpublished outbox rows; 0: no bound */
    long backpressure_interval_ms;
    long db_timeout_ms;            /* a database request's deadline */
    long db_max_queue;             /* database requests waiting at most; past it: 503 */
    long idempotency_retention_s;  /* Idempotency-Keys older than this are pruned */
    const char *webhook_hosts;       /* "client=host,*.suffix;..." (egress.h) */
    const char *webhook_hosts_file;  /* the same, one entry a line */
    bool webhook_allow_http;         /* webhook URLs may be http://, not only https:// */
    const char *payment_channels;    /* PAYMENT_CHANNELS (payment_channels.h) */
    const char *payment_default_method;
    const char *payment_secrets_file;
    long notification_tolerance_s;   /* a notification's t may be this far from now */
} intake_config;

typedef struct intake_client {
    char *id;
    char *key;
    size_t key_len;
    ratelimit bucket;
} intake_client;

typedef struct intake_pending intake_pending;
typedef struct intake_backpressure intake_backpressure;
typedef struct intake_db intake_db;
typedef struct intake_reconnect intake_reconnect;
typedef struct intake_conn intake_conn;

typedef struct intake_metrics {
    metrics_registry *reg;
    metrics_family *requests, *publish_latency, *inflight, *rate_limited, *reconnects;
    metrics_family *backpressure_refused;
    metrics_family *notifications; /* {channel,result} */
    db_node_metrics db_node;
} intake_metrics;

typedef struct intake {
    intake_config cfg;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *socket;
    admin_http *admin;          /* the metrics listener (cfg.metrics_listen) */
    struct event *broker_event, *tick, *sigterm, *sigint, *drain_check;
    struct event *uncork;       /* end of a loop turn: sends the turn's publishes together */
    broker *broker;
    int broker_fd;
    intake_db *dbq;            /* NULL without DATABASE_URL */
    jsonschema_registry *schemas;
    const jsonschema *order_schema;
    const jsonschema *notification_schema;
    payment_channels channels;  /* the payment.method names and the notification secrets */
    intake_client *clients;
    size_t nclients;
    egress_policy webhooks;     /* which webhook hosts each client may use (intake_auth.c) */
    ratelimit global_bucket;
    fairshare fair;            /* each client's recent demand, indexed like clients */
    intake_pending *pending_head, *pending_tail;
    long inflight;
    uint64_t next_reconnect_ms;
    unsigned backoff_attempt;
    intake_reconnect *reconnect;   /* the reconnect thread in flight, or NULL (intake_publish.c) */
    broker *retired_broker;        /* a lost connection waiting for that thread to close it */
    long connections;
    void **conn_set;           /* open connections we have seen (for the connection limit) */
    size_t conn_cap;
    intake_conn *conns;        /* every accepted connection, watched for request deadlines */
    size_t nconns;
    struct event *conn_sweep;
    bool draining;
    intake_backpressure *backpressure; /* NULL when no bound is set */
    intake_metrics m;
} intake;

/* intake_auth.c */
int intake_auth_load(intake *in);
void intake_auth_free(intake *in);
/* The client whose key is in `authorization` ("Bearer KEY"), or NULL. */
intake_client *intake_auth_client(intake *in, const char *authorization);
/* OP_OK if `client` may have its notifications POSTed to url; else OP_ERR_PERMANENT, why in msg. */
op_status intake_auth_webhook_allowed(const intake *in, const intake_client *c, const char *url,
                                      char *msg, size_t msglen);

/* intake_publish.c */
/* Answers req once its publish is settled: ok (the broker confirmed it) or not (why says what
 * failed; the answer is then a 503). Called exactly once, from the loop. */
typedef void (*intake_confirm_fn)(intake *in, struct evhttp_request *req, bool ok,
                                  const char *why, void *arg);
int intake_publish_start(intake *in);
void intake_publish_stop(intake *in);
bool intake_publish_ready(const intake *in);
/* Publishes `event` (CloudEvent, borrowed) and answers req once confirmed or failed: with
 * success_status {"order_id","status":"accepted"}, or through `answer` (with arg) when it is not
 * NULL. -1: not published (broker down); req is not answered, answer never called. */
int intake_publish(intake *in, struct evhttp_request *req, json_t *event, const char *routing_key,
                   const char *order_id, const char *traceparent, int success_status);
int intake_publish_cb(intake *in, struct evhttp_request *req, json_t *event,
                      const char *routing_key, const char *order_id, const char *traceparent,
                      intake_confirm_fn answer, void *arg);

/* intake_conn.c: the watch of accepted connections. _start (after evhttp_new) returns -1 when
 * out of memory; _stop frees what is left once the evhttp is gone. _admit is false when the
 * request's connection is past the limit and has been answered 503. */
int intake_conn_start(intake *in);
void intake_conn_stop(intake *in);
bool intake_conn_admit(intake *in, struct evhttp_request *req);

/* intake_http.c */
int intake_http_start(intake *in);
/* Frees the HTTP server and the connections' watches (after the loop, before the base). */
void intake_http_free(intake *in);
void intake_http_stop_accepting(intake *in);
void intake_reply_json(intake *in, struct evhttp_request *req, int status, json_t *body,
                       const char *route);
void intake_reply_error(intake *in, struct evhttp_request *req, int status, const char *code,
                        const char *message, const char *field, const char *route);
/* Whether the request's Content-Type is application/json (parameters allowed). */
bool intake_json_content_type(struct evhttp_request *req);
/* The body as a NUL-terminated string (the caller frees it), or NULL after answering 413 (longer
 * than max) or 500 (out of memory: the intake keeps serving others). */
char *intake_body(intake *in, struct evhttp_request *req, long max, size_t *len,
                  const char *route);

/* intake_notify.c */
#define INTAKE_NOTIFY_ROUTE "post_payment_notification"
/* POST /v1/payment-notifications/{channel}; channel is the path's segment as sent. */
void intake_notify_post(intake *in, struct evhttp_request *req, const char *channel);
/* Loads the channels and their secrets (payment_channels_from_env with the config's overrides);
 * -1 after logging what is wrong (never a secret). */
int intake_notify_load(intake *in);

/* intake_backpressure.c: the watcher thread (started only when a bound is set) and its verdict
 * for client c (fairshare.h: past a bound, only the clients filling the pipeline are refused;
 * past twice the bound, every client). _active fills the last sampled figures. */
int intake_backpressure_start(intake *in);
void intake_backpressure_stop(intake *in);
bool intake_backpressure_active(const intake *in, const intake_client *c, long *queued,
                                long *backlog);
/* intake_db.c: every database request of the intake, none blocking the loop. A request's callback
 * runs exactly once, later, from the loop (never inside the call that queued it): with the
 * result, or with "unavailable" (no database configured or connected, INTAKE_DB_TIMEOUT_MS
 * overrun, an SQL error, or the intake stopping). The calls return -1 when the request is refused
 * at once (not configured, disconnected, INTAKE_DB_MAX_QUEUE reached, out of memory): the
 * callback is then never called and the caller answers 503. Parameters are copied. */
typedef void (*intake_db_result_fn)(intake *in, PGresult *r /* NULL: unavailable; borrowed */,
                                    void *arg);
/* ok false: unavailable. Else the key's stored body hash and order id (borrowed for the call):
 * the caller's own when the key was new or was used with the same body. */
typedef void (*intake_db_claim_fn)(intake *in, bool ok, const char *stored_sha256,
                                   const char *stored_order_id, void *arg);
int intake_db_start(intake *in); /* -1: DATABASE_URL malformed */
void intake_db_stop(intake *in); /* answers every waiting request as unavailable */
/* `sql` is a string literal (it must outlive the request). */
int intake_db_query(intake *in, const char *sql, int nparams, const char *const *params,
                    intake_db_result_fn cb, void *arg);
/* Records an order before it is published: its payment token (which no event carries) and, when
 * key is not NULL, (client_id, key) -> (body_sha256, order_id) unless the key has a row already.
 * Without a key, cb's stored_sha256 is "" and stored_order_id is order_id. */
int intake_db_record_order(intake *in, const char *client_id, const char *key,
                           const char *body_sha256, const char *order_id, const char *token,
                           intake_db_claim_fn cb, void *arg);
/* Requests waiting or in flight (the drain waits for them). */
long intake_db_pending(const intake *in);

/* intake_orders.c */
/* GET /v1/orders/{id} for client c (admitted by the router), answered when the read is done. */
void intake_orders_get(intake *in, struct evhttp_request *req, const char *order_id,
                       intake_client *c);
/* Tenant check of a request on an order: calls `then` (later, from the loop) when order_id is
 * recorded and belongs to client c; otherwise answers req itself (404 not_found when it is not
 * recorded or is another client's, 503 database_unavailable) and never calls it. */
typedef void (*intake_owned_fn)(intake *in, struct evhttp_request *req, const char *order_id,
                                intake_client *c, void *arg);
void intake_orders_owned(intake *in, struct evhttp_request *req, const char *order_id,
                         intake_client *c, const char *route, intake_owned_fn then, void *arg);

#endif
