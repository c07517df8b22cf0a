/* redrive: restarts a stalled order's saga from the state the database recorded for it.
 *
 * A reserved order gets its stock.reserved again (payment charges it, with the same idempotency
 * key as before, so a charge that did happen is not repeated); a paid order gets its
 * payment.succeeded again (the sale is committed and the order confirmed). The event goes through
 * the outbox in one transaction with a lock on the order, and is published with a confirm before
 * the command returns. Terminal orders are left alone. Re-driving twice is harmless: every step
 * downstream is idempotent for the order. */
#ifndef ORDERPIPE_REDRIVE_H
#define ORDERPIPE_REDRIVE_H

/* Returns the process exit status: 0 re-driven, 1 nothing to do or an error (said on stderr). */
int redrive_order(const char *amqp_url, const char *database_url, const char *order_id);

#endif
