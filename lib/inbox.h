/* inbox: the messages a consumer has handled, so a redelivery has no second effect.
 * Rows live in table inbox(consumer, message_id); old rows are pruned by inbox_prune. */
#ifndef ORDERPIPE_INBOX_H
#define ORDERPIPE_INBOX_H

#include <stdbool.h>

#include "db.h"

/* Inside the caller's transaction: records that `consumer` handled `message_id`.
 * OP_OK: first time. OP_DUPLICATE: already handled (the caller skips the work, commits, acks).
 * Errors as db_exec. */
op_status inbox_record(db *d, const char *consumer, const char *message_id);

/* The same, opening savepoint `savepoint` first (and releasing the previous one of that name
 * first when release_previous), all in one round trip: a batch of messages pays one round trip
 * per message for its isolation and its inbox row instead of three. */
op_status inbox_record_in_savepoint(db *d, const char *savepoint, bool release_previous,
                                    const char *consumer, const char *message_id);

/* Records a batch's messages at once (one round trip). fresh[i] (n of them, filled) says whether
 * message_ids[i] was new; a repeat of an id within the batch is not fresh. */
op_status inbox_record_many(db *d, const char *consumer, const char *const *message_ids, int n,
                            bool *fresh);

/* Removes the given messages' rows again (in the same transaction), for messages a batch could
 * not handle after recording them: their redelivery must find them new. */
op_status inbox_forget_many(db *d, const char *consumer, const char *const *message_ids, int n);

/* Deletes up to `batch` rows older than `retention_s` seconds; *deleted (may be NULL) says how
 * many. Small batches keep it off the hot path's locks. */
op_status inbox_prune(db *d, long retention_s, int batch, long *deleted);

#endif
