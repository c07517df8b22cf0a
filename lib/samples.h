/* samples: timings for the benchmark tools (the load generator, the latency floor, the broker
 * probe): sorting a run's samples and nearest-rank percentiles of them (their clock is
 * clock_now_ms_f, clock.h). No allocation; the arrays are the caller's. */
#ifndef ORDERPIPE_SAMPLES_H
#define ORDERPIPE_SAMPLES_H

/* Sorts n samples ascending, in place. */
void samples_sort(double *v, long n);

/* The nearest-rank p-th percentile (p in 0..100) of n samples sorted ascending; 0 when n is 0. */
double samples_percentile(const double *sorted, long n, double p);

#endif
