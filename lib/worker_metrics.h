/* worker_metrics: the Prometheus metrics and /healthz of a worker process.
 *
 * Owns the worker's metrics registry and its admin HTTP server (lib/admin_http.h): messages
 * handled by type and outcome with a handling-latency histogram, retries, dead letters by reason,
 * inbox duplicates, outbox rows published, outbox backlog and age, broker and database
 * reconnects, and health (broker and database connected). */
#ifndef ORDERPIPE_WORKER_METRICS_H
#define ORDERPIPE_WORKER_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "db_node.h"
#include "status.h"

typedef struct worker_metrics worker_metrics;

/* Starts serving /metrics and /healthz on `listen` ("host:port", port 0 = any). *out is freed by
 * worker_metrics_stop. */
op_status worker_metrics_start(worker_metrics **out, const char *listen, const char *worker_name);
void worker_metrics_stop(worker_metrics *m);
/* The registry it serves (owned by m), for a worker program's own families. */
struct metrics_registry *worker_metrics_registry(worker_metrics *m);

/* outcome: ok | duplicate | retried | dead_lettered; start: CLOCK_MONOTONIC when handling began. */
void worker_metrics_handled(worker_metrics *m, const char *type, const char *outcome,
                            uint64_t start_ms);
void worker_metrics_retried(worker_metrics *m);
void worker_metrics_dead_lettered(worker_metrics *m, const char *reason);
void worker_metrics_duplicate(worker_metrics *m);
void worker_metrics_published(worker_metrics *m, int rows);
void worker_metrics_set_backlog(worker_metrics *m, long rows, double oldest_age_s);
void worker_metrics_set_health(worker_metrics *m, bool broker_ok, bool db_ok,
                               unsigned long broker_reconnects, unsigned long db_reconnects);
/* The PostgreSQL server the worker's connection is on (/metrics and /healthz). */
void worker_metrics_set_db_server(worker_metrics *m, const db_node *node, uint64_t reconnects);

#endif
