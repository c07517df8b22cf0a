/* outbox: transactional outbox rows and their relay (see outbox.h). */
#include "outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"

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
    /* Ordered by position so ids (the relay's publishing order) follow the order of emission. */
    PGresult *r = db_exec_prepared(
        d, "outbox_write_rows",
        "insert into outbox(message_id, aggregate_id, routing_key, payload, headers) "
        "select (x.r->>'id')::uuid, x.r->>'order', x.r->>'key', x.r->>'payload', "
        "  (x.r->'headers')::jsonb "
        "from json_array_elements($1::json) with ordinality as x(r, n) order by x.n "
        "returning id, message_id::text",
        1, params, &st);
    free(text);
    if (!r)
        return st;
    /* Each row learns its id, for outbox_publish_written. */
    size_t i;
    json_t *row;
    for (int t = 0; t < PQntuples(r); t++)
        json_array_foreach(rows, i, row)
            if (strcasecmp(json_string_value(json_object_get(row, "id")), PQgetvalue(r, t, 1)) == 0)
                json_object_set_new(row, "seq", json_integer(atoll(PQgetvalue(r, t, 0))));
    PQclear(r);
    return OP_OK;
}

/* The "{id,...}" bigint[] literal of the rows' ids (those that have one); caller frees. */
static char *outbox_seq_array(json_t *rows, const PGresult *only)
{
    size_t cap = json_array_size(rows) * 21 + 3, len = 0, i;
    char *ids = malloc(cap);
    if (!ids)
        return NULL;
    json_t *row;
    ids[len++] = '{';
    json_array_foreach(rows, i, row) {
        json_t *seq = json_object_get(row, "seq");
        if (!json_is_integer(seq))
            continue;
        char text[24];
        snprintf(text, sizeof text, "%lld", (long long)json_integer_value(seq));
        bool take = !only;
        for (int t = 0; only && t < PQntuples(only) && !take; t++)
            take = strcmp(PQgetvalue(only, t, 0), text) == 0;
        if (take)
            len += (size_t)snprintf(ids + len, cap - len, "%s%s", len > 1 ? "," : "", text);
    }
    ids[len++] = '}';
    ids[len] = '\0';
    return ids;
}

op_status outbox_publish_written(db *d, broker *b, json_t *rows, int timeout_ms, int *published)
{
    *published = 0;
    char *all = outbox_seq_array(rows, NULL);
    if (!all)
        return OP_ERR_TRANSIENT;
    /* Claim them like the relay does, so a relay that claimed one first publishes it alone, and
     * leave a row whose order has an older unpublished event to the relay, which keeps each
     * order's events in order. */
    size_t n = 2 * strlen(all) + 400;
    char *sql = malloc(n);
    op_status st = OP_ERR_TRANSIENT;
    PGresult *claimed = NULL;
    if (sql) {
        snprintf(sql, n, "begin; select o.id from outbox o where o.id = any('%s') "
                         "and o.published_at is null and not exists (select 1 from outbox e "
                         "where e.aggregate_id = o.aggregate_id and e.published_at is null "
                         "and e.id < o.id and e.id <> all('%s')) "
                         "order by o.id for update skip locked", all, all);
        claimed = db_exec(d, sql, 0, NULL, &st);
    }
    free(all);
    free(sql);
    if (!claimed) {
        if (db_is_open(d))
            db_command(d, "rollback", 0, NULL);
        return st;
    }
    char *mine = outbox_seq_array(rows, claimed);
    size_t i;
    json_t *row;
    st = mine ? OP_OK : OP_ERR_TRANSIENT;
    json_array_foreach(rows, i, row) {
        if (st != OP_OK)
            break;
        char text[24];
        snprintf(text, sizeof text, "%lld", (long long)json_integer_value(json_object_get(row, "seq")));
        bool ours = false;
        for (int t = 0; t < PQntuples(claimed) && !ours; t++)
            ours = strcmp(PQgetvalue(claimed, t, 0), text) == 0;
        if (!ours)
            continue;
        const char *payload = json_string_value(json_object_get(row, "payload"));
        broker_message m = {
            .routing_key = json_string_value(json_object_get(row, "key")),
            .body = payload,
            .len = strlen(payload),
            .message_id = json_string_value(json_object_get(row, "id")),
            .type = json_string_value(json_object_get(row, "key")),
            .headers = json_object_get(row, "headers"),
        };
        if ((st = broker_publish(b, &m, NULL)) == OP_OK)
            (*published)++;
    }
    PQclear(claimed);
    if (st == OP_OK && *published > 0 && (st = broker_wait_confirms(b, timeout_ms)) == OP_TIMEOUT)
        st = OP_ERR_TRANSIENT;
    if (st != OP_OK) {
        *published = 0;
        free(mine);
        if (db_is_open(d))
            db_command(d, "rollback", 0, NULL);
        return st;
    }
    /* A lost mark only means the relay publishes the row again (consumers' inboxes drop the
     * repeat), so this commit need not wait for the disk. */
    n = strlen(mine) + 160;
    sql = malloc(n);
    if (sql) {
        snprintf(sql, n, "set local synchronous_commit = off; update outbox set published_at = now() "
                         "where id = any('%s'); commit", mine);
        st = db_command(d, sql, 0, NULL);
        free(sql);
    } else {
        st = OP_ERR_TRANSIENT;
    }
    free(mine);
    if (st != OP_OK && db_is_open(d))
        db_command(d, "rollback", 0, NULL);
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
    outbox_relay *r = calloc(1, sizeof *r);
    *out = r;
    if (!r)
        return OP_ERR_TRANSIENT;
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
    int published;
} relay_txn;

