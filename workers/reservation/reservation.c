/* orderpipe-reservation: records placed orders and reserves their stock, all or nothing; turns
 * the reservation into a sale once the payment succeeded.
 *
 * Never oversells: each SKU's row is decremented only where `available >= quantity` (and the
 * table's CHECK is the backstop), in one transaction for all the order's lines. A transaction
 * takes every inventory row lock it needs in one statement, in SKU order, so two batches never
 * deadlock, and a hot SKU costs one lock per batch rather than one per order. In a set-based
 * batch that statement is inside reservation_place, after the batch's orders are recorded, so
 * the locks are held only for reserving, confirming and the commit; run one by one, the batch
 * locks everything first (reservation_prepare). The work of a batch is set-based (sql/functions/):
 * one call records and reserves all its placed orders, one confirms all its paid ones.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "saga.h"
#include "utf8.h"
#include "worker.h"

typedef struct reservation_config {
    long ttl_s;     /* how long stock stays reserved waiting for payment */
    char *paid_ids; /* the current batch's payment.succeeded orders (uuid[] literal), which
                     * reservation_place locks with the placed orders' SKUs; set by
                     * reservation_prepare, owned here */
    bool locked;    /* the current batch holds the inventory locks of its paid orders */
} reservation_config;

/* Set-based: remembers the batch's paid orders for reservation_place, which takes the locks.
 * One by one: locks the inventory rows of every order of the batch now. */
static op_status reservation_prepare(worker *w, db *d, const cloudevent_view *const *evs, int n,
                                     bool one_by_one, void *arg)
{
    (void)w;
    reservation_config *cfg = arg;
    free(cfg->paid_ids);
    cfg->paid_ids = worker_event_order_ids(evs, n, "payment.succeeded");
    cfg->locked = one_by_one;
    if (!one_by_one)
        return OP_OK;
    json_t *skus = json_array();
    for (int i = 0; i < n; i++) {
        if (strcmp(evs[i]->type, "order.placed") != 0)
            continue;
        size_t k;
        json_t *line;
        json_array_foreach(json_object_get(evs[i]->data, "lines"), k, line)
            json_array_append(skus, json_object_get(line, "sku"));
    }
    char *skus_text = json_dumps(skus, JSON_COMPACT);
    json_decref(skus);
    if (!skus_text)
        return OP_ERR_TRANSIENT;
    op_status st = saga_lock_skus(d, skus_text, cfg->paid_ids);
    free(skus_text);
    return st;
}

/* The order as order.placed describes it (the database has just recorded it so). */
static void reservation_order_from_event(const cloudevent_view *ev, saga_order *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->id, sizeof o->id, "%s", ev->order_id);
    o->state = ORDER_PENDING;
    o->total = (long long)json_integer_value(json_object_get(ev->data, "total"));
    utf8_copy(o->currency, sizeof o->currency,
              json_string_value(json_object_get(ev->data, "currency")));
    utf8_copy(o->customer_id, sizeof o->customer_id,
              json_string_value(json_object_get(ev->data, "customer_id")));
    utf8_copy(o->client_id, sizeof o->client_id,
              json_string_value(json_object_get(ev->data, "client_id")));
    json_t *notify = json_object_get(ev->data, "notify");
    o->notify = notify ? json_incref(notify) : json_object();
}

/* order.placed, a batch at a time: reservation_place (sql/functions/reservation_place.sql)
 * checks every order's lines and total (recomputed from the lines; an order that does not add up
 * is refused, nothing of it written, and dead-lettered as invalid_order), records the others and
 * reserves their stock, all lines or none, in batch order; then each order's event. */
static op_status reservation_on_placed(worker_msg *const *msgs, int n, void *arg)
{
    reservation_config *cfg = arg;
    json_t *orders = json_array();
    for (int i = 0; i < n; i++) {
        json_t *o = json_pack("{ss ss? sO}", "id", msgs[i]->ev->order_id, "tp",
                              msgs[i]->ev->traceparent, "d", msgs[i]->ev->data);
        if (!o || json_array_append_new(orders, o) != 0) {
            json_decref(orders);
            snprintf(msgs[i]->error, sizeof msgs[i]->error, "cannot build the order's record");
            return OP_ERR_TRANSIENT;
        }
    }
    char *text = json_dumps(orders, JSON_COMPACT), ttl[24];
    json_decref(orders);
    snprintf(ttl, sizeof ttl, "%ld", cfg->ttl_s);
    const char *params[] = {text, ttl, cfg->paid_ids ? cfg->paid_ids : "{}"};
    op_status st;
    PGresult *r = db_exec_prepared(msgs[0]->db, "reservation_place",
                                   "select n, outcome, expires_at, reason from reservation_place("
                                   "$1::json, $2::int, $3::uuid[]) order by n",
                                   3, params, &st);
    free(text);
    if (!r)
        return st;
    if (PQntuples(r) != n) {
        log_error(NULL, "reservation_place answered %d rows for %d orders", PQntuples(r), n);
        PQclear(r);
        return OP_ERR_TRANSIENT;
    }
    cfg->locked = true;
    for (int i = 0; i < n && st == OP_OK; i++) {
        worker_msg *m = msgs[i];
        const char *outcome = PQgetvalue(r, i, 1);
        if (strcmp(outcome, "invalid") == 0) {
            worker_msg_refuse(m, "invalid_order", "order.placed refused: %s", PQgetvalue(r, i, 3));
            continue;
        }
        if (strcmp(outcome, "duplicate") == 0) {
            log_info(&m->log, "order already recorded; nothing to do");
            continue;
        }
        saga_order o;
        reservation_order_from_event(m->ev, &o);
        if (strcmp(outcome, "reserved") == 0) {
            st = worker_emit(m, "stock.reserved", o.id,
                             json_pack("{ss sI ss ss}", "order_id", o.id, "total",
                                       (json_int_t)o.total, "currency", o.currency, "expires_at",
                                       PQgetvalue(r, i, 2)));
        } else {
            log_info(&m->log, "out of stock: order cancelled");
            st = worker_emit(m, "order.cancelled", o.id, saga_cancelled_data(&o, "out_of_stock"));
        }
        saga_order_clear(&o);
    }
    PQclear(r);
    return st;
}

