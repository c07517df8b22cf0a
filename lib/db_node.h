/* db_node: which PostgreSQL server a program's database connection is on, and how often it moved.
 *
 * Owns noting the server (host and port) a libpq connection reached, counting a move to another
 * server as a failover (a multi-host DATABASE_URL with target_session_attrs=read-write lands on
 * whichever node is the primary), and showing both on /metrics (orderpipe_db_server{host,port},
 * orderpipe_db_failovers_total) and on /healthz (a "database" object).
 *
 * The health snapshot is process-wide and guarded by a mutex: the admin thread of a worker reads
 * it while the worker's loop writes it. Memory: no allocation besides the JSON db_node_health
 * returns (the caller's, json_decref).
 */
#ifndef ORDERPIPE_DB_NODE_H
#define ORDERPIPE_DB_NODE_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "metrics.h"

typedef struct db_node {
    char host[128];     /* "" until a connection was noted */
    char port[16];
    uint64_t failovers; /* connections that reached another server than the one before */
} db_node;

/* Records the server `c` (connected) is on; true when it differs from the one noted before. */
bool db_node_note(db_node *n, PGconn *c);

/* The metric families of one program's database connection (the registry owns them). */
typedef struct db_node_metrics {
    metrics_family *server, *failovers;
    char host[128], port[16]; /* the series set to 1 */
} db_node_metrics;

void db_node_metrics_init(db_node_metrics *m, metrics_registry *reg);
/* Shows `n` on /metrics and in the process's /healthz snapshot with its reconnect count. */
void db_node_metrics_update(db_node_metrics *m, const db_node *n, uint64_t reconnects);

/* {"host","port","reconnects","failovers"} of the last update, or NULL before any. */
json_t *db_node_health(void);

#endif
