/* redrive: see redrive.h. */
#include "redrive.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "cloudevent.h"
#include "db.h"
#include "outbox.h"
#include "wire.h"

typedef struct redrive_txn {
    const char *order_id;
    char status[16];  /* out: the recorded state */
    char type[40];    /* out: the event written, "" when none */
} redrive_txn;

static json_t *redrive_reserved_data(db *d, const char *id, op_status *st)
{
    PGresult *r = db_exec(d,
                          "select o.total, o.currency, "
                          "  to_char(max(v.expires_at) at time zone 'UTC', "
                          "          'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
                          "from orders o left join reservations v on v.order_id = o.id "
                          "where o.id = $1::uuid group by o.id",
                          1, (const char *[]){id}, st);
    if (!r)
        return NULL;
    json_t *data = json_pack("{ss sI ss ss}", "order_id", id, "total",
                             (json_int_t)atoll(PQgetvalue(r, 0, 0)), "currency", PQgetvalue(r, 0, 1),
                             "expires_at", PQgetvalue(r, 0, 2));
    PQclear(r);
    return data;
}

static json_t *redrive_paid_data(db *d, const char *id, op_status *st)
{
    PGresult *r = db_exec(d,
                          "select amount, currency, coalesce(provider_ref, order_id::text) "
                          "from payments where order_id = $1::uuid and status = 'succeeded'",
                          1, (const char *[]){id}, st);
    if (!r)
        return NULL;
    json_t *data = NULL;
    if (PQntuples(r) == 1)
        data = json_pack("{ss sI ss ss}", "order_id", id, "amount",
                         (json_int_t)atoll(PQgetvalue(r, 0, 0)), "currency", PQgetvalue(r, 0, 1),
                         "provider_ref", PQgetvalue(r, 0, 2));
    else
        *st = OP_ERR_PERMANENT;
    PQclear(r);
    return data;
}

static op_status redrive_write(db *d, void *arg)
{
    redrive_txn *t = arg;
    t->status[0] = t->type[0] = '\0';
    op_status st;
    PGresult *r = db_exec(d, "select status, traceparent from orders where id = $1::uuid for update",
                          1, (const char *[]){t->order_id}, &st);
    if (!r)
        return st;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return OP_OK;
    }
    snprintf(t->status, sizeof t->status, "%s", PQgetvalue(r, 0, 0));
    char traceparent[56];
    cloudevent_traceparent(PQgetisnull(r, 0, 1) ? NULL : PQgetvalue(r, 0, 1), traceparent);
    PQclear(r);
    json_t *data = NULL;
    st = OP_OK;
    if (strcmp(t->status, "reserved") == 0) {
        snprintf(t->type, sizeof t->type, "stock.reserved");
        data = redrive_reserved_data(d, t->order_id, &st);
    } else if (strcmp(t->status, "paid") == 0) {
        snprintf(t->type, sizeof t->type, "payment.succeeded");
        data = redrive_paid_data(d, t->order_id, &st);
    } else {
        return OP_OK;
    }
    if (!data)
        return st == OP_OK ? OP_ERR_PERMANENT : st;
    json_t *ev = cloudevent_new(t->type, "orderpipe-replay", t->order_id, data, traceparent);
    json_t *headers = json_pack("{ss ss}", WIRE_HDR_TRACEPARENT, traceparent, WIRE_HDR_REDRIVEN, "true");
    st = outbox_write(d, t->type, ev, headers);
    json_decref(headers);
    json_decref(ev);
    return st;
}

int redrive_order(const char *amqp_url, const char *database_url, const char *order_id)
{
    db *d = NULL;
    if (db_connect(&d, database_url, "orderpipe-replay") != OP_OK) {
        fprintf(stderr, "replay: cannot connect to the database: %s\n", d ? db_last_error(d) : "");
        db_close(d);
        return 1;
    }
    redrive_txn t = {.order_id = order_id};
    op_status st = db_transaction(d, redrive_write, &t, 0);
    int rc = 1;
    if (st != OP_OK) {
        fprintf(stderr, "replay: order %s: cannot re-drive: %s\n", order_id, db_last_error(d));
    } else if (!t.status[0]) {
        fprintf(stderr, "replay: order %s is not recorded; its order.placed may be dead-lettered "
                        "(replay list --order %s)\n", order_id, order_id);
    } else if (!t.type[0]) {
        fprintf(stderr, "replay: order %s is %s: nothing to re-drive\n", order_id, t.status);
    } else {
        broker *b = NULL;
        broker_options bo = {.urls = amqp_url, .name = "orderpipe-replay", .confirms = true};
        outbox_relay *relay = NULL;
        int published = 0;
        /* The row is committed: if publishing fails here, any worker's relay sends it later. */
        if (broker_connect(&b, &bo) == OP_OK && outbox_relay_new(&relay, d, b, 0) == OP_OK)
            outbox_relay_flush(relay, &published);
        printf("order %s (%s): %s re-emitted%s\n", order_id, t.status, t.type,
               published > 0 ? " and published" : ", left to the outbox relay");
        outbox_relay_free(relay);
        broker_close(b);
        rc = 0;
    }
    db_close(d);
    return rc;
}
