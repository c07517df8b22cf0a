/* outbox: transactional outbox rows and their relay (see outbox.h). */
#include "outbox.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "mem.h"
#include "topology.h"

typedef enum { RELAY_CRASH_NONE, RELAY_CRASH_BEFORE_PUBLISH, RELAY_CRASH_AFTER_PUBLISH } relay_crash;

struct outbox_relay {
    db *db;
    broker *broker;
    int batch;
    relay_crash crash; /* test hook, see outbox.h */
};

json_t *outbox_row(const char *routing_key, json_t *event, json_t *headers)
{
    const char *id = json_string_value(json_object_get(event, "id"));
    const char *order = json_string_value(json_object_get(event, "orderid"));
    if (!id || !order)
        return NULL;
    char *payload = json_dumps(event, JSON_COMPACT);
    if (!payload)
        return NULL;
    json_t *row = json_pack("{ss ss ss ss so}", "id", id, "order", order, "key", routing_key,
                            "payload", payload, "headers",
                            headers ? json_incref(headers) : json_object());
    free(payload);
    return row;
}

op_status outbox_write_rows(db *d, json_t *rows)
{
    if (json_array_size(rows) == 0)
        return OP_OK;
    char *text = json_dumps(rows, JSON_COMPACT);
    if (!text)
        return OP_ERR_TRANSIENT;
    const char *params[] = {text};
    op_status st;
    /* Ordered by position so ids (the relay's publishing order) follow the order of emission.
     * jsonb: the array is parsed once, where as json each ->> would parse its row again and
     * unescape the payload character by character. */
    PGresult *r = db_exec_prepared(
        d, "outbox_write_rows",
        "insert into outbox(message_id, aggregate_id, routing_key, payload, headers) "
        "select (x.r->>'id')::uuid, x.r->>'order', x.r->>'key', x.r->>'payload', x.r->'headers' "
        "from jsonb_array_elements($1::jsonb) with ordinality as x(r, n) order by x.n",
        1, params, &st);
    PQclear(r);
    free(text);
    return st;
}

op_status outbox_write(db *d, const char *routing_key, json_t *event, json_t *headers)
{
    json_t *row = outbox_row(routing_key, event, headers);
    if (!row)
        return json_string_value(json_object_get(event, "id")) ? OP_ERR_TRANSIENT : OP_ERR_PERMANENT;
    json_t *rows = json_array();
    json_array_append_new(rows, row);
    op_status st = outbox_write_rows(d, rows);
    json_decref(rows);
    return st;
}

op_status outbox_relay_new(outbox_relay **out, db *d, broker *b, int batch)
{
    outbox_relay *r = mem_calloc(1, sizeof *r);
    *out = r;
    r->db = d;
    r->broker = b;
    r->batch = batch > 0 ? batch : 200;
    const char *crash = config_env_str("OUTBOX_RELAY_CRASH", "");
    if (strcmp(crash, "before_publish") == 0)
        r->crash = RELAY_CRASH_BEFORE_PUBLISH;
    else if (strcmp(crash, "after_publish") == 0)
        r->crash = RELAY_CRASH_AFTER_PUBLISH;
    return OP_OK;
}

void outbox_relay_free(outbox_relay *r) { free(r); }

typedef struct relay_txn {
    outbox_relay *r;
    const char *written;  /* JSON array of message ids: claim only these (the writer's fast path) */
    const char *consumed; /* JSON array of message ids known to be out (see outbox.h) */
    int published;
} relay_txn;

/* The rows to publish (id, message_id, routing_key, payload, headers, order id), locked: the oldest
 * unpublished ones, or only `written`; either way never one whose order has an older
 * unpublished event outside the claim, so each order's events leave in order. */
