/* backoff: exponential backoff with full jitter (see backoff.h). Full jitter spreads the
 * reconnects of many processes after a broker restart instead of synchronising them. */
#include "backoff.h"

#include <stdlib.h>

void backoff_init(backoff *b, int base_ms, int cap_ms, unsigned seed)
{
    b->base_ms = base_ms > 0 ? base_ms : 1;
    b->cap_ms = cap_ms >= b->base_ms ? cap_ms : b->base_ms;
    b->attempt = 0;
    b->seed = seed;
}

int backoff_ceiling_ms(const backoff *b)
{
    long ceiling = b->base_ms;
    for (int i = 0; i < b->attempt && ceiling < b->cap_ms; i++)
        ceiling *= 2;
    return ceiling > b->cap_ms ? b->cap_ms : (int)ceiling;
}

int backoff_next_ms(backoff *b)
{
    int ceiling = backoff_ceiling_ms(b);
    if (b->attempt < 62)
        b->attempt++;
    int d = (int)(rand_r(&b->seed) % ((unsigned)ceiling + 1));
    return d < 1 ? 1 : d;
}

void backoff_reset(backoff *b) { b->attempt = 0; }
