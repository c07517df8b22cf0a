/* db_node: the server a database connection is on (see db_node.h). */
#include "db_node.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_mutex_t db_node_lock = PTHREAD_MUTEX_INITIALIZER;
static db_node db_node_shown;
static uint64_t db_node_shown_reconnects;

bool db_node_note(db_node *n, PGconn *c)
{
    const char *host = PQhost(c), *port = PQport(c);
    char h[sizeof n->host], p[sizeof n->port];
    snprintf(h, sizeof h, "%s", host ? host : "");
    snprintf(p, sizeof p, "%s", port ? port : "");
    bool moved = n->host[0] && (strcmp(h, n->host) != 0 || strcmp(p, n->port) != 0);
    if (moved)
        n->failovers++;
    memcpy(n->host, h, sizeof h);
    memcpy(n->port, p, sizeof p);
    return moved;
}

void db_node_metrics_init(db_node_metrics *m, metrics_registry *reg)
{
    memset(m, 0, sizeof *m);
    m->server = metrics_gauge(reg, "orderpipe_db_server",
                              "1 for the PostgreSQL server the database connection is on.",
                              "host,port");
    m->failovers = metrics_counter(reg, "orderpipe_db_failovers_total",
                                   "Database reconnects that reached another server than before.",
                                   NULL);
    metrics_add(m->failovers, NULL, 0);
}

void db_node_metrics_update(db_node_metrics *m, const db_node *n, uint64_t reconnects)
{
    if (!n->host[0])
        return;
    if (strcmp(m->host, n->host) != 0 || strcmp(m->port, n->port) != 0) {
        if (m->host[0])
            metrics_set(m->server, (const char *const[]){m->host, m->port}, 0);
        metrics_set(m->server, (const char *const[]){n->host, n->port}, 1);
        memcpy(m->host, n->host, sizeof m->host);
        memcpy(m->port, n->port, sizeof m->port);
    }
    /* The count is a total since start; the counter takes what is new. */
    metrics_add(m->failovers, NULL, (double)n->failovers - metrics_value(m->failovers, NULL));
    pthread_mutex_lock(&db_node_lock);
    db_node_shown = *n;
    db_node_shown_reconnects = reconnects;
    pthread_mutex_unlock(&db_node_lock);
}

json_t *db_node_health(void)
{
    json_t *j = NULL;
    pthread_mutex_lock(&db_node_lock);
    if (db_node_shown.host[0])
        j = json_pack("{ss ss sI sI}", "host", db_node_shown.host, "port", db_node_shown.port,
                      "reconnects", (json_int_t)db_node_shown_reconnects, "failovers",
                      (json_int_t)db_node_shown.failovers);
    pthread_mutex_unlock(&db_node_lock);
    return j;
}
