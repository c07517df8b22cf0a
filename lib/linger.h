/* linger: how long a batch being collected waits for its next delivery.
 *
 * A batch's round trips, commit and publish cost about the same for one message as for twenty,
 * so a worker does well to wait a little for more before handling what it has, but only when
 * more are coming: a lone delivery waits a fifth of the linger (at least 1 ms) for a second one;
 * a batch that got a second waits out the linger, counted from its first delivery. At a quiet
 * time a delivery is handled after the short gap; under load batches fill for the whole linger.
 * Pure arithmetic, no state.
 */
#ifndef ORDERPIPE_LINGER_H
#define ORDERPIPE_LINGER_H

/* The wait in ms for the next delivery of a batch holding `got` deliveries, the first of which
 * arrived since_first_ms ago, under a linger of linger_ms (0: never wait). 0: handle it now. */
long linger_wait_ms(long since_first_ms, int got, long linger_ms);

/* How long a lone delivery waits for a second one under linger_ms. */
long linger_gap_ms(long linger_ms);

#endif
