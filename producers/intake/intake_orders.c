/* intake_orders: GET /v1/orders/{id} from PostgreSQL.
 *
 * A primary-key read on a dedicated connection with a 200 ms statement_timeout: it runs on the
 * event loop, so the bound keeps a slow database from stalling the publishes in flight. The
 * order appears once the reservation worker has recorded it (404 until then). */
#include <stdio.h>
#include <stdlib.h>

#include "intake.h"
#include "log.h"

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

void intake_orders_get(intake *in, struct evhttp_request *req, const char *order_id)
{
    const char *route = "get_order";
    if (!in->db) {
        intake_reply_error(in, req, 503, "database_unavailable", "order lookups are not configured",
                           NULL, route);
        return;
    }
    if (!db_is_open(in->db) && db_reconnect(in->db) == OP_OK) {
        db_command(in->db, "set statement_timeout = 200", 0, NULL);
        metrics_add(in->m.reconnects, (const char *const[]){"database"}, 1);
    }
    intake_client *c = intake_auth_client(in, evhttp_find_header(evhttp_request_get_input_headers(req),
                                                                 "Authorization"));
    const char *params[] = {order_id, c ? c->id : ""};
    op_status st;
    PGresult *r = db_exec_prepared(in->db, "intake_get_order", intake_order_sql, 2, params, &st);
    if (!r) {
        log_warn(&(log_ctx){.order_id = order_id}, "order lookup failed: %s", db_last_error(in->db));
        intake_reply_error(in, req, 503, "database_unavailable",
                           "the order cannot be read right now; retry later", NULL, route);
        return;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        intake_reply_error(in, req, 404, "not_found",
                           "no such order (yet): it appears once it has been recorded", "order_id", route);
        return;
    }
    json_t *body = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
    PQclear(r);
    intake_reply_json(in, req, 200, body, route);
    json_decref(body);
}
