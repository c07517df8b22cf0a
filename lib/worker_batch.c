/* worker_batch: one batch of deliveries, from receipt to ack.
 *
 * Owns gathering a batch (lingering for more, linger.h), the checks of each delivery (a
 * malformed one is dead-lettered at once), handing the rest to the transaction engine
 * (worker_txn.c) or their raw handlers, publishing what they emitted, and settling each: ack,
 * retry or dead-letter (worker_failure.c). Acks follow the commit, never precede it. Also the
 * order-id lists handlers pass to set-based statements.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linger.h"
#include "mem.h"
#include "worker_internal.h"

/* Settles one item after its handling: retry or dead-letter it, or leave its ack to the batch
 * (returns true); then metrics. */
static bool worker_batch_settle(worker *w, worker_item *it)
{
    /* A delivery from a consumer connection that has since been replaced cannot be acked: the
     * broker has already put it back, and the inbox makes its second delivery a no-op. */
    bool same_conn = broker_is_open(w->consumer) &&
                     broker_reconnect_count(w->consumer) == it->generation;
    worker_fate fate = worker_failure_fate(it->st, it->m.attempt, it->m.reason);
    const char *outcome;
    bool ack_later = false;
    if (fate.kind == WORKER_FATE_ACK) {
        outcome = it->st == OP_OK ? "ok" : "duplicate";
        if (it->st == OP_DUPLICATE) {
            log_info(&it->m.log, "%s already handled: redelivery ignored", it->ev.type);
            worker_metrics_duplicate(w->metrics);
        }
        ack_later = same_conn;
    } else {
        outcome = it->st == OP_ERR_PERMANENT ? "dead_lettered" : "retried";
        if (same_conn)
            worker_failure_route(w, &it->d, &fate,
                                 it->m.error[0] ? it->m.error : db_last_error(w->db),
                                 it->m.attempt, &it->m.log);
    }
    worker_metrics_handled(w->metrics, it->ev.type, outcome, it->t0_ms);
    return ack_later;
}

/* Receives one delivery into it and runs its checks; a malformed one is dead-lettered here
 * (it->route NULL). OP_OK when a delivery arrived. */
static op_status worker_batch_receive(worker *w, worker_item *it, int wait_ms, uint64_t generation)
{
    if (broker_next(w->consumer, wait_ms, &it->d) != OP_OK)
        return OP_TIMEOUT;
    it->t0_ms = clock_now_ms();
    it->generation = generation;
    int attempt = worker_attempt(&it->d);
    it->m = (worker_msg){.w = w, .db = w->db, .ev = &it->ev, .delivery = &it->d,
                         .attempt = attempt};
    it->m.log = (log_ctx){.message_id = it->d.message_id, .correlation_id = it->d.correlation_id};
    char err[512];
    const char *bad = worker_check_delivery(w->spec->routes, w->spec->name, w->schemas, &it->d,
                                            &it->ev, &it->route, err, sizeof err);
    if (it->ev.root) {
        it->m.log.order_id = it->ev.order_id;
        it->m.log.traceparent = it->ev.traceparent;
    }
    if (bad) {
        worker_fate fate = {.kind = WORKER_FATE_DEAD_LETTER, .reason = bad};
        worker_failure_route(w, &it->d, &fate, err, attempt, &it->m.log);
        worker_metrics_handled(w->metrics, it->ev.root ? it->ev.type : "invalid", "dead_lettered",
                               it->t0_ms);
        it->route = NULL;
    }
    return OP_OK;
}

/* Settles every item, acks the handled ones and releases the items. */
static void worker_batch_finish(worker *w, worker_item *items, int got)
{
    uint64_t *acks = mem_calloc(got > 0 ? (size_t)got : 1, sizeof *acks);
    int nacks = 0;
    for (int i = 0; i < got; i++) {
        worker_item *it = &items[i];
        if (it->route && worker_batch_settle(w, it))
            acks[nacks++] = it->d.tag;
        if (it->m.state && w->spec->free_state)
            w->spec->free_state(it->m.state);
        json_decref(it->m.emits);
        cloudevent_view_free(&it->ev);
        broker_delivery_free(&it->d);
    }
    /* Deliveries arrive in tag order on one channel: when every one of the batch is to be acked,
     * one ack with `multiple` settles them all (a broker frame per batch, not per message). */
    if (nacks > 0 && nacks == got)
        broker_ack(w->consumer, acks[nacks - 1], true);
    else
        for (int i = 0; i < nacks; i++)
            broker_ack(w->consumer, acks[i], false);
    free(acks);
}

int worker_batch_handle(worker *w)
{
    int max = worker_config_batch_max(&w->cfg), got = 0, ntxn = 0;
    worker_item *items = mem_calloc((size_t)max, sizeof *items);
    worker_item **txn = mem_calloc((size_t)max, sizeof *txn);
    uint64_t generation = broker_reconnect_count(w->consumer);
    /* A delivery given back comes straight back: the batch stops gathering at once, and the
     * loop pauses (worker_failure_repair_routes) before the next. */
    while (got < max && !worker_stopping(w) && w->given_back == 0) {
        /* Lingering (linger.h) trades a ms or two of a lone delivery's latency for bigger
         * batches: taking only what is already there makes every message pay a batch's round
         * trips alone at a moderate rate, which keeps the cores busy and everyone waiting. */
        int wait_ms = (int)w->cfg.idle_wait_ms;
        if (got > 0)
            wait_ms = (int)linger_wait_ms((long)clock_ms_since(items[0].t0_ms), got,
                                          w->cfg.linger_ms);
        worker_item *it = &items[got];
        if (worker_batch_receive(w, it, wait_ms, generation) != OP_OK)
            break;
        got++;
        if (it->route && !it->route->handle_raw)
            txn[ntxn++] = it;
    }
    worker_txn_run_batch(w, txn, ntxn);
    worker_emit_publish(w, txn, ntxn);
    /* Raw handlers each run their own transactions; their events go out together afterwards
     * (in txn's array, which the batch is done with). */
    int nraw = 0;
    for (int i = 0; i < got; i++)
        if (items[i].route && items[i].route->handle_raw) {
            worker_txn_run_raw(w, &items[i]);
            txn[nraw++] = &items[i];
        }
    worker_emit_publish(w, txn, nraw);
    worker_batch_finish(w, items, got);
    free(items);
    free(txn);
    return got;
}

char *worker_event_order_ids(const cloudevent_view *const *evs, int n, const char *type)
{
    db_array a;
    db_array_init(&a);
    for (int i = 0; i < n; i++)
        if (!type || strcmp(evs[i]->type, type) == 0)
            db_array_append(&a, evs[i]->order_id);
    db_array_text(&a);
    return a.text; /* the closed literal, handed to the caller instead of db_array_free */
}

char *worker_order_ids(worker_msg *const *msgs, int n)
{
    const cloudevent_view **evs = mem_calloc(n > 0 ? (size_t)n : 1, sizeof *evs);
    for (int i = 0; i < n; i++)
        evs[i] = msgs[i]->ev;
    char *ids = worker_event_order_ids(evs, n, NULL);
    free(evs);
    return ids;
}
