/* status: the result codes every fallible lib/ function returns.
 *
 * The split between transient and permanent is what the retry policy acts on: transient errors
 * (a server unreachable, a serialization failure, a timeout) are retried with backoff; permanent
 * ones (bad input, a refused state transition) are never retried and go to a dead-letter queue.
 * The non-negative codes besides OP_OK are outcomes, not failures: each has one meaning, and a
 * caller decides what it means for its message (a duplicate is acked, a missing order is
 * dead-lettered or retried). Functions that cannot fail in a way a caller could act on return
 * OP_OK or OP_ERR_PERMANENT (bad input).
 *
 * What can never happen whatever the input (a programming error, not a failure) is stated with
 * assert(). The builds never define NDEBUG: a broken invariant stops the program at once, as
 * running out of memory does (mem.h), instead of carrying on with state nobody reasoned about;
 * the supervisor restarts it and unacknowledged messages are redelivered. */
#ifndef ORDERPIPE_STATUS_H
#define ORDERPIPE_STATUS_H

typedef enum {
    OP_OK = 0,
    OP_DUPLICATE = 1,        /* not an error: the thing was already done (inbox, idempotency) */
    OP_TIMEOUT = 2,          /* nothing arrived in time; the connection is still good */
    OP_NOT_FOUND = 3,        /* the thing looked up does not exist (an order not recorded) */
    OP_ERR_TRANSIENT = -1,   /* may succeed if retried later */
    OP_ERR_PERMANENT = -2,   /* will never succeed as it is */
    OP_ERR_UNROUTABLE = -3,  /* the broker had no queue for a publish: its route needs declaring */
} op_status;

static inline const char *op_status_name(op_status s)
{
    switch (s) {
    case OP_OK: return "ok";
    case OP_DUPLICATE: return "duplicate";
    case OP_TIMEOUT: return "timeout";
    case OP_NOT_FOUND: return "not_found";
    case OP_ERR_TRANSIENT: return "transient_error";
    case OP_ERR_PERMANENT: return "permanent_error";
    case OP_ERR_UNROUTABLE: return "unroutable";
    }
    return "unknown";
}

#endif
