/* worker_metrics: a worker's metrics and health (see worker_metrics.h). Updated from the worker's
 * loop, read from the admin thread: the registry has its own lock, the health flags are atomics. */
#include "worker_metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "admin_http.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"

struct worker_metrics {
    metrics_registry *reg;
    admin_http *http;
    metrics_family *handled, *latency, *retried, *dead, *duplicates, *published;
    metrics_family *backlog, *backlog_age, *reconnects, *up;
    db_node_metrics db;
    atomic_bool broker_ok, db_ok;
};

static bool worker_metrics_health(void *arg, char *reason, size_t n)
{
    worker_metrics *m = arg;
    bool b = atomic_load(&m->broker_ok), d = atomic_load(&m->db_ok);
    if (!b || !d)
        snprintf(reason, n, "%s%s%s", b ? "" : "broker disconnected", !b && !d ? ", " : "",
                 d ? "" : "database disconnected");
    return b && d;
}

op_status worker_metrics_start(worker_metrics **out, const char *listen, const char *worker_name)
{
    static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
    worker_metrics *m = calloc(1, sizeof *m);
    *out = m;
    if (!m)
        return OP_ERR_PERMANENT;
    m->reg = metrics_registry_new();
    m->handled = metrics_counter(m->reg, "orderpipe_messages_handled_total",
                                 "Messages handled, by event type and outcome (ok, duplicate, retried, dead_lettered).",
                                 "type,outcome");
    m->latency = metrics_histogram(m->reg, "orderpipe_message_handling_seconds",
                                   "Time from receipt to settlement of a message.", "type",
                                   buckets, (int)(sizeof buckets / sizeof *buckets));
    m->retried = metrics_counter(m->reg, "orderpipe_messages_retried_total",
                                 "Messages sent to a retry tier.", NULL);
    m->dead = metrics_counter(m->reg, "orderpipe_messages_dead_lettered_total",
                              "Messages sent to the dead-letter queue, by reason.", "reason");
    m->duplicates = metrics_counter(m->reg, "orderpipe_inbox_duplicates_total",
                                    "Redelivered messages recognised by the inbox.", NULL);
    m->published = metrics_counter(m->reg, "orderpipe_outbox_published_total",
                                   "Outbox rows published with a confirm.", NULL);
    m->backlog = metrics_gauge(m->reg, "orderpipe_outbox_backlog_rows",
                               "Outbox rows not yet published.", NULL);
    m->backlog_age = metrics_gauge(m->reg, "orderpipe_outbox_oldest_age_seconds",
                                   "Age of the oldest unpublished outbox row.", NULL);
    m->reconnects = metrics_counter(m->reg, "orderpipe_reconnects_total",
                                    "Reconnects to a server (broker, database) since start.", "server");
    m->up = metrics_gauge(m->reg, "orderpipe_worker_info", "The worker this process runs.", "worker");
    db_node_metrics_init(&m->db, m->reg);
    const char *w[] = {worker_name};
    metrics_set(m->up, w, 1);
    const char *b[] = {"broker"}, *d[] = {"database"};
    metrics_add(m->reconnects, b, 0);
    metrics_add(m->reconnects, d, 0);
    atomic_store(&m->broker_ok, false);
    atomic_store(&m->db_ok, false);
    if (admin_http_start(&m->http, listen, m->reg, worker_metrics_health, m) != OP_OK)
        return OP_ERR_PERMANENT;
    log_info(NULL, "serving /metrics and /healthz on port %d", admin_http_port(m->http));
    return OP_OK;
}

void worker_metrics_stop(worker_metrics *m)
{
    if (!m)
        return;
    admin_http_stop(m->http);
    metrics_registry_free(m->reg);
    free(m);
}

void worker_metrics_handled(worker_metrics *m, const char *type, const char *outcome,
                            uint64_t start_ms)
{
    const char *labels[] = {type ? type : "unknown", outcome};
    metrics_add(m->handled, labels, 1);
    metrics_observe(m->latency, labels, (double)clock_ms_since(start_ms) / 1e3);
}

void worker_metrics_retried(worker_metrics *m) { metrics_add(m->retried, NULL, 1); }
void worker_metrics_duplicate(worker_metrics *m) { metrics_add(m->duplicates, NULL, 1); }
void worker_metrics_published(worker_metrics *m, int rows) { metrics_add(m->published, NULL, rows); }

void worker_metrics_dead_lettered(worker_metrics *m, const char *reason)
{
    const char *labels[] = {reason};
    metrics_add(m->dead, labels, 1);
}

void worker_metrics_set_backlog(worker_metrics *m, long rows, double oldest_age_s)
{
    metrics_set(m->backlog, NULL, (double)rows);
    metrics_set(m->backlog_age, NULL, oldest_age_s);
}

void worker_metrics_set_health(worker_metrics *m, bool broker_ok, bool db_ok,
                               unsigned long broker_reconnects, unsigned long db_reconnects)
{
    atomic_store(&m->broker_ok, broker_ok);
    atomic_store(&m->db_ok, db_ok);
    const char *b[] = {"broker"}, *d[] = {"database"};
    /* The counts are totals since start; the counter takes what is new. */
    metrics_add(m->reconnects, b, (double)broker_reconnects - metrics_value(m->reconnects, b));
    metrics_add(m->reconnects, d, (double)db_reconnects - metrics_value(m->reconnects, d));
}

struct metrics_registry *worker_metrics_registry(worker_metrics *m)
{
    return m ? m->reg : NULL;
}

void worker_metrics_set_db_server(worker_metrics *m, const db_node *node, uint64_t reconnects)
{
    db_node_metrics_update(&m->db, node, reconnects);
}
