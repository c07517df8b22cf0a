/* worker_internal: what the parts of the worker engine share; private to lib/worker*.c
 * (programs use worker.h).
 *
 * The engine is split by job, each file owning one:
 *   worker.c              the process: signals, the loop, worker_main
 *   worker_config.c       flags and environment -> worker_config, --help
 *   worker_conn.c         the two broker connections and the database: connect, reconnect, health
 *   worker_check.c        the checks of a delivery before any handler (envelope, bounds, schema)
 *   worker_batch.c        a batch from receipt to ack: gathering, settling, acking
 *   worker_txn.c          the batch transaction: inbox rows, set-based or one savepoint per message
 *   worker_failure.c      failure routing: retry tier or DLQ, the headers, giving back
 *   worker_emit.c         outbox rows of handlers and the fast path that publishes them on commit
 *   worker_housekeeping.c between batches: the outbox relay, the spec's tick, retention pruning
 */
#ifndef ORDERPIPE_WORKER_INTERNAL_H
#define ORDERPIPE_WORKER_INTERNAL_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "backoff.h"
#include "clock.h"
#include "outbox.h"
#include "topology.h"
#include "worker.h"
#include "worker_metrics.h"

/* --- configuration (worker_config.c) ------------------------------------------------------- */

typedef struct worker_config {
    const char *amqp_url;
    const char *database_url;
    const char *schema_dir;
    const char *metrics_listen;
    long prefetch;
    long batch;
    long idle_wait_ms;          /* how long an empty batch waits for its first delivery */
    long linger_ms;             /* how long a batch waits for more after its first delivery */
    long call_budget_ms;        /* a batch's time for calls to outside services */
    long inbox_retention_s;     /* inbox rows older than this are pruned */
    long outbox_retention_s;    /* published outbox rows older than this are pruned */
    long transition_retention_s; /* order_transitions older than this are dropped; 0: kept */
    long prune_interval_s;      /* how often (plus up to 30 s) retention is applied */
    bool prune_rows;            /* RETENTION_PRUNE=delete: rows deleted, no partition dropped */
    long shard;                 /* the shard consumed when the queue is sharded, else -1 */
    char queue[128];            /* the queue consumed: the work queue or that shard */
} worker_config;

/* Fills *c from the environment, then argv's flags (a flag wins). OP_OK: run with it (or, with
 * *help set, --help was asked for and printed on stdout: exit 0). OP_ERR_PERMANENT: a value is
 * invalid or missing; what is wrong is on stderr. The strings point into argv and environ. */
op_status worker_config_parse(worker_config *c, const worker_spec *spec, int argc, char **argv,
                              bool *help);

/* The batch linger when neither flag nor environment sets one. */
long worker_config_default_linger_ms(const worker_spec *spec);

/* The most deliveries one batch takes: no more than the prefetch can arrive before it is acked,
 * so lingering for more than that would only wait. */
int worker_config_batch_max(const worker_config *c);

/* --- the worker ---------------------------------------------------------------------------- */

struct worker {
    const worker_spec *spec;
    worker_config cfg;
    broker *consumer;    /* deliveries only */
    broker *publisher;   /* confirms: outbox relay, retries, dead letters */
    db *db;
    outbox_relay *relay;
    jsonschema_registry *schemas;
    worker_metrics *metrics;
    uint64_t next_tick_ms;      /* clock_now_ms readings */
    time_t last_backlog;
    time_t next_prune;
    uint64_t next_relay_ms; /* when the relay next looks for rows nobody published */
    bool relay_now;             /* a direct publish failed: the relay should look at once */
    int given_back;             /* failed deliveries given back since the last batch */
    uint64_t batch_started_ms; /* when the batch being handled started (its budget) */
    backoff route_backoff;      /* the pause after given-back deliveries, until routing works */
    unsigned seed;
};

/* Whole milliseconds on CLOCK_MONOTONIC since `since`. */

/* --- connections (worker_conn.c) ----------------------------------------------------------- */

/* Opens both broker connections and the database, declares the topology and consumes.
 * OP_ERR_PERMANENT when a URL is unusable; else as worker_conn_ensure. */
op_status worker_conn_open(worker *w);
/* Blocks (with backoff) until the consumer, the publisher and the database are all up, the
 * topology declared and the queue consumed. OP_ERR_TRANSIENT once stopping. */
op_status worker_conn_ensure(worker *w);
/* Health and reconnect counts for /healthz and /metrics; the outbox backlog at most once a
 * second. */
void worker_conn_report(worker *w);
/* Closes what worker_conn_open opened (any of it may be NULL). */
void worker_conn_close(worker *w);

/* --- checks (worker_check.c) --------------------------------------------------------------- */

