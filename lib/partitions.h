/* partitions: the time partitions of outbox, inbox and order_transitions, kept by housekeeping.
 *
 * Owns the width and lead of each table's partitions for a retention, and the call of
 * partitions_maintain (sql/functions/partitions.sql), which makes the partitions ahead and drops
 * those past retention (never an outbox partition with an unpublished row), one caller at a time.
 */
#ifndef ORDERPIPE_PARTITIONS_H
#define ORDERPIPE_PARTITIONS_H

#include "db.h"

/* How wide the partitions of a table kept `retention_s` seconds are (0: kept forever): a
 * quarter of the retention, so a partition goes soon after its rows are due, within
 * [PARTITIONS_MIN_WIDTH_S, 1 day]; a day when kept forever. */
#define PARTITIONS_MIN_WIDTH_S 30L
long partitions_width_s(long retention_s);

/* How far ahead of now the partitions are made: two widths, and at least PARTITIONS_MIN_AHEAD_S
 * so that housekeeping, which runs about once a minute, is never behind the clock. */
#define PARTITIONS_MIN_AHEAD_S 180L
long partitions_ahead_s(long width_s);

/* Keeps `table`'s partitions (see above) for retention_s (0: nothing dropped). On OP_OK,
 * *dropped (partitions) and *deleted (rows of the default partition) say what went; a call that
 * finds another process at it does nothing and returns OP_OK. Errors as db_exec. */
op_status partitions_maintain(db *d, const char *table, long retention_s, long *dropped,
                              long *deleted);

#endif
