/* inbox: consumed message ids per consumer (see inbox.h). */
#include "inbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

op_status inbox_record(db *d, const char *consumer, const char *message_id)
{
    const char *params[] = {consumer, message_id};
    op_status st;
    PGresult *r = db_exec_prepared(d, "inbox_record",
                                   "insert into inbox(consumer, message_id) values ($1, $2) "
                                   "on conflict do nothing",
                                   2, params, &st);
    if (!r)
        return st;
    bool inserted = atoi(PQcmdTuples(r)) == 1;
    PQclear(r);
    return inserted ? OP_OK : OP_DUPLICATE;
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
        char *sql = malloc(n);
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

op_status inbox_prune(db *d, long retention_s, int batch, long *deleted)
{
    char ret[32], lim[32];
    snprintf(ret, sizeof ret, "%ld", retention_s);
    snprintf(lim, sizeof lim, "%d", batch > 0 ? batch : 1000);
    const char *params[] = {ret, lim};
    op_status st;
    PGresult *r = db_exec_prepared(
        d, "inbox_prune",
        "delete from inbox where ctid = any(array(select ctid from inbox "
        "where received_at < now() - make_interval(secs => $1::int) limit $2::int))",
        2, params, &st);
    if (!r)
        return st;
    if (deleted)
        *deleted = atol(PQcmdTuples(r));
    PQclear(r);
    return OP_OK;
}