static PGresult *outbox_claim(db *d, const outbox_relay *r, const relay_txn *t, op_status *st)
{
    if (t->written) {
        const char *params[] = {t->written, t->consumed ? t->consumed : "[]"};
        /* Each step runs once (materialized CTEs, InitPlans): the planner believes almost no
         * row is unpublished (that is what ANALYZE sees) and, given a join, rescans every
         * unpublished row once per written row, which is quadratic in the batch.
         * `firsts` is the oldest unpublished row of each written order other than ours and
         * those known to be out; a written row after it waits for the relay. */
        return db_exec_prepared(
            d, "outbox_claim_written",
            "with mine as materialized (select value::uuid as mid "
            "  from json_array_elements_text($1::json)), "
            "out as materialized (select value::uuid as mid from json_array_elements_text($2::json)), "
            "cand as materialized (select c.id, c.aggregate_id from outbox c "
            "  where c.message_id = any(array(select mid from mine)) and c.published_at is null), "
            "firsts as materialized (select e.aggregate_id, min(e.id) as first_id from outbox e "
            "  where e.published_at is null "
            "  and e.aggregate_id = any(array(select aggregate_id from cand)) "
            "  and e.message_id <> all(array(select mid from mine)) "
            "  and e.message_id <> all(array(select mid from out)) "
            "  group by e.aggregate_id) "
            "select o.id, o.message_id, o.routing_key, o.payload, o.headers::text, o.aggregate_id from outbox o "
            "where o.id = any(array(select c.id from cand c "
            "  left join firsts f on f.aggregate_id = c.aggregate_id "
            "  where f.first_id is null or f.first_id > c.id)) "
            "and o.published_at is null "
            "order by o.id for update of o skip locked",
            2, params, st);
    }
    char lim[16];
    snprintf(lim, sizeof lim, "%d", r->batch);
    const char *params[] = {lim};
    /* The oldest `batch` unpublished rows are a prefix by id, so a row's older unpublished
     * events are in it too: the first row of each order in it is the one that may go. Checking
     * each row against the whole backlog instead makes the planner's nested loop grow with the
     * backlog, which is largest exactly when the relay must catch up (after a broker outage).
     * A row another relay holds stays in the prefix and keeps the later events of its order
     * back. */
    return db_exec_prepared(
        d, "outbox_claim",
        "with head as materialized (select id, aggregate_id from outbox "
        "  where published_at is null order by id limit $1::int), "
        "firsts as (select min(id) as id from head group by aggregate_id) "
        "select o.id, o.message_id, o.routing_key, o.payload, o.headers::text, o.aggregate_id from outbox o "
        "where o.id = any(array(select id from firsts)) and o.published_at is null "
        "order by o.id for update of o skip locked",
        1, params, st);
}

/* Claims a batch, publishes it with confirms and marks it, inside one transaction: the row locks
 * keep other relays off these rows until the marks commit. */
static op_status outbox_relay_body(db *d, void *arg)
{
    relay_txn *t = arg;
    outbox_relay *r = t->r;
    t->published = 0;
    op_status st;
    PGresult *rows = outbox_claim(d, r, t, &st);
    if (!rows)
        return st;
    int n = PQntuples(rows);
    if (n == 0) {
        PQclear(rows);
        return OP_OK;
    }
    if (r->crash == RELAY_CRASH_BEFORE_PUBLISH)
        _exit(137);
    db_array ids; /* the published rows, for the mark */
    db_array_init(&ids);
    /* The rows leave together (broker_cork): the broker reads them in one go, which costs it
     * less per message than one segment each. Without the cork they still go. */
    bool corked = broker_cork(r->broker, true) == OP_OK;
    for (int i = 0; i < n; i++) {
        json_t *headers = json_loads(PQgetvalue(rows, i, 4), 0, NULL);
        broker_message m = {
            .routing_key = PQgetvalue(rows, i, 2),
            .body = PQgetvalue(rows, i, 3),
            .len = (size_t)PQgetlength(rows, i, 3),
            .message_id = PQgetvalue(rows, i, 1),
            .correlation_id = PQgetvalue(rows, i, 5), /* a sharded queue hashes it */
            .type = PQgetvalue(rows, i, 2),
            .headers = headers,
        };
        st = broker_publish(r->broker, &m, NULL);
        json_decref(headers);
        if (st != OP_OK)
            break;
        db_array_append(&ids, PQgetvalue(rows, i, 0));
    }
    PQclear(rows);
    if (corked && broker_is_open(r->broker) && broker_cork(r->broker, false) != OP_OK)
        st = OP_ERR_TRANSIENT;
    if (st == OP_OK)
        st = broker_wait_confirms(r->broker, 10000);
    if (st == OP_ERR_UNROUTABLE && broker_is_open(r->broker)) {
        /* A queue was deleted while its consumer is away. Declaring the
         * topology again makes the next pass go through, where each pass would otherwise fail
         * on the same rows at the head of the outbox. The caller logs the failure (with the
         * declaration's error instead, should that fail too). */
        if (topology_declare(r->broker) != OP_OK)
            st = OP_ERR_TRANSIENT;
    }
    if (st != OP_OK) {
        db_array_free(&ids);
        return st == OP_TIMEOUT ? OP_ERR_TRANSIENT : st;
    }
    if (r->crash == RELAY_CRASH_AFTER_PUBLISH)
        _exit(137);
    assert(ids.n == n); /* every claimed row was published, or the pass returned above */
    /* The writer's own rows: a lost mark only means the relay publishes them again (consumers'
     * inboxes drop the repeat), so their commit need not wait for the disk. */
    if (t->written && (st = db_command(d, "set local synchronous_commit = off", 0, NULL)) != OP_OK) {
        db_array_free(&ids);
        return st;
    }
    const char *mark[] = {db_array_text(&ids)};
    PGresult *u = db_exec_prepared(d, "outbox_mark",
                                   "update outbox set published_at = now() where id = any($1::bigint[])",
                                   1, mark, &st);
    db_array_free(&ids);
    if (!u)
        return st;
    PQclear(u);
    t->published = n;
    return OP_OK;
}

