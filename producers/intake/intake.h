/* intake: the HTTP front door. Shared types of its modules:
 *   intake_main.c     configuration and the program's table of contents
 *   intake_auth.c     API keys (constant-time comparison) and per-client rate limits
 *   intake_publish.c  the AMQP publisher driven by the libevent loop, with in-flight requests
 *                     answered when their publisher confirm arrives
 *   intake_http.c     routes, limits, validation and the JSON error bodies
 *   intake_orders.c   GET /v1/orders/{id} from PostgreSQL
 *   intake_backpressure.c  429s while the work queues or the outbox are past their bounds
 */
#ifndef ORDERPIPE_INTAKE_H
#define ORDERPIPE_INTAKE_H

#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker.h"
#include "db.h"
#include "fairshare.h"
#include "jsonschema.h"
#include "metrics.h"
#include "ratelimit.h"

/* Fair shares (fairshare.h): demand is measured over about a second, and a client that asked
 * nothing for 5 s no longer counts among those sharing the capacity. */
#define INTAKE_FAIR_TAU_S 1.0
#define INTAKE_FAIR_ACTIVE_S 5.0

typedef struct intake_config {
    const char *listen;
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
} intake_config;

typedef struct intake_client {
    char *id;
    char *key;
    size_t key_len;
    ratelimit bucket;
} intake_client;

typedef struct intake_pending intake_pending;
typedef struct intake_backpressure intake_backpressure;
typedef struct intake_reconnect intake_reconnect;
typedef struct intake_conn intake_conn;

typedef struct intake_metrics {
    metrics_registry *reg;
    metrics_family *requests, *publish_latency, *inflight, *rate_limited, *reconnects;
    metrics_family *backpressure_refused;
} intake_metrics;

typedef struct intake {
    intake_config cfg;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *socket;
    struct event *broker_event, *tick, *sigterm, *sigint, *drain_check;
    struct event *uncork;       /* end of a loop turn: sends the turn's publishes together */
    broker *broker;
    int broker_fd;
    db *db;
    jsonschema_registry *schemas;
    const jsonschema *order_schema;
    intake_client *clients;
    size_t nclients;
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

/* intake_publish.c */
typedef void (*intake_confirm_fn)(struct evhttp_request *req, bool ok, const char *order_id,
                                  void *arg);
int intake_publish_start(intake *in);
void intake_publish_stop(intake *in);
bool intake_publish_ready(const intake *in);
/* Publishes `event` (CloudEvent, borrowed) and answers req once confirmed or failed. */
int intake_publish(intake *in, struct evhttp_request *req, json_t *event, const char *routing_key,
                   const char *order_id, const char *traceparent, int success_status);

/* intake_http.c */
int intake_http_start(intake *in);
/* Frees the HTTP server and the connections' watches (after the loop, before the base). */
void intake_http_free(intake *in);
void intake_http_stop_accepting(intake *in);
void intake_reply_json(intake *in, struct evhttp_request *req, int status, json_t *body,
                       const char *route);
void intake_reply_error(intake *in, struct evhttp_request *req, int status, const char *code,
                        const char *message, const char *field, const char *route);
uint64_t intake_now_ms(void);

/* intake_backpressure.c: the watcher thread (started only when a bound is set) and its verdict
 * for client c (fairshare.h: past a bound, only the clients filling the pipeline are refused;
 * past twice the bound, every client). _active fills the last sampled figures. */
int intake_backpressure_start(intake *in);
void intake_backpressure_stop(intake *in);
bool intake_backpressure_active(const intake *in, const intake_client *c, long *queued,
                                long *backlog);
/* intake_orders.c */
void intake_orders_get(intake *in, struct evhttp_request *req, const char *order_id);

#endif
