/* worker_housekeeping: the work a worker does between batches.
 *
 * Owns the outbox relay's schedule (once a second, at once after a direct publish failed: it
 * publishes rows nobody published, a crashed process's, a failed publish's, the replay tool's),
 * the spec's periodic tick (watchdogs), and retention: the time partitions of the outbox, the
 * inbox and the transitions made ahead and dropped past retention (lib/partitions.h).
 */
#include <stdlib.h>

#include "clock.h"
#include "inbox.h"
#include "partitions.h"
#include "worker_internal.h"

void worker_housekeeping_flush_outbox(worker *w)
{
    int published;
    do {
        published = 0;
        if (!broker_is_open(w->publisher) || !db_is_open(w->db))
            return;
        if (outbox_relay_flush(w->relay, &published) != OP_OK) {
            log_warn(NULL, "outbox relay: %s / %s", broker_last_error(w->publisher),
                     db_last_error(w->db));
            return;
        }
        worker_metrics_published(w->metrics, published);
    } while (published > 0 && !worker_stopping(w));
}

static bool worker_tick_due(worker *w, uint64_t now_ms)
{
    if (!w->spec->tick || now_ms < w->next_tick_ms)
        return false;
    w->next_tick_ms = now_ms + (uint64_t)(w->spec->tick_ms > 0 ? w->spec->tick_ms : 1000);
    return true;
}

static bool worker_relay_due(worker *w, uint64_t now_ms)
{
    if (!w->relay_now && now_ms < w->next_relay_ms)
        return false;
    w->relay_now = false;
    w->next_relay_ms = now_ms + 1000;
    return true;
}

/* RETENTION_PRUNE=delete: a few small deletes of what is past its retention, short
 * transactions that never hold the hot rows long. */
static void worker_prune_rows(worker *w, long *inbox, long *outbox)
{
    long n;
    for (int i = 0; i < 10; i++) {
        if (inbox_prune(w->db, w->cfg.inbox_retention_s, 1000, &n) != OP_OK || n == 0)
            break;
        *inbox += n;
    }
    for (int i = 0; i < 10; i++) {
        if (outbox_prune(w->db, w->cfg.outbox_retention_s, 1000, &n) != OP_OK || n == 0)
            break;
        *outbox += n;
    }
}

/* Once a minute or so, whichever of the worker processes gets there: the partitions ahead are
 * made and those past retention dropped whole (or, RETENTION_PRUNE=delete, rows deleted). */
static void worker_prune(worker *w)
{
    time_t now = time(NULL);
    if (now < w->next_prune || !db_is_open(w->db))
        return;
    /* Up to half an interval (30 s at most) later at random, so the processes take turns. */
    long jitter = w->cfg.prune_interval_s / 2 < 30 ? w->cfg.prune_interval_s / 2 + 1 : 30;
    w->next_prune = now + w->cfg.prune_interval_s + (time_t)(rand_r(&w->seed) % jitter);
    uint64_t t0 = clock_now_ms();
    const struct {
        const char *table;
        long retention_s;
    } tables[] = {
        {"outbox", w->cfg.outbox_retention_s},
        {"inbox", w->cfg.inbox_retention_s},
        {"order_transitions", w->cfg.transition_retention_s},
    };
    long parts = 0, rows[3] = {0, 0, 0};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        /* In delete mode the partitions are still made ahead, only nothing is dropped. */
        long retention = w->cfg.prune_rows ? 0 : tables[i].retention_s;
        long dropped = 0, deleted = 0;
        if (partitions_maintain(w->db, tables[i].table, retention, &dropped, &deleted) != OP_OK)
            log_warn(NULL, "partitions of %s: %s", tables[i].table, db_last_error(w->db));
        parts += dropped;
        rows[i] += deleted;
    }
    if (w->cfg.prune_rows)
        worker_prune_rows(w, &rows[1], &rows[0]);
    if (parts || rows[0] || rows[1] || rows[2])
        log_info(NULL, "pruned %ld partitions, %ld inbox, %ld outbox and %ld transition rows "
                       "past retention in %llu ms",
                 parts, rows[1], rows[0], rows[2], (unsigned long long)(clock_now_ms() - t0));
}

void worker_housekeeping(worker *w)
{
    if (worker_relay_due(w, clock_now_ms()))
        worker_housekeeping_flush_outbox(w);
    /* Read the clock again: the flush may have taken a while. */
    if (worker_tick_due(w, clock_now_ms()) && db_is_open(w->db)) {
        if (w->spec->tick(w, w->db, w->spec->arg) != OP_OK)
            log_warn(NULL, "periodic work failed: %s", db_last_error(w->db));
        /* The tick wrote its events directly (worker_emit_free): publish them now. */
        worker_housekeeping_flush_outbox(w);
    }
    worker_prune(w);
}
