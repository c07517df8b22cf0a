/* fairshare: tenants' recent demand (see fairshare.h). */
#include "fairshare.h"

#include <math.h>
#include <stdlib.h>

int fairshare_init(fairshare *f, size_t n, double tau_s, double active_s)
{
    f->n = 0;
    f->tau_s = tau_s > 0 ? tau_s : 1;
    f->active_s = active_s > 0 ? active_s : 5 * f->tau_s;
    f->rate = calloc(n ? n : 1, sizeof *f->rate);
    f->last_ns = calloc(n ? n : 1, sizeof *f->last_ns);
    if (!f->rate || !f->last_ns) {
        fairshare_free(f);
        return -1;
    }
    f->n = n;
    return 0;
}

void fairshare_free(fairshare *f)
{
    free(f->rate);
    free(f->last_ns);
    f->rate = NULL;
    f->last_ns = NULL;
    f->n = 0;
}

double fairshare_rate(const fairshare *f, size_t i, uint64_t now_ns)
{
    if (i >= f->n || f->last_ns[i] == 0)
        return 0;
    double dt = now_ns > f->last_ns[i] ? (double)(now_ns - f->last_ns[i]) / 1e9 : 0;
    return f->rate[i] * exp(-dt / f->tau_s);
}

void fairshare_note(fairshare *f, size_t i, uint64_t now_ns)
{
    if (i >= f->n)
        return;
    if (now_ns == 0) /* 0 marks "never": the clock's origin counts as its first tick */
        now_ns = 1;
    /* Each request adds 1/tau: a steady r requests/s converges to r. */
    f->rate[i] = fairshare_rate(f, i, now_ns) + 1 / f->tau_s;
    if (now_ns > f->last_ns[i])
        f->last_ns[i] = now_ns;
}

static bool fairshare_is_active(const fairshare *f, size_t i, uint64_t now_ns)
{
    if (f->last_ns[i] == 0)
        return false;
    return now_ns <= f->last_ns[i] || (double)(now_ns - f->last_ns[i]) / 1e9 <= f->active_s;
}

size_t fairshare_active(const fairshare *f, uint64_t now_ns)
{
    size_t k = 0;
    for (size_t i = 0; i < f->n; i++)
        k += fairshare_is_active(f, i, now_ns);
    return k;
}

bool fairshare_over(const fairshare *f, size_t i, uint64_t now_ns, double capacity)
{
    size_t k = fairshare_active(f, now_ns);
    return fairshare_rate(f, i, now_ns) > capacity / (double)(k ? k : 1);
}

bool fairshare_heavy(const fairshare *f, size_t i, uint64_t now_ns)
{
    size_t k = 0;
    double total = 0;
    for (size_t j = 0; j < f->n; j++) {
        if (fairshare_is_active(f, j, now_ns)) {
            k++;
            total += fairshare_rate(f, j, now_ns);
        }
    }
    if (k == 0)
        return true;
    return fairshare_rate(f, i, now_ns) * 2 * (double)k >= total;
}