/* Claims a batch, publishes it with confirms and marks it, inside one transaction: the row locks
 * keep other relays off these rows until the marks commit. */
static op_status outbox_relay_body(db *d, void *arg)
{
    relay_txn *t = arg;
    outbox_relay *r = t->r;
    t->published = 0;
    char lim[16];
    snprintf(lim, sizeof lim, "%d", r->batch);
    const char *params[] = {lim};
    op_status st;
    PGresult *rows = db_exec_prepared(
        d, "outbox_claim",
        "select id, message_id, routing_key, payload, headers::text from outbox o "
        "where published_at is null and not exists (select 1 from outbox e "
        "  where e.aggregate_id = o.aggregate_id and e.published_at is null and e.id < o.id) "
        "order by id limit $1::int for update skip locked",
        1, params, &st);
    if (!rows)
        return st;
    int n = PQntuples(rows);
    if (n == 0) {
        PQclear(rows);
        return OP_OK;
    }
    if (r->crash == RELAY_CRASH_BEFORE_PUBLISH)
        _exit(137);
    /* The ids as a Postgres array literal for the mark. */
    size_t cap = (size_t)n * 21 + 3, len = 0;
    char *ids = malloc(cap);
    ids[len++] = '{';
    for (int i = 0; i < n; i++) {
        json_t *headers = json_loads(PQgetvalue(rows, i, 4), 0, NULL);
        broker_message m = {
            .routing_key = PQgetvalue(rows, i, 2),
            .body = PQgetvalue(rows, i, 3),
            .len = (size_t)PQgetlength(rows, i, 3),
            .message_id = PQgetvalue(rows, i, 1),
            .type = PQgetvalue(rows, i, 2),
            .headers = headers,
        };
        st = broker_publish(r->broker, &m, NULL);
        json_decref(headers);
        if (st != OP_OK)
            break;
        len += (size_t)snprintf(ids + len, cap - len, "%s%s", i ? "," : "", PQgetvalue(rows, i, 0));
    }
    PQclear(rows);
    if (st == OP_OK)
        st = broker_wait_confirms(r->broker, 10000);
    if (st != OP_OK) {
        free(ids);
        return st == OP_TIMEOUT ? OP_ERR_TRANSIENT : st;
    }
    if (r->crash == RELAY_CRASH_AFTER_PUBLISH)
        _exit(137);
    ids[len++] = '}';
    ids[len] = '\0';
    const char *mark[] = {ids};
    PGresult *u = db_exec_prepared(d, "outbox_mark",
                                   "update outbox set published_at = now() where id = any($1::bigint[])",
                                   1, mark, &st);
    free(ids);
    if (!u)
        return st;
    PQclear(u);
    t->published = n;
    return OP_OK;
}

op_status outbox_relay_flush(outbox_relay *r, int *published)
{
    relay_txn t = {r, 0};
    if (published)
        *published = 0;
    if (!broker_is_open(r->broker))
        return OP_ERR_TRANSIENT;
    op_status st = db_transaction(r->db, outbox_relay_body, &t, 3);
    if (st == OP_OK && published)
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
    char ret[32], lim[32];
    snprintf(ret, sizeof ret, "%ld", retention_s);
    snprintf(lim, sizeof lim, "%d", batch > 0 ? batch : 1000);
    const char *params[] = {ret, lim};
    op_status st;
    PGresult *r = db_exec_prepared(
        d, "outbox_prune",
        "delete from outbox where id = any(array(select id from outbox where published_at is not "
        "null and published_at < now() - make_interval(secs => $1::int) limit $2::int))",
        2, params, &st);
    if (!r)
        return st;
    if (deleted)
        *deleted = atol(PQcmdTuples(r));
    PQclear(r);
    return OP_OK;
}
