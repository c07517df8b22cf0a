/* inbox: consumed message ids per consumer (see inbox.h). */
#include "inbox.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mem.h"

op_status inbox_record(db *d, const char *consumer, const char *message_id)
{
    const char *params[] = {consumer, message_id};
    long inserted = 0;
    op_status st = db_exec_prepared_count(d, "inbox_record",
                                          "insert into inbox(consumer, message_id) values ($1, $2) "
                                          "on conflict do nothing",
                                          2, params, &inserted);
    if (st != OP_OK)
        return st;
    return inserted == 1 ? OP_OK : OP_DUPLICATE;
}

op_status inbox_record_in_savepoint(db *d, const char *savepoint, bool release_previous,
                                    const char *consumer, const char *message_id)
{
    PGconn *c = db_conn(d);
    if (!c)
        return db_command(d, "select 1", 0, NULL); /* reports "not connected" */
    char *con = PQescapeLiteral(c, consumer, strlen(consumer));
    char *mid = PQescapeLiteral(c, message_id, strlen(message_id));
    char *sp = PQescapeIdentifier(c, savepoint, strlen(savepoint));
    op_status st = OP_ERR_PERMANENT;
    if (con && mid && sp) {
        /* Simple protocol: several statements, one round trip; the result is the last one's. */
        size_t n = strlen(con) + strlen(mid) + 2 * strlen(sp) + 160;
        char *sql = mem_alloc(n);
        snprintf(sql, n, "%s%s%ssavepoint %s; insert into inbox(consumer, message_id) "
                         "values (%s, %s) on conflict do nothing",
                 release_previous ? "release savepoint " : "", release_previous ? sp : "",
                 release_previous ? "; " : "", sp, con, mid);
        PGresult *r = db_exec(d, sql, 0, NULL, &st);
        free(sql);
        if (r) {
            st = atoi(PQcmdTuples(r)) == 1 ? OP_OK : OP_DUPLICATE;
            PQclear(r);
        }
    }
    PQfreemem(con);
    PQfreemem(mid);
    PQfreemem(sp);
    return st;
}

/* The ids as a JSON array text (the caller frees it), so any text is passed safely. */
static char *inbox_ids_json(const char *const *message_ids, int n)
{
    json_t *ids = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(ids, json_string(message_ids[i]));
    char *text = json_dumps(ids, JSON_COMPACT);
    json_decref(ids);
    return text;
}

op_status inbox_record_many(db *d, const char *consumer, const char *const *message_ids, int n,
                            bool *fresh)
{
    assert(n >= 0 && (n == 0 || (message_ids && fresh)));
    for (int i = 0; i < n; i++)
        fresh[i] = false;
    char *text = inbox_ids_json(message_ids, n);
    if (!text)
        return OP_ERR_TRANSIENT;
    const char *params[] = {consumer, text};
    op_status st;
    PGresult *r = db_exec_prepared(d, "inbox_record_many",
                                   "insert into inbox(consumer, message_id) "
                                   "select $1, value from json_array_elements_text($2::json) "
                                   "on conflict do nothing returning message_id",
                                   2, params, &st);
    free(text);
    if (!r)
        return st;
    /* Each returned id makes the first of its messages fresh; a repeat within the batch stays a
     * duplicate of it. */
    for (int row = 0; row < PQntuples(r); row++) {
        const char *id = PQgetvalue(r, row, 0);
        for (int i = 0; i < n; i++) {
            if (!fresh[i] && strcmp(message_ids[i], id) == 0) {
                fresh[i] = true;
                break;
            }
        }
    }
    PQclear(r);
    return OP_OK;
}

op_status inbox_forget_many(db *d, const char *consumer, const char *const *message_ids, int n)
{
    char *text = inbox_ids_json(message_ids, n);
    if (!text)
        return OP_ERR_TRANSIENT;
    const char *params[] = {consumer, text};
    op_status st = db_command(d, "delete from inbox where consumer = $1 and message_id in "
                                 "(select value from json_array_elements_text($2::json))",
                              2, params);
    free(text);
    return st;
}

op_status inbox_prune(db *d, long retention_s, int batch, long *deleted)
{
    return db_prune(d, "inbox_prune",
                    "delete from inbox where ctid = any(array(select ctid from inbox "
                    "where received_at < now() - make_interval(secs => $1::int) limit $2::int))",
                    retention_s, batch, deleted);
}
