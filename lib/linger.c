/* linger: see linger.h. */
#include "linger.h"

long linger_gap_ms(long linger_ms)
{
    if (linger_ms <= 0)
        return 0;
    long gap = linger_ms / 5;
    return gap < 1 ? 1 : gap;
}

long linger_wait_ms(long since_first_ms, int got, long linger_ms)
{
    if (linger_ms <= 0 || got < 1 || since_first_ms >= linger_ms)
        return 0;
    if (since_first_ms < 0)
        since_first_ms = 0;
    long left = linger_ms - since_first_ms, gap = linger_gap_ms(linger_ms);
    return got >= 2 || left < gap ? left : gap;
}
