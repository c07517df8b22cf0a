/* provider: the payment provider behind the payment worker.
 *   sim   in-process (default): tok_decline is declined, tok_flaky fails transiently on its first
 *         two attempts, anything else succeeds; its books are the table sim_provider_ledger,
 *         written outside any transaction of ours, as a remote provider's would be.
 *   http  POST $PAYMENT_URL/charges and /refunds, JSON, with an Idempotency-Key header; 2xx
 *         success, 402 declined, anything else (409, 5xx, timeout) transient.
 * Both are idempotent per key: a repeated charge answers as the first one did and charges once.
 */
#ifndef ORDERPIPE_PROVIDER_H
#define ORDERPIPE_PROVIDER_H

#include <stddef.h>

#include "db.h"

typedef enum { PROVIDER_OK, PROVIDER_DECLINED, PROVIDER_TRANSIENT } provider_result;

typedef struct provider provider;

/* kind: "sim" or "http"; url and timeout_ms for http. NULL on a bad configuration. */
provider *provider_new(const char *kind, const char *url, long timeout_ms);
void provider_free(provider *p);

typedef struct provider_charge_req {
    const char *key;        /* idempotency key */
    const char *order_id;
    long long amount;
    const char *currency;
    const char *token;
    int attempt;            /* 1, 2, ... (the sim's flaky token needs it) */
} provider_charge_req;

/* On PROVIDER_OK ref (refsize bytes) gets the provider's reference; err (n bytes) says why
 * otherwise. Both are what the provider answered, so they are cut on a character boundary,
 * hold only valid UTF-8 and no control characters, and ref is never empty (the key stands in for
 * a missing, empty or unusable one). d is the sim's connection to its books (outside any
 * transaction). */
provider_result provider_charge(provider *p, db *d, const provider_charge_req *req, char *ref,
                                size_t refsize, char *err, size_t n);

/* Around a batch of charges: the sim books them in its books in one statement at _end, which
 * fails if they could not be booked (then none of the batch was charged); no-ops for http, whose
 * calls stand alone. */
op_status provider_batch_begin(provider *p, db *d);
op_status provider_batch_end(provider *p, db *d);
/* Refunds whatever was charged under charge_key; *refunded gets the amount (0 if nothing was
 * charged). */
provider_result provider_refund(provider *p, db *d, const char *charge_key, const char *order_id,
                                long long amount, long long *refunded, char *err, size_t n);

#endif
