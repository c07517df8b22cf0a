/* partitions: the time partitions' widths and upkeep (see partitions.h). */
#include "partitions.h"

#include <stdio.h>
#include <stdlib.h>

long partitions_width_s(long retention_s)
{
    const long day = 86400;
    if (retention_s <= 0)
        return day;
    long w = retention_s / 4;
    return w < PARTITIONS_MIN_WIDTH_S ? PARTITIONS_MIN_WIDTH_S : w > day ? day : w;
}

long partitions_ahead_s(long width_s)
{
    return 2 * width_s < PARTITIONS_MIN_AHEAD_S ? PARTITIONS_MIN_AHEAD_S : 2 * width_s;
}

op_status partitions_maintain(db *d, const char *table, long retention_s, long *dropped,
                              long *deleted)
{
    char width[32], ahead[32], retention[32];
    long w = partitions_width_s(retention_s);
    snprintf(width, sizeof width, "%ld", w);
    snprintf(ahead, sizeof ahead, "%ld", partitions_ahead_s(w));
    snprintf(retention, sizeof retention, "%ld", retention_s);
    const char *params[] = {table, width, ahead, retention_s > 0 ? retention : NULL};
    op_status st;
    PGresult *r = db_exec_prepared(d, "partitions_maintain",
                                   "select dropped, deleted from partitions_maintain($1, "
                                   "make_interval(secs => $2::int), make_interval(secs => $3::int), "
                                   "make_interval(secs => $4::int))",
                                   4, params, &st);
    if (!r)
        return st;
    *dropped = atol(PQgetvalue(r, 0, 0));
    *deleted = atol(PQgetvalue(r, 0, 1));
    PQclear(r);
    return OP_OK;
}
