/* orderpipe-reservation: records placed orders and reserves their stock, all or nothing; turns
 * the reservation into a sale once the payment succeeded.
 *
 * Never oversells: each SKU's row is decremented only where `available >= quantity` (and the
 * table's CHECK is the backstop), in one transaction for all the order's lines. A batch first
 * locks every inventory row it will touch in SKU order (prepare_batch), so two batches never
 * deadlock, and a hot SKU costs one lock per batch rather than one per order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "saga.h"
#include "worker.h"

typedef struct reservation_config {
    long ttl_s; /* how long stock stays reserved waiting for payment */
} reservation_config;

static op_status reservation_prepare(worker *w, db *d, const cloudevent_view *const *evs, int n,
                                     void *arg)
{
    (void)w;
    (void)arg;
    json_t *skus = json_array();
    size_t cap = (size_t)n * 40 + 3, len = 0;
    char *orders = malloc(cap);
    orders[len++] = '{';
    for (int i = 0; i < n; i++) {
        if (strcmp(evs[i]->type, "order.placed") == 0) {
            size_t k;
            json_t *line;
            json_array_foreach(json_object_get(evs[i]->data, "lines"), k, line)
                json_array_append(skus, json_object_get(line, "sku"));
        } else {
            len += (size_t)snprintf(orders + len, cap - len, "%s%s", len > 1 ? "," : "",
                                    evs[i]->order_id);
        }
    }
    orders[len++] = '}';
    orders[len] = '\0';
    char *skus_text = json_dumps(skus, JSON_COMPACT);
    op_status st = saga_lock_skus(d, skus_text, orders);
    free(skus_text);
    free(orders);
    json_decref(skus);
    return st;
}

/* Inserts the order, its lines and its first transition. OP_DUPLICATE if already recorded. */
static op_status reservation_record(worker_msg *m, json_t *data, const char *lines)
{
    char total[32], *notify = json_dumps(json_object_get(data, "notify"), JSON_COMPACT);
    snprintf(total, sizeof total, "%lld", (long long)json_integer_value(json_object_get(data, "total")));
    const char *params[] = {
        m->ev->order_id,
        json_string_value(json_object_get(data, "client_id")),
        json_string_value(json_object_get(data, "idempotency_key")),
        json_string_value(json_object_get(data, "customer_id")),
        json_string_value(json_object_get(data, "currency")),
        total,
        json_string_value(json_object_get(json_object_get(data, "payment"), "token")),
        notify ? notify : "{}",
        m->ev->traceparent,
        json_string_value(json_object_get(data, "placed_at")),
        lines,
    };
    op_status st;
    PGresult *r = db_exec_prepared(
        m->db, "reservation_record",
        "with o as (insert into orders(id, client_id, idempotency_key, customer_id, currency, "
        "  total, payment_token, notify, traceparent, placed_at, state_deadline) "
        "  values ($1::uuid, $2, $3, $4, $5, $6::bigint, $7, $8::jsonb, $9, $10::timestamptz, "
        "  now() + interval '30 seconds') on conflict (id) do nothing returning id), "
        "l as (insert into order_lines(order_id, line_no, sku, quantity, unit_price) "
        "  select o.id, x.ord, x.sku, x.quantity, x.unit_price from o, "
        "  rows from (json_to_recordset($11::json) as (sku text, quantity int, unit_price bigint)) "
        "  with ordinality as x(sku, quantity, unit_price, ord)), "
        "t as (insert into order_transitions(order_id, status, at) "
        "  select id, 'pending', $10::timestamptz from o) "
        "select count(*) from o",
        11, params, &st);
    free(notify);
    if (!r)
        return st;
    bool inserted = atoi(PQgetvalue(r, 0, 0)) == 1;
    PQclear(r);
    return inserted ? OP_OK : OP_DUPLICATE;
}

/* Reserves every line or none, in one statement: the batch already holds the SKU rows' locks
 * (reservation_prepare), so checking every line and then updating cannot race. OP_OK reserved,
 * with the reservations' expiry (RFC 3339) in expires_at; OP_DUPLICATE short of stock (nothing
 * changed). */
