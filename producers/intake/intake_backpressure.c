/* intake_backpressure: slows new orders with 429 when the pipeline falls behind (docs/design.md §1).
 *
 * A watcher thread with its own broker and database connections samples, every interval, the
 * ready messages of the work queues and the unpublished outbox rows; the event loop only reads
 * the verdict, so a slow or unreachable server never stalls request handling. Hysteresis: the
 * intake refuses once a figure passes its bound and admits again below 80 % of it, so it does not
 * flap around the bound. A watcher that cannot measure keeps its last verdict.
 *
 * Tenants are isolated: past a bound only the clients filling the pipeline are refused (those
 * whose recent demand is at least half the mean of the active clients, fairshare_heavy), and a
 * client asking far less than the others is still served. What those clients add is bounded:
 * past twice the bound every client is refused. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "intake.h"
#include "clock.h"
#include "log.h"
#include "outbox.h"
#include "topology.h"

struct intake_backpressure {
    const intake_config *cfg;
    pthread_t thread;
    atomic_bool stop;
    atomic_bool overloaded;
    atomic_bool saturated; /* past twice a bound: every client is refused */
    atomic_long queued;   /* ready messages in the work queues at the last sample */
    atomic_long backlog;  /* unpublished outbox rows at the last sample */
    bool db_lost;         /* the last backlog sample failed (the watcher thread's own) */
};

static bool backpressure_over(long value, long bound, bool was_over)
{
    if (bound <= 0 || value < 0)
        return false;
    return was_over ? value * 5 >= bound * 4 : value > bound;
}

static void backpressure_sample(intake_backpressure *bp, broker *b, db *d)
{
    long queued = -1, rows = -1;
    if (b && bp->cfg->max_queue_depth > 0) {
        if (!broker_is_open(b))
            broker_reconnect(b);
        queued = 0;
        for (const topology_queue *q = topology_queues; q->name && queued >= 0; q++) {
            long n = topology_queue_depth(b, q->name);
            queued = n < 0 ? -1 : queued + n;
        }
    }
    if (d && bp->cfg->max_outbox_rows > 0) {
        double age;
        /* A restarted PostgreSQL leaves the connection closed: without reconnecting, the bound
         * would go unwatched for good. */
        if (!db_is_open(d))
            db_reconnect(d);
        if (outbox_backlog(d, &rows, &age) != OP_OK)
            rows = -1;
        if ((rows < 0) != bp->db_lost) {
            bp->db_lost = rows < 0;
            if (bp->db_lost)
                log_warn(NULL, "backpressure: cannot read the outbox backlog (%s); keeping the "
                               "last verdict and reconnecting", db_last_error(d));
            else
                log_info(NULL, "backpressure: reading the outbox backlog again");
        }
    }
    if (queued >= 0)
        atomic_store(&bp->queued, queued);
    if (rows >= 0)
        atomic_store(&bp->backlog, rows);
    bool sat_was = atomic_load(&bp->saturated);
    bool sat = backpressure_over(atomic_load(&bp->queued), bp->cfg->max_queue_depth * 2, sat_was) ||
               backpressure_over(atomic_load(&bp->backlog), bp->cfg->max_outbox_rows * 2, sat_was);
    if (sat != sat_was)
        atomic_store(&bp->saturated, sat);
    bool was = atomic_load(&bp->overloaded);
    bool now = backpressure_over(atomic_load(&bp->queued), bp->cfg->max_queue_depth, was) ||
               backpressure_over(atomic_load(&bp->backlog), bp->cfg->max_outbox_rows, was);
    if (now != was) {
        atomic_store(&bp->overloaded, now);
        if (now)
            log_warn(NULL, "backpressure on: %ld messages queued, %ld outbox rows unpublished",
                     atomic_load(&bp->queued), atomic_load(&bp->backlog));
        else
            log_info(NULL, "backpressure off");
    }
}

static void *backpressure_main(void *arg)
{
    intake_backpressure *bp = arg;
    broker *b = NULL;
    db *d = NULL;
    if (bp->cfg->max_queue_depth > 0) {
        broker_options bo = {.urls = bp->cfg->amqp_url, .name = "orderpipe-intake-backpressure"};
        broker_connect(&b, &bo);
    }
    if (bp->cfg->max_outbox_rows > 0 && bp->cfg->database_url)
        db_connect(&d, bp->cfg->database_url, "orderpipe-intake-backpressure");
    long interval = bp->cfg->backpressure_interval_ms;
    while (!atomic_load(&bp->stop)) {
        backpressure_sample(bp, b, d);
        struct timespec ts = {interval / 1000, (interval % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    broker_close(b);
    db_close(d);
    return NULL;
}

int intake_backpressure_start(intake *in)
{
    if (in->cfg.max_queue_depth <= 0 && in->cfg.max_outbox_rows <= 0)
        return 0;
    intake_backpressure *bp = calloc(1, sizeof *bp);
    if (!bp)
        return -1;
    bp->cfg = &in->cfg;
    if (pthread_create(&bp->thread, NULL, backpressure_main, bp) != 0) {
        free(bp);
        return -1;
    }
    in->backpressure = bp;
    return 0;
}

void intake_backpressure_stop(intake *in)
{
    intake_backpressure *bp = in->backpressure;
    if (!bp)
        return;
    atomic_store(&bp->stop, true);
    pthread_join(bp->thread, NULL);
    free(bp);
    in->backpressure = NULL;
}

bool intake_backpressure_active(const intake *in, const intake_client *c, long *queued,
                                long *backlog)
{
    const intake_backpressure *bp = in->backpressure;
    if (!bp)
        return false;
    *queued = atomic_load(&bp->queued);
    *backlog = atomic_load(&bp->backlog);
    if (!atomic_load(&bp->overloaded))
        return false;
    if (atomic_load(&bp->saturated))
        return true;
    return fairshare_heavy(&in->fair, (size_t)(c - in->clients), clock_now_ns());
}
