/* backoff: exponential backoff with full jitter, for reconnect loops and retries.
 * Delay n (0-based) is uniform in [0, min(cap, base * 2^n)], at least 1 ms; the seed makes a
 * sequence repeatable in tests. No allocation; the struct is the caller's. */
#ifndef ORDERPIPE_BACKOFF_H
#define ORDERPIPE_BACKOFF_H

typedef struct backoff {
    int base_ms;
    int cap_ms;
    int attempt;
    unsigned seed;
} backoff;

void backoff_init(backoff *b, int base_ms, int cap_ms, unsigned seed);
/* The next delay in milliseconds; advances the attempt counter. */
int backoff_next_ms(backoff *b);
/* The ceiling the next delay is drawn under (for logs and tests). */
int backoff_ceiling_ms(const backoff *b);
void backoff_reset(backoff *b);

#endif
