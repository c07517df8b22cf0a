/* breaker: a circuit breaker for calls to one remote service (a payment channel).
 *
 * Closed: calls go through; `failures` consecutive transient failures open it. Open: calls are
 * refused at once for `open_ms`. Then half-open: one call goes through as a probe (others are
 * refused while it is out); its success closes the breaker, its failure opens it again for
 * another open_ms. Pure state, no I/O and no clock of its own: callers pass the time (ms), so
 * tests drive it. The struct is the caller's; no allocation.
 */
#ifndef ORDERPIPE_BREAKER_H
#define ORDERPIPE_BREAKER_H

#include <stdbool.h>

typedef enum { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN } breaker_state;

typedef struct breaker {
    int threshold;          /* consecutive failures that open it (>= 1) */
    long open_ms;           /* how long it stays open */
    int failures;           /* consecutive failures so far (closed) */
    long long open_until;   /* ms; meaningful while open */
    bool probing;           /* half-open: the probe call is out */
    breaker_state state;
} breaker;

void breaker_init(breaker *b, int threshold, long open_ms);
/* May a call go through at now_ms? Open past its time turns half-open and lets one probe out. */
bool breaker_allow(breaker *b, long long now_ms);
/* The outcome of a call that was allowed. breaker_failure returns true when it (re)opened the
 * breaker: a trip, for the caller to count and log. */
void breaker_success(breaker *b);
bool breaker_failure(breaker *b, long long now_ms);
/* True while calls are refused without a probe (open and within open_ms). */
bool breaker_is_open(const breaker *b, long long now_ms);

#endif
