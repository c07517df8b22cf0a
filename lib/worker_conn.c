/* worker_conn: a worker's connections, kept up for as long as it runs.
 *
 * Owns the consuming broker (deliveries only), the confirming publisher (outbox relay, retries,
 * dead letters), the database and the outbox relay bound to them; connecting, reconnecting with
 * backoff until stopped, and reporting their health to /healthz and /metrics.
 */
#include <stdio.h>
#include <unistd.h>

#include "redact.h"
#include "worker_internal.h"

void worker_conn_report(worker *w)
{
    bool broker_ok = broker_is_open(w->consumer) && broker_is_open(w->publisher);
    worker_metrics_set_health(w->metrics, broker_ok, db_is_open(w->db),
                              broker_reconnect_count(w->consumer) +
                                  broker_reconnect_count(w->publisher),
                              db_reconnect_count(w->db));
    worker_metrics_set_db_server(w->metrics, db_server(w->db), db_reconnect_count(w->db));
    time_t now = time(NULL);
    long rows;
    double age;
    if (now != w->last_backlog && db_is_open(w->db) &&
        outbox_backlog(w->db, &rows, &age) == OP_OK) {
        w->last_backlog = now;
        worker_metrics_set_backlog(w->metrics, rows, age);
    }
}

/* One pass over the three connections; false while any is down. */
static bool worker_conn_try(worker *w, bool *told)
{
    if (!db_is_open(w->db)) {
        if (db_reconnect(w->db) != OP_OK)
            log_warn(NULL, "database unreachable: %s", db_last_error(w->db));
        if (!db_is_open(w->db))
            return false;
    }
    if (!broker_is_open(w->publisher) &&
        (broker_reconnect(w->publisher) != OP_OK ||
         topology_declare(w->publisher) != OP_OK)) {
        log_warn(NULL, "broker unreachable (publisher): %s", broker_last_error(w->publisher));
        return false;
    }
    if (broker_is_open(w->consumer))
        return true;
    if (!*told && broker_last_error(w->consumer)[0]) {
        log_warn(NULL, "consumer connection lost (%s); reconnecting",
                 broker_last_error(w->consumer));
        *told = true;
    }
    /* Declared again first: the queue may be what went away. */
    if (broker_reconnect(w->consumer) != OP_OK ||
        topology_declare(w->consumer) != OP_OK ||
        broker_consume(w->consumer, w->cfg.queue, (uint16_t)w->cfg.prefetch) != OP_OK) {
        log_warn(NULL, "broker unreachable (consumer): %s", broker_last_error(w->consumer));
        return false;
    }
    log_info(NULL, "consuming '%s' from %s", w->cfg.queue, broker_current_node(w->consumer));
    return true;
}

op_status worker_conn_ensure(worker *w)
{
    backoff bo;
    backoff_init(&bo, 100, 5000, w->seed);
    bool told = false;
    for (;;) {
        bool ok = worker_conn_try(w, &told);
        worker_conn_report(w);
        if (ok)
            return OP_OK;
        if (worker_stopping(w))
            return OP_ERR_TRANSIENT;
        usleep((useconds_t)backoff_next_ms(&bo) * 1000);
    }
}

op_status worker_conn_open(worker *w)
{
    char name[128];
    broker_options bo = {.urls = w->cfg.amqp_url, .name = name};
    snprintf(name, sizeof name, "%s/consume", w->spec->program);
    if (broker_connect(&w->consumer, &bo) == OP_ERR_PERMANENT) {
        char shown[512];
        log_error(NULL, "AMQP_URL is not usable: %s",
                  redact_secrets(w->cfg.amqp_url, shown, sizeof shown));
        return OP_ERR_PERMANENT;
    }
    snprintf(name, sizeof name, "%s/publish", w->spec->program);
    bo.confirms = true;
    if (broker_connect(&w->publisher, &bo) == OP_ERR_PERMANENT)
        return OP_ERR_PERMANENT;
    /* The consumer connected before the topology existed: consume after declaring. */
    if (broker_is_open(w->publisher) && topology_declare(w->publisher) != OP_OK)
        log_warn(NULL, "declaring the topology failed: %s", broker_last_error(w->publisher));
    if (broker_is_open(w->consumer) &&
        broker_consume(w->consumer, w->cfg.queue, (uint16_t)w->cfg.prefetch) != OP_OK)
        log_warn(NULL, "consume failed: %s", broker_last_error(w->consumer));
    db_connect(&w->db, w->cfg.database_url, w->spec->program);
    if (!w->db || !w->consumer || !w->publisher)
        return OP_ERR_PERMANENT;
    if (outbox_relay_new(&w->relay, w->db, w->publisher, 0) != OP_OK)
        return OP_ERR_PERMANENT;
    return worker_conn_ensure(w);
}

void worker_conn_close(worker *w)
{
    outbox_relay_free(w->relay);
    broker_close(w->consumer);
    broker_close(w->publisher);
    db_close(w->db);
    w->relay = NULL;
    w->consumer = w->publisher = NULL;
    w->db = NULL;
}
