/* samples: timings for the benchmark tools (the load generator, the latency floor, the broker
 * probe): a monotonic clock in milliseconds, sorting a run's samples, and nearest-rank
 * percentiles of them. No allocation; the arrays are the caller's. */
#ifndef ORDERPIPE_SAMPLES_H
#define ORDERPIPE_SAMPLES_H

/* Milliseconds on CLOCK_MONOTONIC: only differences mean anything. */
double samples_now_ms(void);

/* Sorts n samples ascending, in place. */
void samples_sort(double *v, long n);

/* The nearest-rank p-th percentile (p in 0..100) of n samples sorted ascending; 0 when n is 0. */
double samples_percentile(const double *sorted, long n, double p);

#endif
