/* breaker: closed / open / half-open circuit breaker state (see breaker.h). */
#include "breaker.h"

void breaker_init(breaker *b, int threshold, long open_ms)
{
    *b = (breaker){.threshold = threshold > 0 ? threshold : 1, .open_ms = open_ms > 0 ? open_ms : 0};
}

bool breaker_allow(breaker *b, long long now_ms)
{
    switch (b->state) {
    case BREAKER_CLOSED:
        return true;
    case BREAKER_OPEN:
        if (now_ms < b->open_until)
            return false;
        b->state = BREAKER_HALF_OPEN;
        b->probing = true;
        return true;
    case BREAKER_HALF_OPEN:
        if (b->probing)
            return false;
        b->probing = true;
        return true;
    }
    return false;
}

void breaker_success(breaker *b)
{
    b->state = BREAKER_CLOSED;
    b->failures = 0;
    b->probing = false;
}

bool breaker_failure(breaker *b, long long now_ms)
{
    b->probing = false;
    if (b->state == BREAKER_CLOSED && ++b->failures < b->threshold)
        return false;
    b->state = BREAKER_OPEN;
    b->failures = 0;
    b->open_until = now_ms + b->open_ms;
    return true;
}

bool breaker_is_open(const breaker *b, long long now_ms)
{
    return b->state == BREAKER_OPEN && now_ms < b->open_until;
}