op_status outbox_relay_flush(outbox_relay *r, int *published)
{
    relay_txn t = {r, NULL, NULL, 0};
    if (published)
        *published = 0;
    if (!broker_is_open(r->broker))
        return OP_ERR_TRANSIENT;
    op_status st = db_transaction(r->db, outbox_relay_body, &t, 3);
    if (st == OP_OK && published)
        *published = t.published;
    return st;
}

op_status outbox_relay_publish_written(outbox_relay *r, json_t *rows, json_t *consumed,
                                       int *published)
{
    *published = 0;
    if (!broker_is_open(r->broker))
        return OP_ERR_TRANSIENT;
    json_t *ids = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        json_array_append(ids, json_object_get(row, "id"));
    char *written = json_dumps(ids, JSON_COMPACT);
    json_decref(ids);
    if (!written)
        return OP_ERR_TRANSIENT;
    char *out = consumed ? json_dumps(consumed, JSON_COMPACT) : NULL;
    relay_txn t = {r, written, out, 0};
    op_status st = db_transaction(r->db, outbox_relay_body, &t, 3);
    free(written);
    free(out);
    if (st == OP_OK)
        *published = t.published;
    return st;
}

op_status outbox_listen(db *d)
{
    return db_command(d, "listen outbox", 0, NULL);
}

int outbox_drain_notifications(db *d)
{
    PGconn *c = db_conn(d);
    int n = 0;
    if (!c || !PQconsumeInput(c))
        return 0;
    PGnotify *note;
    while ((note = PQnotifies(c)) != NULL) {
        n++;
        PQfreemem(note);
    }
    return n;
}

op_status outbox_backlog(db *d, long *rows, double *oldest_age_s)
{
    op_status st;
    PGresult *r = db_exec_prepared(d, "outbox_backlog",
                                   "select count(*), coalesce(extract(epoch from now() - "
                                   "min(created_at)), 0) from outbox where published_at is null",
                                   0, NULL, &st);
    if (!r)
        return st;
    *rows = atol(PQgetvalue(r, 0, 0));
    *oldest_age_s = atof(PQgetvalue(r, 0, 1));
    PQclear(r);
    return OP_OK;
}

op_status outbox_prune(db *d, long retention_s, int batch, long *deleted)
{
    return db_prune(d, "outbox_prune",
                    "delete from outbox where id = any(array(select id from outbox where "
                    "published_at is not null and published_at < now() - "
                    "make_interval(secs => $1::int) limit $2::int))",
                    retention_s, batch, deleted);
}
