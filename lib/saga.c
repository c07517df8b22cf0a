/* saga: shared order-state and stock operations (see saga.h). */
#include "saga.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

op_status saga_order_load(db *d, const char *order_id, saga_order *out)
{
    assert(order_id && out);
    memset(out, 0, sizeof *out);
    const char *params[] = {order_id};
    op_status st;
    PGresult *r = db_exec_prepared(d, "saga_order_load",
                                   "select status, total, currency, customer_id, notify::text, "
                                   "client_id "
                                   "from orders where id = $1::uuid for update",
                                   1, params, &st);
    if (!r)
        return st;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return OP_NOT_FOUND;
    }
    snprintf(out->id, sizeof out->id, "%s", order_id);
    out->state = order_state_parse(PQgetvalue(r, 0, 0));
    out->total = atoll(PQgetvalue(r, 0, 1));
    snprintf(out->currency, sizeof out->currency, "%s", PQgetvalue(r, 0, 2));
    utf8_copy(out->customer_id, sizeof out->customer_id, PQgetvalue(r, 0, 3));
    utf8_copy(out->client_id, sizeof out->client_id, PQgetvalue(r, 0, 5));
    out->notify = json_loads(PQgetvalue(r, 0, 4), 0, NULL);
    if (!out->notify)
        out->notify = json_object();
    PQclear(r);
    return OP_OK;
}

bool saga_order_owned_by(const saga_order *o, const char *client_id)
{
    return client_id && *client_id && strcmp(o->client_id, client_id) == 0;
}

void saga_order_clear(saga_order *o)
{
    json_decref(o->notify);
    o->notify = NULL;
}

op_status saga_move(db *d, saga_order *o, order_state to, const char *reason, long deadline_s,
                    const log_ctx *lc)
{
    assert(o->id[0]); /* o was filled by saga_order_load */
    /* docs/design.md §2: every cancellation says why. */
    assert(to != ORDER_CANCELLED || (reason && *reason));
    if (!order_state_can_move(o->state, to)) {
        log_warn(lc, "refused transition %s -> %s%s%s", order_state_name(o->state),
                 order_state_name(to), reason ? " " : "", reason ? reason : "");
        return OP_ERR_PERMANENT;
    }
    char deadline[24];
    snprintf(deadline, sizeof deadline, "%ld", deadline_s);
    const char *params[] = {o->id, order_state_name(to), reason, deadline};
    op_status st = OP_OK;
    PGresult *r = db_exec_prepared(
        d, "saga_move",
        "with u as (update orders set status = $2, cancel_reason = $3, "
        "  state_deadline = case when $4::int > 0 then now() + make_interval(secs => $4::int) end "
        "  where id = $1::uuid returning id) "
        "insert into order_transitions(order_id, status, reason) select id, $2, $3 from u "
        "on conflict do nothing",
        4, params, &st);
    if (!r)
        return st;
    PQclear(r);
    o->state = to;
    return OP_OK;
}

op_status saga_release_stock(db *d, const char *order_id)
{
    const char *params[] = {order_id};
    op_status st;
    PGresult *r = db_exec_prepared(
        d, "saga_release_stock",
        "with r as (update reservations set status = 'released' "
        "  where order_id = $1::uuid and status = 'held' returning sku, quantity) "
        "update inventory i set available = i.available + r.quantity, "
        "  reserved = i.reserved - r.quantity, updated_at = now() from r where i.sku = r.sku",
        1, params, &st);
    PQclear(r);
    return st;
}

op_status saga_lock_skus(db *d, const char *skus_json, const char *order_ids)
{
    const char *params[] = {skus_json ? skus_json : "[]", order_ids ? order_ids : "{}"};
    op_status st;
    PGresult *r = db_exec_prepared(
        d, "saga_lock_skus",
        "select sku from inventory where sku in ("
        "  select value from json_array_elements_text($1::json) "
        "  union select sku from reservations where order_id = any($2::uuid[]) and status = 'held') "
        "order by sku for update",
        2, params, &st);
    PQclear(r);
    return st;
}

json_t *saga_cancelled_data(const saga_order *o, const char *reason)
{
    return json_pack("{ss ss ss sO}", "order_id", o->id, "reason", reason, "customer_id",
                     o->customer_id, "notify", o->notify);
}

json_t *saga_confirmed_data(const saga_order *o)
{
    return json_pack("{ss sI ss ss sO}", "order_id", o->id, "total", (json_int_t)o->total,
                     "currency", o->currency, "customer_id", o->customer_id, "notify", o->notify);
}