static op_status reservation_reserve(worker_msg *m, const char *lines, long ttl_s, char expires_at[32])
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%ld", ttl_s);
    const char *params[] = {m->ev->order_id, lines, ttl};
    op_status st;
    PGresult *r = db_exec_prepared(
        m->db, "reservation_reserve",
        "with want as (select sku, sum(quantity)::bigint as q "
        "  from json_to_recordset($2::json) as (sku text, quantity int) group by sku), "
        "ok as (select count(*) = (select count(*) from want) as all_lines from want w "
        "  join inventory i on i.sku = w.sku and i.available >= w.q), "
        "upd as (update inventory i set available = i.available - w.q, reserved = i.reserved + w.q, "
        "  updated_at = now() from want w, ok where ok.all_lines and i.sku = w.sku "
        "  returning i.sku, w.q), "
        "res as (insert into reservations(order_id, sku, quantity, expires_at) "
        "  select $1::uuid, sku, q, now() + make_interval(secs => $3::int) from upd) "
        "select (select all_lines from ok), to_char((now() + make_interval(secs => $3::int)) "
        "  at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
        3, params, &st);
    if (!r)
        return st;
    bool all = PQgetvalue(r, 0, 0)[0] == 't';
    snprintf(expires_at, 32, "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    return all ? OP_OK : OP_DUPLICATE;
}

/* The order as reservation_record just wrote it (no need to read it back). */
static void reservation_order_from_event(const cloudevent_view *ev, saga_order *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->id, sizeof o->id, "%s", ev->order_id);
    o->state = ORDER_PENDING;
    o->total = (long long)json_integer_value(json_object_get(ev->data, "total"));
    snprintf(o->currency, sizeof o->currency, "%s",
             json_string_value(json_object_get(ev->data, "currency")));
    snprintf(o->customer_id, sizeof o->customer_id, "%s",
             json_string_value(json_object_get(ev->data, "customer_id")));
    json_t *notify = json_object_get(ev->data, "notify");
    o->notify = notify ? json_incref(notify) : json_object();
}

static op_status reservation_on_placed(worker_msg *m, void *arg)
{
    reservation_config *cfg = arg;
    json_t *data = m->ev->data;
    char *lines = json_dumps(json_object_get(data, "lines"), JSON_COMPACT);
    char expires_at[32] = "";
    op_status st = reservation_record(m, data, lines);
    if (st == OP_DUPLICATE) {
        log_info(&m->log, "order already recorded; nothing to do");
        free(lines);
        return OP_OK;
    }
    if (st == OP_OK)
        st = reservation_reserve(m, lines, cfg->ttl_s, expires_at);
    free(lines);
    if (st != OP_OK && st != OP_DUPLICATE)
        return st;

    saga_order o;
    reservation_order_from_event(m->ev, &o);
    if (st == OP_OK) {
        st = saga_move(m->db, &o, ORDER_RESERVED, NULL, cfg->ttl_s, &m->log);
        if (st == OP_OK)
            st = worker_emit(m, "stock.reserved", o.id,
                             json_pack("{ss sI ss sO ss}", "order_id", o.id, "total",
                                       (json_int_t)o.total, "currency", o.currency, "payment",
                                       json_object_get(data, "payment"), "expires_at", expires_at));
    } else {
        log_info(&m->log, "out of stock: order cancelled");
        st = saga_move(m->db, &o, ORDER_CANCELLED, "out_of_stock", 0, &m->log);
        if (st == OP_OK)
            st = worker_emit(m, "order.cancelled", o.id, saga_cancelled_data(&o, "out_of_stock"));
    }
    saga_order_clear(&o);
    return st;
}

static op_status reservation_on_paid(worker_msg *m, void *arg)
{
    (void)arg;
    saga_order o;
    op_status st = saga_order_load(m->db, m->ev->order_id, &o);
    if (st == OP_DUPLICATE) {
        snprintf(m->error, sizeof m->error, "payment for unknown order %s", m->ev->order_id);
        return OP_ERR_PERMANENT;
    }
    if (st != OP_OK)
        return st;
    if (o.state != ORDER_PAID) {
        /* Late or repeated (the order was confirmed already, or cancelled meanwhile and its
         * refund requested by whoever cancelled it): refuse and change nothing. */
        log_warn(&m->log, "payment.succeeded for an order in state %s: refused, nothing changed",
                 order_state_name(o.state));
        saga_order_clear(&o);
        return OP_OK;
    }
    st = saga_sell_stock(m->db, o.id);
    if (st == OP_OK)
        st = saga_move(m->db, &o, ORDER_CONFIRMED, NULL, 0, &m->log);
    if (st == OP_OK)
        st = worker_emit(m, "order.confirmed", o.id, saga_confirmed_data(&o));
    saga_order_clear(&o);
    return st;
}

static const worker_route reservation_routes[] = {
    {.type = "order.placed", .handle = reservation_on_placed},
    {.type = "payment.succeeded", .handle = reservation_on_paid},
    {.type = NULL},
};

int main(int argc, char **argv)
{
    static reservation_config cfg;
    long ttl_ms;
    if (config_parse_duration_ms(config_env_str("RESERVATION_TTL", "60s"), &ttl_ms) != 0 ||
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
    return worker_main(&spec, argc, argv);
}