/* payment.succeeded, a batch at a time: reservation_confirm sells the held stock of every paid
 * order and confirms it; an order in another state is refused (nothing changed). Its SKUs are
 * locked first unless reservation_place or reservation_prepare took them already (a batch
 * whose placed orders were all duplicates). */
static op_status reservation_on_paid(worker_msg *const *msgs, int n, void *arg)
{
    reservation_config *cfg = arg;
    char *ids = worker_order_ids(msgs, n);
    const char *params[] = {ids};
    op_status st = cfg->locked ? OP_OK : saga_lock_skus(msgs[0]->db, NULL, ids);
    if (st != OP_OK) {
        free(ids);
        return st;
    }
    PGresult *r = db_exec_prepared(msgs[0]->db, "reservation_confirm",
                                   "select k, prior, total, currency, customer_id, notify "
                                   "from reservation_confirm($1::uuid[]) order by k",
                                   1, params, &st);
    free(ids);
    if (!r)
        return st;
    if (PQntuples(r) != n) {
        log_error(NULL, "reservation_confirm answered %d rows for %d orders", PQntuples(r), n);
        PQclear(r);
        return OP_ERR_TRANSIENT;
    }
    for (int i = 0; i < n && st == OP_OK; i++) {
        worker_msg *m = msgs[i];
        if (PQgetisnull(r, i, 1)) {
            worker_msg_fail(m, OP_ERR_PERMANENT, "payment for unknown order %s", m->ev->order_id);
            continue;
        }
        const char *prior = PQgetvalue(r, i, 1);
        if (strcmp(prior, "paid") != 0) {
            /* Late or repeated (the order was confirmed already, or cancelled meanwhile and its
             * refund requested by whoever cancelled it): refused, nothing changed. */
            log_warn(&m->log, "payment.succeeded for an order in state %s: refused, nothing changed",
                     prior);
            continue;
        }
        saga_order o = {.state = ORDER_CONFIRMED, .total = atoll(PQgetvalue(r, i, 2))};
        snprintf(o.id, sizeof o.id, "%s", m->ev->order_id);
        snprintf(o.currency, sizeof o.currency, "%s", PQgetvalue(r, i, 3));
        snprintf(o.customer_id, sizeof o.customer_id, "%s", PQgetvalue(r, i, 4));
        o.notify = json_loads(PQgetvalue(r, i, 5), 0, NULL);
        if (!o.notify)
            o.notify = json_object();
        st = worker_emit(m, "order.confirmed", o.id, saga_confirmed_data(&o));
        saga_order_clear(&o);
    }
    PQclear(r);
    return st;
}

static const worker_route reservation_routes[] = {
    {.type = "order.placed", .handle_set = reservation_on_placed},
    {.type = "payment.succeeded", .handle_set = reservation_on_paid},
    {.type = NULL},
};

int main(int argc, char **argv)
{
    static reservation_config cfg;
    long ttl_ms;
    if (config_parse_duration_ms(config_env_str("RESERVATION_TTL", "60s"), &ttl_ms) != OP_OK ||
        ttl_ms < 1000) {
        fprintf(stderr, "RESERVATION_TTL: must be a duration of at least 1s (e.g. 60s)\n");
        return 2;
    }
    cfg.ttl_s = ttl_ms / 1000;
    worker_spec spec = {
        .name = "reservation",
        .program = "orderpipe-reservation",
        .summary = "Records placed orders and reserves their stock (all or nothing); sells it once paid.",
        .routes = reservation_routes,
        .arg = &cfg,
        .prepare_batch = reservation_prepare,
        .help_extra = "  RESERVATION_TTL       how long stock stays reserved awaiting payment (60s)\n",
    };
    int rc = worker_main(&spec, argc, argv);
    free(cfg.paid_ids);
    return rc;
}
