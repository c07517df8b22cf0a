/* worker_txn: the batch transaction, where handlers' effects and inbox rows commit together.
 *
 * Owns how a batch's transactional messages are handled in one PostgreSQL transaction: set-based
 * (the inbox rows in one statement, each route's set handler once) when every route allows,
 * else, or once that failed, one savepoint per message so a failing message rolls back alone.
 * The outbox rows the handlers emitted are written before the commit. A lost database is waited
 * for and the batch run again, so an outage does not spend the messages' retry attempts. Also
 * the handler-side API of a message's outcome (worker_msg_fail, worker_msg_refuse) and
 * worker_txn for raw handlers.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "inbox.h"
#include "mem.h"
#include "utf8.h"
#include "worker_internal.h"

/* The batch being handled, and scratch arrays of its size (one allocation per batch, so the
 * stack never grows with it). */
typedef struct worker_txn_batch {
    worker *w;
    worker_item **items;   /* the items handled in the shared transaction */
    int n;
    bool one_by_one;       /* each message in its own savepoint, not set-based */
    inbox_msg *ids;        /* n events' ids and times */
    inbox_msg *failed;     /* those of messages a set handler gave up on */
    bool *fresh;           /* per item: its inbox row is new */
    worker_msg **msgs;     /* a route's fresh messages; before_batch's messages */
    const cloudevent_view **evs;
} worker_txn_batch;

typedef struct worker_txn_call {
    worker_msg *m;
    worker_handler_fn fn;
    void *arg;
} worker_txn_call;

/* Forgets what an earlier run of the message's transaction queued (the body may run again). */
static void worker_msg_reset(worker_msg *m)
{
    m->error[0] = '\0';
    m->reason = NULL;
    m->outcome = OP_OK;
    json_decref(m->emits);
    m->emits = NULL;
}

static op_status worker_txn_body(db *d, void *arg)
{
    worker_txn_call *c = arg;
    worker_msg_reset(c->m);
    inbox_msg im = {c->m->ev->id, c->m->ev->time};
    op_status st = inbox_record(d, c->m->w->spec->name, &im);
    if (st != OP_OK)
        return st; /* OP_DUPLICATE rolls back: the first delivery's effects stand alone */
    st = c->fn(c->m, c->arg);
    if (st == OP_OK && c->m->emits)
        st = outbox_write_rows(d, c->m->emits);
    return st;
}

op_status worker_txn(worker_msg *m, worker_handler_fn fn, void *arg)
{
    worker_txn_call c = {m, fn, arg};
    return db_transaction(m->db, worker_txn_body, &c, 0);
}

void worker_msg_fail(worker_msg *m, op_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->error, sizeof m->error, fmt, ap);
    va_end(ap);
    m->outcome = st == OP_OK ? OP_ERR_TRANSIENT : st;
    json_decref(m->emits);
    m->emits = NULL;
}

