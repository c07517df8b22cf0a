/* ratelimit: token bucket (see ratelimit.h). */
#include "ratelimit.h"

#include <math.h>

void ratelimit_init(ratelimit *r, double rate, double burst, uint64_t now_ns)
{
    r->rate = rate;
    r->burst = burst < 1 ? 1 : burst;
    r->tokens = r->burst;
    r->last_ns = now_ns;
}

bool ratelimit_take(ratelimit *r, uint64_t now_ns, int *retry_after_s)
{
    return ratelimit_take_overdraft(r, now_ns, 0, retry_after_s);
}

bool ratelimit_take_overdraft(ratelimit *r, uint64_t now_ns, double overdraft, int *retry_after_s)
{
    if (r->rate <= 0)
        return true;
    if (now_ns > r->last_ns) {
        r->tokens += (double)(now_ns - r->last_ns) / 1e9 * r->rate;
        if (r->tokens > r->burst)
            r->tokens = r->burst;
        r->last_ns = now_ns;
    }
    if (r->tokens - 1 >= -overdraft) {
        r->tokens -= 1;
        return true;
    }
    if (retry_after_s) {
        double wait = (1 - r->tokens) / r->rate;
        int s = (int)ceil(wait);
        *retry_after_s = s < 1 ? 1 : s;
    }
    return false;
}

void ratelimit_refund(ratelimit *r)
{
    if (r->rate > 0 && r->tokens + 1 <= r->burst)
        r->tokens += 1;
}
