/* ratelimit: a token bucket. Time is passed in (nanoseconds, any monotonic origin) so the logic is
 * testable and one clock read serves several buckets. The struct is the caller's; no allocation. */
#ifndef ORDERPIPE_RATELIMIT_H
#define ORDERPIPE_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ratelimit {
    double rate;      /* tokens per second */
    double burst;     /* bucket size */
    double tokens;
    uint64_t last_ns;
} ratelimit;

/* A full bucket at now_ns. rate <= 0 means unlimited. */
void ratelimit_init(ratelimit *r, double rate, double burst, uint64_t now_ns);

/* Takes one token if there is one. When there is none, *retry_after_s (may be NULL) gets the
 * whole seconds until one will be there (at least 1), for a Retry-After header. */
bool ratelimit_take(ratelimit *r, uint64_t now_ns, int *retry_after_s);

/* As ratelimit_take, but the bucket may go into debt down to -overdraft tokens (refilled at the
 * same rate before anyone else is admitted): for requests admitted past a spent bucket within a
 * bound, such as those of a tenant under its fair share. */
bool ratelimit_take_overdraft(ratelimit *r, uint64_t now_ns, double overdraft, int *retry_after_s);

/* Gives back a token taken by a request that was then refused by a later check (another
 * bucket), so a client is not charged for what it did not get. */
void ratelimit_refund(ratelimit *r);

#endif
