/* inbox: the messages a consumer has handled, so a redelivery has no second effect.
 * Rows live in table inbox(consumer, message_id, event_at), partitioned by event_at, the event's
 * own time: a redelivery carries the same time, so its row falls in the partition of the first
 * delivery's and conflicts there (sql/120_partitions.sql). Old partitions are dropped by
 * partitions_maintain (lib/partitions.h); inbox_prune deletes rows instead. */
#ifndef ORDERPIPE_INBOX_H
#define ORDERPIPE_INBOX_H

#include <stdbool.h>

#include "db.h"

/* A message as the inbox knows it: its id and its CloudEvents time (RFC 3339), both borrowed. */
typedef struct inbox_msg {
    const char *id;
    const char *time;
} inbox_msg;

/* Writes the partition key of an event time into out: the instant in UTC as
 * "YYYY-MM-DDTHH:MM:SS.ffffffZ", or "-infinity" when `time` (may be NULL) is no RFC 3339
 * date-time of years 1970-9999. The same text always gives the same key. */
#define INBOX_EVENT_AT_LEN 80 /* room for any int the format could print */
void inbox_event_at(const char *time, char out[INBOX_EVENT_AT_LEN]);

/* Inside the caller's transaction: records that `consumer` handled message m.
 * OP_OK: first time. OP_DUPLICATE: already handled (the caller skips the work, commits, acks).
 * Errors as db_exec. */
op_status inbox_record(db *d, const char *consumer, const inbox_msg *m);

/* The same, opening savepoint `savepoint` first (and releasing the previous one of that name
 * first when release_previous), all in one round trip: a batch of messages pays one round trip
 * per message for its isolation and its inbox row instead of three. */
op_status inbox_record_in_savepoint(db *d, const char *savepoint, bool release_previous,
                                    const char *consumer, const inbox_msg *m);

/* Records a batch's messages at once (one round trip). fresh[i] (n of them, filled) says whether
 * msgs[i] was new; a repeat of a message within the batch is not fresh. */
op_status inbox_record_many(db *d, const char *consumer, const inbox_msg *msgs, int n, bool *fresh);

/* Removes the given messages' rows again (in the same transaction), for messages a batch could
 * not handle after recording them: their redelivery must find them new. */
op_status inbox_forget_many(db *d, const char *consumer, const inbox_msg *msgs, int n);

/* Deletes up to `batch` rows older than `retention_s` seconds; *deleted (may be NULL) says how
 * many. Small batches keep it off the hot path's locks. */
op_status inbox_prune(db *d, long retention_s, int batch, long *deleted);

#endif
