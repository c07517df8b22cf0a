/* worker_emit: the events handlers emit, and their fast path to the broker.
 *
 * Owns the outbox rows a handler queues (worker_emit, worker_emit_free outside a message): they
 * commit with the message's transaction or not at all. Right after the commit the batch's rows
 * are published and marked (worker_emit_publish), so the next worker gets them without waiting
 * for the relay; a failure leaves them to the relay (worker_housekeeping.c), which then looks at
 * once.
 */
#include <stdio.h>

#include "wire.h"
#include "worker_internal.h"

/* The outbox row of a new event (a new reference), or NULL when out of memory or when data is
 * NULL: a failed json_pack (say, of text that is not valid UTF-8) must not become an event with
 * empty data, which its consumer would dead-letter while the saga waits for it. */
static json_t *worker_event_row(worker *w, const char *type, const char *order_id, json_t *data,
                                const char *traceparent)
{
    if (!data) {
        log_error(&(log_ctx){.order_id = order_id}, "the data of a %s event could not be built",
                  type);
        return NULL;
    }
    char tp[56];
    cloudevent_traceparent(traceparent, tp);
    json_t *ev = cloudevent_new(type, w->spec->program, order_id, data, tp);
    if (!ev)
        return NULL;
    json_t *headers = json_pack("{ss}", WIRE_HDR_TRACEPARENT, tp);
    json_t *row = outbox_row(type, ev, headers);
    json_decref(headers);
    json_decref(ev);
    return row;
}

op_status worker_emit_free(worker *w, db *d, const char *type, const char *order_id, json_t *data,
                           const char *traceparent)
{
    json_t *rows = json_array(), *row = worker_event_row(w, type, order_id, data, traceparent);
    op_status st = row && json_array_append_new(rows, row) == 0 ? outbox_write_rows(d, rows)
                                                                : OP_ERR_TRANSIENT;
    json_decref(rows);
    return st;
}

op_status worker_emit(worker_msg *m, const char *type, const char *order_id, json_t *data)
{
    json_t *row = worker_event_row(m->w, type, order_id, data, m->ev->traceparent);
    if (!row) {
        snprintf(m->error, sizeof m->error, "the data of its %s event could not be built", type);
        return OP_ERR_TRANSIENT;
    }
    if (!m->emits)
        m->emits = json_array();
    return json_array_append_new(m->emits, row) == 0 ? OP_OK : OP_ERR_TRANSIENT;
}

json_t *worker_emit_rows(worker_item **items, int n)
{
    json_t *rows = json_array();
    for (int i = 0; i < n; i++)
        if (items[i]->st == OP_OK && items[i]->m.emits)
            json_array_extend(rows, items[i]->m.emits);
    return rows;
}

void worker_emit_publish(worker *w, worker_item **items, int n)
{
    json_t *rows = worker_emit_rows(items, n);
    size_t count = json_array_size(rows);
    int published = 0;
    if (count > 0) {
        /* What the batch consumed is out already, even before its publisher marks it: it must
         * not hold back the events it caused (they would wait for the relay). */
        json_t *consumed = json_array();
        for (int i = 0; i < n; i++)
            if (items[i]->st == OP_OK && items[i]->m.emits)
                json_array_append_new(consumed, json_string(items[i]->ev.id));
        op_status st = outbox_relay_publish_written(w->relay, rows, consumed, &published);
        json_decref(consumed);
        if (st != OP_OK) {
            log_warn(NULL, "publishing %zu committed events failed (%s / %s); the relay will",
                     count, broker_last_error(w->publisher), db_last_error(w->db));
            w->relay_now = true;
        }
        worker_metrics_published(w->metrics, published);
    }
    json_decref(rows);
}
