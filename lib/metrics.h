/* metrics: a Prometheus registry for one process (text exposition format 0.0.4).
 *
 * Families are counters, gauges or histograms with up to METRICS_MAX_LABELS label names; a series
 * is found by its label values at update time (created on first sight). The registry is owned by
 * the program (no hidden global) and is safe to update from one thread while another renders it
 * (a mutex), because workers serve /metrics from a thread of their own. Process metrics
 * (resident memory, CPU seconds, start time) are added to every rendering.
 * Memory: metrics_registry_new allocates, metrics_registry_free frees it and every family;
 * metrics_render returns a string the caller frees.
 */
#ifndef ORDERPIPE_METRICS_H
#define ORDERPIPE_METRICS_H

#include <stddef.h>

#define METRICS_MAX_LABELS 3

typedef struct metrics_registry metrics_registry;
typedef struct metrics_family metrics_family;

metrics_registry *metrics_registry_new(void);
void metrics_registry_free(metrics_registry *r);

/* `labels` is a comma-separated list of label names ("type,outcome") or NULL. Returns NULL if
 * the name or a label name is not a valid Prometheus name or is already registered. */
metrics_family *metrics_counter(metrics_registry *r, const char *name, const char *help,
                                const char *labels);
metrics_family *metrics_gauge(metrics_registry *r, const char *name, const char *help,
                              const char *labels);
/* `buckets`: ascending upper bounds, without +Inf. */
metrics_family *metrics_histogram(metrics_registry *r, const char *name, const char *help,
                                  const char *labels, const double *buckets, int nbuckets);

/* `values` holds one value per label name (NULL when the family has none). */
void metrics_add(metrics_family *f, const char *const *values, double by);
void metrics_set(metrics_family *f, const char *const *values, double v);
void metrics_observe(metrics_family *f, const char *const *values, double v);

/* The value of a counter or gauge series (0 if unseen), for tests and health checks. */
double metrics_value(metrics_family *f, const char *const *values);

/* The whole registry in the text format; the caller frees it. */
char *metrics_render(metrics_registry *r);

#endif
