/* worker: the consume loop every saga worker runs.
 *
 * Owns, for one consumer queue (topology.h): connecting to RabbitMQ (a consuming broker and a
 * confirming one for the outbox relay, retries and dead letters) and PostgreSQL; the envelope and
 * schema checks of each delivery; handling a batch of deliveries in one transaction with their
 * inbox rows (a redelivery is a no-op) and the outbox rows they emit — set-based when the routes
 * allow, else (or when that fails) one savepoint per message; acking only after commit;
 * routing failures (transient -> `<queue>.retry.N` with growing delays, permanent or exhausted ->
 * `<queue>.dlq` with the reason in headers; a delivery that cannot be routed goes back to its
 * queue, and the worker declares the topology again and pauses, so it never spins); publishing
 * the batch's events right after its commit (the outbox relay, once a second, catches what a
 * failure left); a periodic tick (watchdogs); reconnecting; and draining on SIGTERM.
 *
 * A worker program fills a worker_spec with its routes and calls worker_main. The engine's parts
 * are listed in worker_internal.h; header names and dead-letter reasons are in wire.h.
 */
#ifndef ORDERPIPE_WORKER_H
#define ORDERPIPE_WORKER_H

#include <jansson.h>
#include <stdbool.h>

#include "broker.h"
#include "db.h"
#include "jsonschema.h"
#include "cloudevent.h"
#include "log.h"
#include "status.h"

typedef struct worker worker;

/* The batch linger of a worker whose spec does not choose one (linger.h). */
#define WORKER_DEFAULT_LINGER_MS 10

/* What a handler sees of the message it handles. Valid during the handler call only. */
typedef struct worker_msg {
    worker *w;
    db *db;
    const cloudevent_view *ev;       /* envelope and data, schema-checked */
    const broker_delivery *delivery;
    int attempt;                /* 1 on first delivery, +1 per retry */
    log_ctx log;                /* order id, message id, traceparent for log lines */
    char error[256];            /* a handler that fails says why here (goes to DLQ headers) */
    const char *reason;         /* the DLQ reason code of a permanent failure (a static string;
                                   NULL: "handler_refused"), e.g. "not_order_owner" */
    void *state;                /* set by the spec's before_batch for the handler; freed with
                                   the spec's free_state after the message is settled */
    op_status outcome;          /* OP_OK unless a set handler gave up on it (worker_msg_fail) */
    json_t *emits;              /* outbox rows worker_emit queued: written with the message's
                                   transaction, dropped if it rolls back (the engine owns them) */
} worker_msg;

/* Handles one event. Called inside the transaction that also records the inbox row: return OP_OK
 * to commit (and ack), OP_ERR_TRANSIENT to roll back and retry later, OP_ERR_PERMANENT to roll
 * back and dead-letter. Deliveries are handled in batches: one transaction for the batch, one
 * savepoint per message, so a failing message rolls back alone. A handler may therefore run more
 * than once for one message (the batch is retried after a deadlock or serialization failure), so
 * its only effects are through m->db and worker_emit. */
typedef op_status (*worker_handler_fn)(worker_msg *m, void *arg);

/* A handler that runs its own transactions (the payment worker must not hold one open while it
 * calls the provider). It must call worker_txn for its final transaction so the inbox row is
 * written with its effects. */
typedef op_status (*worker_raw_handler_fn)(worker_msg *m, void *arg);

/* Handles several messages of one route at once, set-based (a handful of statements for the
 * batch instead of a few per message), inside the batch transaction after their inbox rows were
 * recorded. Returns OP_OK when every message is handled, except those it marked with
 * worker_msg_fail, on which it must have had no effect: their inbox rows are removed and they go
 * to the retry tiers or the DLQ. Any other status rolls the batch back, and the worker then
 * handles each message alone in its own savepoint by calling the handler with n = 1, so one bad
 * message cannot sink the batch; that status is then the message's outcome. */
typedef op_status (*worker_set_handler_fn)(worker_msg *const *msgs, int n, void *arg);

typedef struct worker_route {
    const char *type;                /* event type = routing key, e.g. "order.placed" */
    worker_handler_fn handle;        /* exactly one of handle / handle_set / handle_raw */
    worker_set_handler_fn handle_set;
    worker_raw_handler_fn handle_raw;
} worker_route;