/* The longest envelope attributes a delivery may carry, in bytes. Anyone with the broker's
 * credentials can publish: the id becomes the inbox key (a btree entry is limited to about
 * 2.7 KB, and one that does not fit fails the whole batch's statement), and the others reach
 * logs and headers. The same bounds are in schemas/cloudevent.json. */
#define WORKER_MAX_EVENT_ID 128
#define WORKER_MAX_SOURCE 128
#define WORKER_MAX_TYPE 64
#define WORKER_MAX_TIME 64
#define WORKER_MAX_SUBJECT 256
#define WORKER_MAX_MESSAGE_ID 128

/* --- one delivery of a batch (worker_batch.c, worker_txn.c, worker_emit.c) ----------------- */

typedef struct worker_item {
    broker_delivery d;
    cloudevent_view ev;
    const worker_route *route; /* NULL once dead-lettered by the checks */
    worker_msg m;
    op_status st;              /* the outcome of its handling */
    uint64_t generation;       /* consumer connection it arrived on: acks are only valid there */
    uint64_t t0_ms;
} worker_item;

/* --- the batch transaction (worker_txn.c) -------------------------------------------------- */

/* Handles the transactional items of a batch in one transaction: set-based when every route
 * has a set handler, else (or once that failed) one savepoint per message. Sets each item's st
 * (and m.error when it failed). */
void worker_txn_run_batch(worker *w, worker_item **items, int n);
/* Runs a raw handler, again after a lost database came back. Sets it->st. */
void worker_txn_run_raw(worker *w, worker_item *it);

/* --- failure routing (worker_failure.c) ---------------------------------------------------- */

typedef enum {
    WORKER_FATE_ACK,          /* handled, or a redelivery of a handled message */
    WORKER_FATE_RETRY,        /* to retry tier `tier`, arriving as attempt next_attempt */
    WORKER_FATE_DEAD_LETTER,  /* to the DLQ for `reason` */
} worker_fate_kind;

typedef struct worker_fate {
    worker_fate_kind kind;
    const char *reason;   /* DEAD_LETTER: the x-dead-reason (static) */
    int tier;             /* RETRY: 0-based retry tier */
    int next_attempt;     /* RETRY: the x-attempt it is republished with */
} worker_fate;

/* Where a delivery handled with status st on attempt `attempt` goes: OP_OK and OP_DUPLICATE are
 * acked; OP_ERR_PERMANENT is dead-lettered for refused_reason (NULL: handler_refused); anything
 * else retries through the tier of its attempt, or is dead-lettered once the tiers are spent. */
worker_fate worker_failure_fate(op_status st, int attempt, const char *refused_reason);

/* The headers d is republished with for `fate` (not ACK): worker_failure_headers plus, for a
 * retry, x-attempt; for a dead letter, the reason, the attempts spent, the queue it came from
 * and dead_at. The caller owns the result. */
json_t *worker_failure_fate_headers(const broker_delivery *d, const worker_fate *fate,
                                    const char *error, int attempt, const char *queue,
                                    const char *dead_at);

/* Sends d where `fate` says (a retry tier or the DLQ) with `error` in its headers and acks it.
 * If the publish is not confirmed, d goes back to its queue (w->given_back counts it) and the
 * status says why. */
op_status worker_failure_route(worker *w, const broker_delivery *d, const worker_fate *fate,
                               const char *error, int attempt, const log_ctx *lc);

/* After deliveries were given back: declares the topology again and pauses, growing while
 * routing keeps failing, so the worker does not spin on what comes straight back. */
void worker_failure_repair_routes(worker *w);

/* --- emitting (worker_emit.c) -------------------------------------------------------------- */

/* The outbox rows the handled items (st OP_OK) emitted, in order (a new array). */
json_t *worker_emit_rows(worker_item **items, int n);
/* The fast path: right after the commit, publishes the rows the items' handlers emitted and
 * marks them, so the next worker gets them without waiting for the relay. */
void worker_emit_publish(worker *w, worker_item **items, int n);

/* --- between batches (worker_housekeeping.c) ----------------------------------------------- */

/* Publishes what the outbox holds unpublished, until nothing is left or stopping. */
void worker_housekeeping_flush_outbox(worker *w);
/* The outbox relay once a second (at once after a direct publish failed), the spec's tick when
 * due, and pruning past retention once a minute. */
void worker_housekeeping(worker *w);

/* --- batches (worker_batch.c) -------------------------------------------------------------- */

/* Receives up to a batch of deliveries, dead-letters the malformed ones, handles the rest
 * (transactional handlers together, raw handlers one by one), then settles and acks each.
 * Returns the number of deliveries received. */
int worker_batch_handle(worker *w);

#endif
