/* provider: one payment channel's provider, behind the payment worker.
 *   sim   in-process (default): tok_decline is declined, tok_flaky fails transiently on its first
 *         two attempts, tok_pending and tok_pending_never answer pending, anything else
 *         succeeds. A pending charge waits in sim_provider_pending: a query about a tok_pending
 *         charge answers succeeded once 2 s have passed since the charge (and books it then); a
 *         tok_pending_never charge stays pending until voided (the void succeeds). The sim sends
 *         no notifications: its pending charges complete through queries. Its books are the
 *         table sim_provider_ledger, written outside any transaction of ours, as a remote
 *         provider's would be.
 *   http  the channel's URL: POST /charges (200 succeeded, 202 pending, 402 declined),
 *         GET /charges/{key}, POST /charges/{key}/void, POST /refunds; JSON, with an
 *         Idempotency-Key header on every POST; anything else (409, 5xx, timeout) is transient.
 * Both are idempotent per key: a repeated charge answers as the booking now stands and charges
 * once.
 */
#ifndef ORDERPIPE_PROVIDER_H
#define ORDERPIPE_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>

#include "db.h"

typedef enum { PROVIDER_OK, PROVIDER_DECLINED, PROVIDER_TRANSIENT, PROVIDER_PENDING } provider_result;

typedef struct provider provider;

/* kind: "sim" or "http"; url and timeout_ms for http. NULL on a bad configuration. */
provider *provider_new(const char *kind, const char *url, long timeout_ms);
void provider_free(provider *p);
/* True for a provider reached over the network (http): only its failures say it is down. */
bool provider_is_remote(const provider *p);

typedef struct provider_charge_req {
    const char *key;        /* idempotency key */
    const char *order_id;
    long long amount;
    const char *currency;
    const char *token;
    int attempt;            /* 1, 2, ... (the sim's flaky token needs it) */
} provider_charge_req;

/* On PROVIDER_OK and PROVIDER_PENDING ref (refsize bytes) gets the provider's reference; err (n bytes) says why
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

/* What the provider says of a charge (GET /charges/{key}). */
typedef enum {
    PROVIDER_CHARGE_PENDING,
    PROVIDER_CHARGE_SUCCEEDED,
    PROVIDER_CHARGE_FAILED,
    PROVIDER_CHARGE_VOIDED,
    PROVIDER_CHARGE_REFUNDED,
    PROVIDER_CHARGE_UNKNOWN, /* 404: never booked */
} provider_charge_status;

typedef struct provider_charge_info {
    provider_charge_status status;
    long long amount;       /* 0 when the provider did not say */
    char currency[4];
    char ref[128];
    char reason[256];
} provider_charge_info;

/* Asks the provider how the charge under key stands. PROVIDER_OK with *out filled, or
 * PROVIDER_TRANSIENT with err (n bytes) saying why. */
provider_result provider_query(provider *p, db *d, const char *key, provider_charge_info *out,
                               char *err, size_t n);

typedef enum {
    PROVIDER_VOIDED,        /* the pending charge is cancelled, or was never booked */
    PROVIDER_VOID_TOO_LATE, /* it succeeded: the caller refunds it */
    PROVIDER_VOID_FAILED,   /* transient: try again later (err says why) */
} provider_void_result;

/* Cancels the pending charge under key (idempotency key void:<key>). */
provider_void_result provider_void(provider *p, db *d, const char *key, char *err, size_t n);

#endif