typedef struct worker_spec {
    const char *name;                /* the queue and inbox consumer name, e.g. "reservation" */
    const char *program;             /* e.g. "orderpipe-reservation" (logs, connection name) */
    const char *summary;             /* one line for --help */
    const worker_route *routes;      /* terminated by a route with type NULL */
    void *arg;                       /* passed to handlers and tick */
    /* Optional periodic work (watchdogs); runs between batches every tick_ms. */
    op_status (*tick)(worker *w, db *d, void *arg);
    int tick_ms;
    /* Optional: called at the start of each batch transaction with the batch's events, to take
     * the locks the batch needs in one global order (e.g. inventory rows sorted by SKU), so
     * concurrent batches never deadlock. one_by_one: the messages will run one by one, each in
     * its own savepoint (the fallback after a set-based attempt failed), so the locks must be
     * taken here; a set-based batch may leave them to its set handlers. */
    op_status (*prepare_batch)(worker *w, db *d, const cloudevent_view *const *evs, int n,
                               bool one_by_one, void *arg);
    /* Optional: called before the batch transaction, outside any transaction, with the batch's
     * messages (transactional routes only), for work that must not hold a transaction open,
     * such as calling a payment provider: it does that work for the whole batch at once and
     * leaves each message's result in m->state for its handler. A non-OP_OK status fails the
     * whole batch transiently (retried through the tiers). */
    op_status (*before_batch)(worker *w, db *d, worker_msg *const *msgs, int n, void *arg);
    void (*free_state)(void *state);
    /* The batch linger when neither --batch-linger-ms nor WORKER_BATCH_LINGER_MS sets one
     * (0: WORKER_DEFAULT_LINGER_MS). A worker off the placed -> confirmed path may linger
     * longer: bigger batches cost the machine less, which the workers on that path need. */
    int linger_ms;
    /* Optional: extra --help text and start-up, called after connecting, before consuming. */
    const char *help_extra;
    op_status (*start)(worker *w, db *d, void *arg);
} worker_spec;

/* The checks a worker runs on a delivery before any handler, without I/O (the fuzz target
 * fuzz_worker_delivery runs them too): parses d's body as a CloudEvent, finds its route
 * among routes (terminated by type NULL) and validates its data against the registry's schema
 * of its type. NULL when it may be handled (*route set); else the dead-letter reason
 * ("invalid_message", "unknown_type", "schema_violation") with err (errlen bytes) saying why,
 * always valid UTF-8. Either way release *ev with cloudevent_view_free (it is filled once the
 * envelope parsed, zeroed otherwise). */
const char *worker_check_delivery(const worker_route *routes, const char *queue,
                                  const jsonschema_registry *schemas, const broker_delivery *d,
                                  cloudevent_view *ev, const worker_route **route, char *err,
                                  size_t errlen);

/* The delivery's attempt from its x-attempt header (1 on a first delivery), clamped to the
 * retry tiers whatever the publisher wrote. */
int worker_attempt(const broker_delivery *d);

/* The headers a failed delivery is republished with (to a retry tier or the DLQ): a copy of
 * d's, with x-original-routing-key and x-last-error (error cut on a character boundary). The
 * caller owns the result (json_decref). */
json_t *worker_failure_headers(const broker_delivery *d, const char *error);

/* Parses flags and environment, connects, runs until SIGTERM/SIGINT, drains, returns the exit
 * status for main (0 after a clean drain). */
int worker_main(const worker_spec *spec, int argc, char **argv);

/* Inside a handler: queues an outbox row for a new event `type` about the message's order, with
 * `data` (stolen) and the message's traceparent continued. The worker writes the rows of all the
 * batch's messages in one statement before the commit, in the order they were emitted. */
op_status worker_emit(worker_msg *m, const char *type, const char *order_id, json_t *data);

/* Inside a set handler: m could not be handled (st: OP_ERR_TRANSIENT retries it, OP_ERR_PERMANENT
 * dead-letters it), for the reason given printf-style. */
void worker_msg_fail(worker_msg *m, op_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A handler refuses m for good: it is dead-lettered with `reason` (a static code, e.g.
 * "invalid_order") as its x-dead-reason and the printf-style text as its x-last-error. Returns
 * OP_ERR_PERMANENT, for a handler to return; in a set handler it marks m as worker_msg_fail
 * does. */
op_status worker_msg_refuse(worker_msg *m, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Outside a message (tick): the same, with an explicit traceparent (may be NULL). */
op_status worker_emit_free(worker *w, db *d, const char *type, const char *order_id, json_t *data,
                           const char *traceparent);

/* For raw handlers: runs fn in a transaction that also records the inbox row of m. OP_DUPLICATE
 * if the message was already handled (fn is then not run). */
op_status worker_txn(worker_msg *m, worker_handler_fn fn, void *arg);

/* The order ids of msgs as a PostgreSQL uuid[] literal ("{id,id,...}"), for statements that
 * take a batch's orders at once (never NULL: out of memory ends the process, mem.h). The caller
 * frees it. */
char *worker_order_ids(worker_msg *const *msgs, int n);
/* The same for the events of a batch (prepare_batch) whose type is `type`, or all when NULL. */
char *worker_event_order_ids(const cloudevent_view *const *evs, int n, const char *type);

/* The worker's name (its queue), for handlers that log or label. */
const char *worker_name(const worker *w);

/* In before_batch: false once the batch has spent its time for calls to outside services
 * (WORKER_CALL_BUDGET_MS, default 20 s). A provider or webhook call can take seconds, and while
 * it runs nothing answers the broker's heartbeats (30 s; the broker gives up after two): a batch
 * of slow calls would lose both connections, and its deliveries would come back to the same
 * fate. A message whose call did not fit fails transiently and goes through the retry tiers. */
bool worker_batch_has_time(const worker *w);
/* The same as milliseconds left (<= 0 once spent), to bound one call's timeout by it. */
long worker_batch_ms_left(const worker *w);
/* The worker's metrics registry, for a program's own families (register them in spec->start). */
struct metrics_registry *worker_registry(const worker *w);

/* True once SIGTERM arrived: long handlers (provider calls) should finish and return. */
bool worker_stopping(const worker *w);

#endif
