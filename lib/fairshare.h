/* fairshare: each tenant's recent demand, so that admission under load refuses the tenants that
 * ask for more than their share and keeps serving the others.
 *
 * Demand is every request a tenant makes (admitted or refused), as an exponentially weighted
 * rate with time constant tau: a tenant that floods keeps a high demand while it is refused, so
 * it stays the one refused, and a quiet tenant's demand decays to nothing. Tenants are numbered
 * 0..n-1 by the caller. Time is passed in (nanoseconds, any monotonic origin). Not thread-safe.
 *
 * Memory: fairshare_init allocates the per-tenant arrays, fairshare_free releases them.
 */
#ifndef ORDERPIPE_FAIRSHARE_H
#define ORDERPIPE_FAIRSHARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fairshare {
    size_t n;
    double tau_s;       /* time constant of the rates, seconds */
    double active_s;    /* a tenant with a request within this is active */
    double *rate;       /* requests/s at last_ns[i] */
    uint64_t *last_ns;  /* time of the tenant's last request; 0: never */
} fairshare;

/* n tenants, none active. OP-style result: 0, or -1 when out of memory (f is then empty). */
int fairshare_init(fairshare *f, size_t n, double tau_s, double active_s);
void fairshare_free(fairshare *f);

/* Records one request of tenant i (i < n) at now_ns. */
void fairshare_note(fairshare *f, size_t i, uint64_t now_ns);

/* Tenant i's demand at now_ns, requests/s. */
double fairshare_rate(const fairshare *f, size_t i, uint64_t now_ns);

/* Tenants with a request within active_s of now_ns (at least 1 once anyone asked). */
size_t fairshare_active(const fairshare *f, uint64_t now_ns);

/* True when tenant i asks for more than its fair share of `capacity` (requests/s): capacity
 * divided among the active tenants. A tenant under it may be admitted past a global limit. */
bool fairshare_over(const fairshare *f, size_t i, uint64_t now_ns, double capacity);

/* True when tenant i is among those filling the pipeline: its demand is at least half the mean
 * demand of the active tenants. A lone tenant, or tenants asking alike, are all heavy; a tenant
 * asking far less than the others is not. */
bool fairshare_heavy(const fairshare *f, size_t i, uint64_t now_ns);

#endif
