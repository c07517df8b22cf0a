/* clock: the time every program reads, in one place.
 *
 * Intervals, deadlines and rates use CLOCK_MONOTONIC, which a change of the wall clock (NTP, an
 * operator) never moves; only differences of its readings mean anything. Timestamps that leave
 * the process (event `time`, log lines) use the wall clock in UTC, RFC 3339 with milliseconds.
 * No state, no allocation; safe from any thread.
 */
#ifndef ORDERPIPE_CLOCK_H
#define ORDERPIPE_CLOCK_H

#include <stdint.h>

/* Milliseconds on the monotonic clock. */
uint64_t clock_now_ms(void);
/* Nanoseconds on the monotonic clock, for rate limiters that count fractions of a token. */
uint64_t clock_now_ns(void);
/* Milliseconds on the monotonic clock with their fraction, for latency samples. */
double clock_now_ms_f(void);
/* Milliseconds since `start_ms` (a clock_now_ms reading); 0 if start_ms is in the future. */
uint64_t clock_ms_since(uint64_t start_ms);

/* "2026-11-25T10:00:00.123Z": now on the wall clock, UTC. */
#define CLOCK_UTC_TEXT_LEN 32
void clock_utc_text(char out[CLOCK_UTC_TEXT_LEN]);

#endif