op_status worker_msg_refuse(worker_msg *m, const char *reason, const char *fmt, ...)
{
    /* Formatted wider than m->error, then copied on a character boundary: the text may hold what
     * a client sent, and half a character would make jansson refuse the DLQ header. */
    char text[2 * sizeof m->error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    utf8_copy(m->error, sizeof m->error, text);
    m->reason = reason;
    m->outcome = OP_ERR_PERMANENT;
    json_decref(m->emits);
    m->emits = NULL;
    return OP_ERR_PERMANENT;
}

/* Calls the item's handler, or its route's set handler with this one message. */
static op_status worker_txn_handle_one(worker *w, worker_item *it)
{
    worker_msg *one[] = {&it->m};
    op_status st = it->route->handle ? it->route->handle(&it->m, w->spec->arg)
                                     : it->route->handle_set(one, 1, w->spec->arg);
    return st == OP_OK ? it->m.outcome : st;
}

/* The outbox rows of the batch's handled messages, in one statement before the commit. */
static op_status worker_txn_write_emits(db *d, worker_txn_batch *b)
{
    json_t *rows = worker_emit_rows(b->items, b->n);
    op_status st = outbox_write_rows(d, rows);
    json_decref(rows);
    return st;
}

/* Each message in its own savepoint, so one that fails rolls back alone and the rest commit
 * together. The savepoint of a message is released together with the next message's opening
 * (the commit releases the last): one round trip per message for its isolation and inbox row. */
static op_status worker_txn_one_by_one(db *d, worker_txn_batch *b)
{
    worker *w = b->w;
    for (int i = 0; i < b->n; i++) {
        worker_item *it = b->items[i];
        inbox_msg im = {it->ev.id, it->ev.time};
        op_status st = inbox_record_in_savepoint(d, "worker_msg", i > 0, w->spec->name, &im);
        if (st == OP_DUPLICATE) { /* handled before: nothing was done, nothing to undo */
            it->st = st;
            continue;
        }
        if (st != OP_OK)
            return st;
        it->st = st = worker_txn_handle_one(w, it);
        if (st != OP_OK) {
            json_decref(it->m.emits);
            it->m.emits = NULL;
            if (!db_is_open(d))
                return OP_ERR_TRANSIENT;
            if ((st = db_command(d, "rollback to savepoint worker_msg", 0, NULL)) != OP_OK)
                return st;
        }
    }
    return worker_txn_write_emits(d, b);
}

/* The whole batch set-based: the inbox rows in one statement, then each route's set handler once
 * with its fresh messages. Fails as a whole if a handler fails; messages a handler gave up on
 * (worker_msg_fail) lose their inbox rows again. */
static op_status worker_txn_set(db *d, worker_txn_batch *b)
{
    worker *w = b->w;
    int n = b->n, nfailed = 0;
    for (int i = 0; i < n; i++)
        b->ids[i] = (inbox_msg){b->items[i]->ev.id, b->items[i]->ev.time};
    op_status st = inbox_record_many(d, w->spec->name, b->ids, n, b->fresh);
    if (st != OP_OK)
        return st;
    for (int i = 0; i < n; i++)
        b->items[i]->st = b->fresh[i] ? OP_OK : OP_DUPLICATE;
    for (const worker_route *r = w->spec->routes; r->type; r++) {
        int k = 0;
        for (int i = 0; i < n; i++)
            if (b->fresh[i] && b->items[i]->route == r)
                b->msgs[k++] = &b->items[i]->m;
        if (k > 0 && (st = r->handle_set(b->msgs, k, w->spec->arg)) != OP_OK)
            return st;
    }
    for (int i = 0; i < n; i++) {
        worker_item *it = b->items[i];
        if (b->fresh[i] && it->m.outcome != OP_OK) {
            it->st = it->m.outcome;
            b->failed[nfailed++] = b->ids[i];
        }
    }
    if (nfailed > 0 && (st = inbox_forget_many(d, w->spec->name, b->failed, nfailed)) != OP_OK)
        return st;
    return worker_txn_write_emits(d, b);
}

/* The body of a batch transaction (it may run again after a deadlock: it starts afresh). */
static op_status worker_txn_batch_body(db *d, void *arg)
{
    worker_txn_batch *b = arg;
    worker *w = b->w;
    for (int i = 0; i < b->n; i++)
        worker_msg_reset(&b->items[i]->m);
    if (w->spec->prepare_batch) {
        for (int i = 0; i < b->n; i++)
            b->evs[i] = &b->items[i]->ev;
        op_status st = w->spec->prepare_batch(w, d, b->evs, b->n, b->one_by_one, w->spec->arg);
        if (st != OP_OK)
            return st;
    }
    return b->one_by_one ? worker_txn_one_by_one(d, b) : worker_txn_set(d, b);
}

/* Every message of the batch failed transiently: each goes through the retry tiers. */
static void worker_txn_fail_all(worker *w, worker_item **items, int n)
{
    for (int i = 0; i < n; i++) {
        items[i]->st = OP_ERR_TRANSIENT;
        if (!items[i]->m.error[0])
            snprintf(items[i]->m.error, sizeof items[i]->m.error, "%s", db_last_error(w->db));
    }
}

/* Runs the batch transaction until it commits, the database is gone for good (stopping), or it
 * failed one by one. */
static void worker_txn_commit_batch(worker_txn_batch *b)
{
    worker *w = b->w;
    for (;;) {
        op_status st = db_transaction(w->db, worker_txn_batch_body, b, 0);
        if (st == OP_OK)
            return;
        if (!db_is_open(w->db) && !worker_stopping(w)) {
            log_warn(NULL, "database connection lost while handling a batch; reconnecting");
            if (worker_conn_ensure(w) == OP_OK)
                continue;
        }
        if (!b->one_by_one && db_is_open(w->db)) {
            log_info(NULL, "a set-based batch of %d failed (%s: %s); handling them one by one",
                     b->n, op_status_name(st), db_last_error(w->db));
            b->one_by_one = true;
            continue;
        }
        /* The batch as a whole failed (e.g. its commit). */
        worker_txn_fail_all(w, b->items, b->n);
        return;
    }
}

void worker_txn_run_batch(worker *w, worker_item **items, int n)
{
    if (n == 0)
        return;
    worker_txn_batch b = {
        .w = w,
        .items = items,
        .n = n,
        .ids = mem_calloc((size_t)n, sizeof *b.ids),
        .failed = mem_calloc((size_t)n, sizeof *b.failed),
        .fresh = mem_calloc((size_t)n, sizeof *b.fresh),
        .msgs = mem_calloc((size_t)n, sizeof *b.msgs),
        .evs = mem_calloc((size_t)n, sizeof *b.evs),
    };
    w->batch_started_ms = clock_now_ms();
    for (int i = 0; i < n; i++)
        if (!items[i]->route->handle_set)
            b.one_by_one = true;
    bool before_ok = true;
    if (w->spec->before_batch) {
        for (int i = 0; i < n; i++)
            b.msgs[i] = &items[i]->m;
        before_ok = w->spec->before_batch(w, w->db, b.msgs, n, w->spec->arg) == OP_OK;
    }
    if (before_ok)
        worker_txn_commit_batch(&b);
    else
        worker_txn_fail_all(w, items, n);
    free(b.ids);
    free(b.failed);
    free(b.fresh);
    free(b.msgs);
    free(b.evs);
}

void worker_txn_run_raw(worker *w, worker_item *it)
{
    for (;;) {
        it->st = it->route->handle_raw(&it->m, w->spec->arg);
        if (it->st == OP_ERR_TRANSIENT && !db_is_open(w->db) && !worker_stopping(w)) {
            log_warn(&it->m.log, "database connection lost while handling; reconnecting");
            if (worker_conn_ensure(w) == OP_OK)
                continue;
        }
        return;
    }
}
