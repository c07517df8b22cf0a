/* intake_orders: what the intake reads about an order, through intake_db (never blocking the
 * loop): GET /v1/orders/{id}, and whether an order belongs to the client asking (for cancels).
 *
 * Tenant isolation: every read filters by client_id, so another client's order and an order not
 * recorded yet look the same (404): nobody learns that another client's order id exists. The
 * order appears once the reservation worker has recorded it (404 until then). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "intake.h"
#include "log.h"
#include "uuid.h"

static const char intake_order_sql[] =
    "select json_build_object("
    "  'order_id', o.id, 'status', o.status, 'cancel_reason', o.cancel_reason,"
    "  'customer_id', o.customer_id, 'currency', o.currency, 'total', o.total,"
    "  'placed_at', o.placed_at, 'recorded_at', o.recorded_at,"
    "  'state_entered_at', o.state_entered_at,"
    "  'lines', (select coalesce(json_agg(json_build_object('sku', l.sku, 'quantity', l.quantity,"
    "            'unit_price', l.unit_price) order by l.line_no), '[]') from order_lines l"
    "            where l.order_id = o.id),"
    "  'transitions', (select coalesce(json_agg(json_build_object('status', t.status,"
    "            'reason', t.reason, 'at', t.at) order by t.at), '[]') from order_transitions t"
    "            where t.order_id = o.id))"
    " from orders o where o.id = $1::uuid and o.client_id = $2";

static const char intake_owned_sql[] =
    "select 1 from orders where id = $1::uuid and client_id = $2";

/* A request waiting for its answer from the database. */
typedef struct intake_order_read {
    struct evhttp_request *req;
    const char *route;
    char order_id[UUID_STR_LEN];
    intake_client *client;
    intake_owned_fn then; /* NULL for GET */
    void *arg;
} intake_order_read;

static void intake_orders_unavailable(intake *in, struct evhttp_request *req, const char *order_id,
                                      const char *route)
{
    log_warn(&(log_ctx){.order_id = order_id}, "order lookup failed: database unavailable");
    intake_reply_error(in, req, 503, "database_unavailable",
                       "the order cannot be read right now; retry later", NULL, route);
}

static void intake_orders_not_found(intake *in, struct evhttp_request *req, const char *route)
{
    intake_reply_error(in, req, 404, "not_found",
                       "no such order (yet): it appears once it has been recorded", "order_id", route);
}

static void intake_orders_on_result(intake *in, PGresult *r, void *arg)
{
    intake_order_read *rd = arg;
    if (!r) {
        intake_orders_unavailable(in, rd->req, rd->order_id, rd->route);
    } else if (PQntuples(r) == 0) {
        intake_orders_not_found(in, rd->req, rd->route);
    } else if (rd->then) {
        rd->then(in, rd->req, rd->order_id, rd->client, rd->arg);
    } else {
        json_t *body = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
        if (body)
            intake_reply_json(in, rd->req, 200, body, rd->route);
        else
            intake_reply_error(in, rd->req, 500, "internal_error", "the order could not be shown",
                               NULL, rd->route);
        json_decref(body);
    }
    free(rd);
}

static void intake_orders_read(intake *in, struct evhttp_request *req, const char *order_id,
                               intake_client *c, const char *route, const char *sql,
                               intake_owned_fn then, void *arg)
{
    if (!in->dbq) {
        intake_reply_error(in, req, 503, "database_unavailable", "order lookups are not configured",
                           NULL, route);
        return;
    }
    intake_order_read *rd = calloc(1, sizeof *rd);
    if (!rd) {
        intake_orders_unavailable(in, req, order_id, route);
        return;
    }
    *rd = (intake_order_read){.req = req, .route = route, .client = c, .then = then, .arg = arg};
    snprintf(rd->order_id, sizeof rd->order_id, "%s", order_id);
    const char *params[] = {order_id, c->id};
    if (intake_db_query(in, sql, 2, params, intake_orders_on_result, rd) != 0) {
        free(rd);
        intake_orders_unavailable(in, req, order_id, route);
    }
}

void intake_orders_get(intake *in, struct evhttp_request *req, const char *order_id,
                       intake_client *c)
{
    intake_orders_read(in, req, order_id, c, "get_order", intake_order_sql, NULL, NULL);
}

void intake_orders_owned(intake *in, struct evhttp_request *req, const char *order_id,
                         intake_client *c, const char *route, intake_owned_fn then, void *arg)
{
    intake_orders_read(in, req, order_id, c, route, intake_owned_sql, then, arg);
}
