/* inbox: consumed message ids per consumer (see inbox.h). */
#include "inbox.h"

#include <stdio.h>
#include <stdlib.h>

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
